// Where a router gets its routing map: Shardshift's HTTP endpoint (long-poll), or a fixed map
// (tests, or an application whose tenants all stay on legacy until it is given a token).
import { RoutingMapUnavailableError } from "./errors";
import { routingMapEtag, type WireRoutingMap } from "./map-types";

export interface MapSource {
  /** The whole map. */
  load(signal: AbortSignal): Promise<WireRoutingMap>;
  /**
   * The next change after `version` (a delta or a whole map), or null when nothing changed in
   * this round (ask again). May wait (long-poll); must end when `signal` aborts.
   */
  next(version: number, signal: AbortSignal): Promise<WireRoutingMap | null>;
}

export interface HttpMapSourceOptions {
  /** e.g. "https://shardshift.example.com/api/routing/map" */
  url: string;
  /** The plan's API token ("sst_…"), created by an admin on the plan's Routing page. */
  token: string;
  /** Long-poll length; the server answers at once when the map changes. Default 30 s. */
  waitSeconds?: number;
  /** Defaults to the global fetch (Node 18+). */
  fetch?: typeof fetch;
}

async function readMap(response: Response, what: string): Promise<WireRoutingMap> {
  if (!response.ok) {
    let reason = `${response.status} ${response.statusText}`;
    try {
      const body = (await response.json()) as { error?: string };
      if (body.error) reason = `${response.status}: ${body.error}`;
    } catch {
      // not JSON: keep the status line
    }
    throw new RoutingMapUnavailableError(`Could not read the routing map (${what}): ${reason}`);
  }
  return (await response.json()) as WireRoutingMap;
}

export function httpMapSource(options: HttpMapSourceOptions): MapSource {
  const doFetch = options.fetch ?? fetch;
  const waitSeconds = options.waitSeconds ?? 30;
  const headers = { authorization: `Bearer ${options.token}`, accept: "application/json" };
  // A request that outlives its long-poll by this much is dead (a proxy dropped it): abort it.
  const graceMs = 15_000;

  const request = async (
    query: string,
    extra: Record<string, string>,
    timeoutMs: number,
    signal: AbortSignal,
  ) => {
    const timeout = AbortSignal.timeout(timeoutMs);
    return doFetch(`${options.url}${query}`, {
      headers: { ...headers, ...extra },
      signal: AbortSignal.any([signal, timeout]),
      cache: "no-store",
    });
  };

  return {
    async load(signal) {
      let response: Response;
      try {
        response = await request("", {}, graceMs, signal);
      } catch (error) {
        throw new RoutingMapUnavailableError(
          `Could not reach the routing map at ${options.url}: ${(error as Error).message}. Check the URL and that Shardshift's dashboard is up.`,
          { cause: error },
        );
      }
      return readMap(response, options.url);
    },
    async next(version, signal) {
      const response = await request(
        `?since=${version}&wait=${waitSeconds}`,
        { "if-none-match": routingMapEtag(version) },
        waitSeconds * 1000 + graceMs,
        signal,
      );
      if (response.status === 304) {
        await response.body?.cancel();
        return null;
      }
      return readMap(response, options.url);
    },
  };
}

/** A map that never changes: every tenant on legacy, unless `map` says otherwise. */
export function staticMapSource(map: WireRoutingMap): MapSource {
  return {
    async load() {
      return map;
    },
    next(_version, signal) {
      return new Promise((resolve) => {
        if (signal.aborted) resolve(null);
        else signal.addEventListener("abort", () => resolve(null), { once: true });
      });
    },
  };
}

/** The map of a database whose tenants all live on it (version 0): a router over one pool. */
export function legacyOnlyMap(legacyName: string, freezeBudgetMs = 2000): WireRoutingMap {
  const legacy = { id: legacyName, name: legacyName, kind: "legacy" as const };
  return {
    planId: "none",
    version: 0,
    delta: false,
    since: null,
    freezeBudgetMs,
    legacy,
    databases: [legacy],
    tenants: [],
  };
}

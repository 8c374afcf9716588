// Reverse CDC: one shard → legacy, for the tenants cut over to that shard — the same parts as
// forward CDC (replication-loop.ts), composed the other way:
//   - stream: the shard's slot and publication with origin 'none': what forward CDC applied to the
//     shard carries our origin, so the server never sends it back (loop safety, PostgreSQL 16+);
//   - route: the tenants the shard owns by its fence, followed through the fence's messages in the
//     stream (reverseOwnershipRoute), or a fixed set (carriedTenantsRoute): their rows go to legacy,
//     every other tenant's nowhere, reference tables never; a fence message stamps legacy (the
//     drain marker the cutover waits for on the way back);
//   - applier: legacy, under the origin of this slot → legacy — which forward CDC's stream leaves
//     out in turn (isApplyOrigin), so nothing echoes back to the shard;
//   - confirmer: legacy's flushed origin.
// No backfill guard (a cut-over tenant's rows were copied before its cutover) and no bookkeeping
// yet: the cutover issue starts and stops these streams from the store and records their state
// through the movement's state machine. A CdcStopError ends the runner with that failure.
import type pg from "pg";
import type { SourceSchema } from "../analysis/introspect";
import { applyOriginName } from "./apply-origin";
import { type CdcRunner, startRunner } from "./cdc-runner";
import { ChangeRouter, type Route } from "./change-router";
import { Confirmer } from "./confirmer";
import { ReverseOwnershipRoute, readFenceOwnership } from "./ownership-route";
import { runReplication } from "./replication-loop";
import { StreamReader } from "./stream-reader";
import { readOriginProgress, TargetApplier, TargetAppliers } from "./target-applier";

const PIECE_CHANGES = 5_000;

export interface ReverseCdcOptions {
  /** The shard the changes come from: its URL, a pool on it, its name in messages ("shard 2"). */
  shardUrl: string;
  shard: pg.Pool;
  shardName: string;
  /** The shard's slot (with its consistent point, which names the apply origin) and publication. */
  slot: string;
  slotLsn: bigint;
  publication: string;
  legacyUrl: string;
  legacy: pg.Pool;
  /** The movement's schema snapshot (the shard's tables are legacy's). */
  schema: SourceSchema;
  /**
   * Which tenants' rows go back to legacy (target 0): a fixed Route, or one made each time the
   * stream opens — reverseOwnershipRoute(shard, planId) follows the shard's fence, read at open and
   * changed at each fence message in the stream (what the supervisor's streams use).
   */
  route: Route | (() => Promise<Route>);
  log: (message: string) => void;
}

export function startReverseCdc(options: ReverseCdcOptions): CdcRunner {
  const log = (m: string) => options.log(`[reverse cdc ${options.slot}] ${m}`);
  const checked = (route: Route) => {
    if (route.targetCount !== 1) {
      throw new Error(`reverse CDC has one target (legacy); its route has ${route.targetCount}`);
    }
    return route;
  };
  if (typeof options.route !== "function") checked(options.route);
  return startRunner(async (control) => {
    const reader = await StreamReader.open({
      url: options.shardUrl,
      source: options.shard,
      slot: options.slot,
      publication: options.publication,
      schema: options.schema,
      origin: "none",
      sourceName: options.shardName,
      applicationName: "shardshift-reverse-cdc",
      maxChangesPerPiece: PIECE_CHANGES,
    });
    control.onStop(() => reader.stop());
    const targets: TargetApplier[] = [];
    const appliers = new TargetAppliers(targets);
    let confirmer: Confirmer | null = null;
    try {
      const legacy = await TargetApplier.open({
        url: options.legacyUrl,
        ordinal: 0,
        origin: applyOriginName(options.slot, options.slotLsn, 0),
        applicationName: "shardshift-reverse-cdc",
      });
      targets.push(legacy);
      const confirmerOf = new Confirmer({
        durableOf: () => readOriginProgress(options.legacy, legacy.origin),
        confirm: (lsn) => reader.confirm(lsn),
        log,
      });
      confirmer = confirmerOf;
      // Read after the stream opened: ownership as the shard's fence says it now, then as its
      // messages change it (ownership-route.ts explains why the current state is safe to start from).
      const route = checked(typeof options.route === "function" ? await options.route() : options.route);
      const router = new ChangeRouter(options.schema, route, {
        source: options.shardName,
        targets: "legacy database",
      });
      await runReplication(
        { reader, router, appliers, confirmer: confirmerOf },
        { keepGoing: () => !control.stopping, progressed: () => control.progressed() },
      );
    } finally {
      await confirmer?.stop();
      await reader.close();
      await appliers.close();
    }
  }, log);
}

/**
 * The route of the supervisor's reverse streams: the tenants `shard`'s fence (of `planId`) says the
 * shard owns, read each time the stream opens and changed at each fence message it meets.
 */
export function reverseOwnershipRoute(shard: pg.Pool, planId: string): () => Promise<Route> {
  return async () => new ReverseOwnershipRoute(await readFenceOwnership(shard, planId));
}

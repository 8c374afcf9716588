// Who is at the other end of a request, for rate limits, sessions and the audit of refusals.
//
// X-Forwarded-For is whatever the client wrote unless a proxy we run replaced or extended it, so it
// is believed only from configured proxies (SHARDSHIFT_TRUSTED_PROXIES, addresses or CIDR ranges;
// default none). Next.js does not hand route handlers the socket address (and keeps a client's
// X-Forwarded-For as it came), so our HTTP server (server/http/serve.ts) resolves the address from
// the socket before Next sees the request and stamps it into CLIENT_ADDRESS_HEADER, replacing any
// value the client sent. Under a bare `next start` nothing stamps it, so it is not believed at all.
import net from "node:net";

export const CLIENT_ADDRESS_HEADER = "x-shardshift-client-address";
const STAMPED = Symbol.for("shardshift.clientAddressStamped");

/** "::ffff:10.0.0.1" → "10.0.0.1"; anything that is not an IP address → null. */
export function normalizeAddress(raw: string | undefined | null): string | null {
  if (!raw) return null;
  let value = raw.trim();
  if (value.startsWith("[") && value.includes("]")) value = value.slice(1, value.indexOf("]"));
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(value);
  if (mapped?.[1]) value = mapped[1];
  const family = net.isIP(value);
  if (family === 4) return value;
  if (family === 6) return value.toLowerCase();
  return null;
}

/** Parses "10.0.0.0/8, 192.168.1.7" into a matcher; refuses anything it cannot read, by name. */
export function parseTrustedProxies(setting: string | undefined): net.BlockList | null {
  const entries = (setting ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
  if (!entries.length) return null;
  const list = new net.BlockList();
  for (const entry of entries) {
    const [address, prefix] = entry.split("/");
    const normalized = normalizeAddress(address);
    const family = normalized ? net.isIP(normalized) : 0;
    const bits = prefix === undefined ? (family === 4 ? 32 : 128) : Number(prefix);
    if (!normalized || !Number.isInteger(bits) || bits < 0 || bits > (family === 4 ? 32 : 128)) {
      throw new Error(
        `SHARDSHIFT_TRUSTED_PROXIES: "${entry}" is not an IP address or CIDR range (e.g. 10.0.0.0/8, 192.168.1.7).`,
      );
    }
    list.addSubnet(normalized, bits, family === 4 ? "ipv4" : "ipv6");
  }
  return list;
}

function isTrusted(list: net.BlockList, address: string): boolean {
  return list.check(address, net.isIP(address) === 4 ? "ipv4" : "ipv6");
}

/**
 * The client's address: the socket's, unless the socket is a trusted proxy; then the forwarded
 * chain is walked from the right (the hops our proxies appended) to the first address that is not
 * a trusted proxy. A client can prepend anything to the chain, never append past our proxy.
 */
export function resolveClientAddress(
  socketAddress: string | undefined,
  forwardedFor: string | string[] | undefined,
  trusted: net.BlockList | null,
): string | null {
  const peer = normalizeAddress(socketAddress);
  if (!peer || !trusted || !isTrusted(trusted, peer)) return peer;
  const chain = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : (forwardedFor ?? ""))
    .split(",")
    .map((hop) => hop.trim())
    .filter(Boolean);
  let nearest = peer;
  for (let i = chain.length - 1; i >= 0; i--) {
    const hop = normalizeAddress(chain[i]);
    // Garbage behind trusted hops can only come from the client: stop at the last proxy we trust.
    if (!hop) return nearest;
    if (!isTrusted(trusted, hop)) return hop;
    nearest = hop;
  }
  return nearest;
}

/** Called by our HTTP server for every request before Next.js sees it. */
export function stampClientAddress(
  request: { headers: Record<string, string | string[] | undefined>; socket: { remoteAddress?: string } },
  trusted: net.BlockList | null,
): void {
  (globalThis as Record<symbol, unknown>)[STAMPED] = true;
  const address = resolveClientAddress(
    request.socket.remoteAddress,
    request.headers["x-forwarded-for"],
    trusted,
  );
  delete request.headers[CLIENT_ADDRESS_HEADER];
  if (address) request.headers[CLIENT_ADDRESS_HEADER] = address;
}

let warned = false;

/**
 * The address our server stamped, or null when this process was not started through it (a bare
 * `next start`): then the header may be the client's own invention.
 */
export function clientAddressOf(headers: Headers): string | null {
  if (!(globalThis as Record<symbol, unknown>)[STAMPED]) {
    if (!warned && process.env.NODE_ENV === "production") {
      warned = true;
      console.warn(
        "[auth] The dashboard was not started through server/http/serve.ts (npm start), so client addresses are unknown: sign-in is limited per account only.",
      );
    }
    return null;
  }
  return normalizeAddress(headers.get(CLIENT_ADDRESS_HEADER));
}

/** A copy of the request whose address header says only what our server stamped (or nothing). */
export function withTrustedAddress(request: Request): Request {
  const address = clientAddressOf(request.headers);
  if (request.headers.get(CLIENT_ADDRESS_HEADER) === address) return request;
  const headers = new Headers(request.headers);
  headers.delete(CLIENT_ADDRESS_HEADER);
  if (address) headers.set(CLIENT_ADDRESS_HEADER, address);
  return new Request(request, { headers });
}

// The routing map's HTTP handler on a real HTTP server of the test's own (what Next.js serves at
// /api/routing/map), so the SDK's long-poll runs over real sockets.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { serveRoutingMap } from "../services/routing/map-http";

export async function startRoutingHttp(): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const abort = new AbortController();
    res.on("close", () => abort.abort());
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === "string") headers.set(name, value);
    }
    const request = new Request(`http://localhost${req.url ?? "/"}`, { headers, signal: abort.signal });
    serveRoutingMap(request)
      .then(async (response) => {
        res.writeHead(response.status, Object.fromEntries(response.headers));
        res.end(Buffer.from(await response.arrayBuffer()));
      })
      .catch((error: unknown) => {
        res.writeHead(500);
        res.end(String(error));
      });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api/routing/map`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

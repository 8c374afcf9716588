// Serves the built dashboard (what `npm start` and `npm run demo` run instead of `next start`).
// It exists for one reason: Next.js gives route handlers no socket address and passes a client's
// X-Forwarded-For through untouched, so sign-in limits keyed on it were a header away from
// useless. Here every request gets the address resolved from its socket (and from
// X-Forwarded-For only when the socket is a configured proxy) before Next.js sees it.
//
//   node --import tsx server/http/serve.ts [--port 3000] [--hostname 0.0.0.0] [--dev]
import http from "node:http";
import path from "node:path";
import { parseArgs } from "node:util";
import next from "next";
import { parseTrustedProxies, stampClientAddress } from "../auth/client-address";

const ROOT = path.resolve(import.meta.dirname, "../..");

export async function serveDashboardHttp(options: { port: number; hostname: string; dev: boolean }) {
  // Read once at start: a typo in the proxy list stops the server with the entry named.
  const trusted = parseTrustedProxies(process.env.SHARDSHIFT_TRUSTED_PROXIES);
  const app = next({ dev: options.dev, dir: ROOT, hostname: options.hostname, port: options.port });
  const handle = app.getRequestHandler();
  await app.prepare();
  const server = http.createServer((req, res) => {
    stampClientAddress(req, trusted);
    handle(req, res).catch((error: unknown) => {
      console.error("[http] unhandled error", error);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port, options.hostname, resolve));
  return { server, app };
}

const isEntryPoint = process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename;
if (isEntryPoint) {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: process.env.PORT ?? "3000" },
      hostname: { type: "string", default: "0.0.0.0" },
      dev: { type: "boolean", default: false },
    },
  });
  const { server, app } = await serveDashboardHttp({
    port: Number(values.port),
    hostname: values.hostname,
    dev: values.dev,
  });
  console.log(`Shardshift dashboard on http://localhost:${values.port}`);
  const stop = () => {
    server.close();
    server.closeAllConnections();
    void app.close().finally(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

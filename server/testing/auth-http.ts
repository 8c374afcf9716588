// A real HTTP server in the test process that does what server/http/serve.ts does before Next.js
// (stamp the client address from the socket) and then calls the app's own route handlers, so tests
// can sign in from different source addresses (127.0.0.x) with headers of their choosing.
import http from "node:http";
import type net from "node:net";
import { Readable } from "node:stream";
import { stampClientAddress } from "../auth/client-address";

type Handler = (request: Request) => Promise<Response>;

export interface TestHttp {
  url: string;
  port: number;
  /** Trusted proxies for the stamping step; null = none (the default). */
  trusted: net.BlockList | null;
  request(
    path: string,
    options?: { method?: string; headers?: Record<string, string>; body?: unknown; from?: string },
  ): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; json: () => unknown }>;
  close(): Promise<void>;
}

export async function startTestHttp(routes: Record<string, Handler>, baseUrl: string): Promise<TestHttp> {
  const state: { trusted: net.BlockList | null } = { trusted: null };
  const server = http.createServer(async (req, res) => {
    try {
      stampClientAddress(req, state.trusted);
      const prefix = Object.keys(routes).find((p) => req.url?.startsWith(p));
      const handler = prefix ? routes[prefix] : undefined;
      if (!handler) {
        res.writeHead(404).end();
        return;
      }
      const headers = new Headers();
      for (const [key, value] of Object.entries(req.headers)) {
        if (typeof value === "string") headers.set(key, value);
        else if (Array.isArray(value)) for (const v of value) headers.append(key, v);
      }
      const hasBody = req.method !== "GET" && req.method !== "HEAD";
      const request = new Request(new URL(req.url ?? "/", baseUrl), {
        method: req.method,
        headers,
        body: hasBody ? (Readable.toWeb(req) as ReadableStream) : undefined,
        // @ts-expect-error Node's fetch needs this for a streamed body
        duplex: "half",
      });
      const response = await handler(request);
      const out: Record<string, string | string[]> = {};
      response.headers.forEach((value, key) => {
        if (key === "set-cookie") return;
        out[key] = value;
      });
      const cookies = response.headers.getSetCookie();
      if (cookies.length) out["set-cookie"] = cookies;
      res.writeHead(response.status, out);
      res.end(Buffer.from(await response.arrayBuffer()));
    } catch (error) {
      console.error("[test-http]", error);
      res.writeHead(500).end(String(error));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get trusted() {
      return state.trusted;
    },
    set trusted(value) {
      state.trusted = value;
    },
    request(path, options = {}) {
      const body = options.body === undefined ? undefined : JSON.stringify(options.body);
      return new Promise((resolve, reject) => {
        const req = http.request(
          {
            host: "127.0.0.1",
            port,
            path,
            method: options.method ?? (body ? "POST" : "GET"),
            localAddress: options.from ?? "127.0.0.1",
            headers: {
              ...(body ? { "content-type": "application/json" } : {}),
              ...options.headers,
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
              const text = Buffer.concat(chunks).toString();
              resolve({
                status: res.statusCode ?? 0,
                headers: res.headers,
                body: text,
                json: () => JSON.parse(text),
              });
            });
          },
        );
        req.on("error", reject);
        if (body) req.write(body);
        req.end();
      });
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** "name=value; name2=value2" from a response's Set-Cookie headers, for the next request. */
export function cookieHeader(setCookie: string | string[] | undefined): string {
  const list = Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : [];
  return list.map((c) => c.split(";")[0]).join("; ");
}

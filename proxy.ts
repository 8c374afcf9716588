// Next.js 16 proxy (formerly middleware): a content security policy with a fresh nonce on every
// page. Next.js reads the nonce from the request's CSP header and puts it on its own scripts, so
// no inline script runs without it ('strict-dynamic' lets those scripts load the app's chunks).
// Styles keep 'unsafe-inline': Recharts and Radix write style attributes, which a nonce cannot
// cover, and a style cannot run code. Framing is refused here (frame-ancestors) and, for every
// response including the API, by X-Frame-Options in next.config.ts.
import { type NextRequest, NextResponse } from "next/server";

export function contentSecurityPolicy(nonce: string, dev: boolean): string {
  return [
    "default-src 'self'",
    `script-src 'self' 'nonce-${nonce}' 'strict-dynamic'${dev ? " 'unsafe-eval'" : ""}`,
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' blob: data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}

export function proxy(request: NextRequest) {
  const nonce = Buffer.from(crypto.randomUUID()).toString("base64");
  const policy = contentSecurityPolicy(nonce, process.env.NODE_ENV === "development");
  const headers = new Headers(request.headers);
  headers.set("x-nonce", nonce);
  headers.set("content-security-policy", policy);
  const response = NextResponse.next({ request: { headers } });
  response.headers.set("content-security-policy", policy);
  return response;
}

export const config = {
  matcher: [
    {
      // Pages only: API responses and static files carry no scripts of ours.
      source: "/((?!api|_next/static|_next/image|favicon.ico).*)",
      missing: [
        { type: "header", key: "next-router-prefetch" },
        { type: "header", key: "purpose", value: "prefetch" },
      ],
    },
  ],
};

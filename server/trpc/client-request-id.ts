// The client's x-request-id, as recorded beside (never instead of) the server's request id:
// printable ASCII only, at most 100 characters, so a header cannot smuggle control characters or
// a megabyte into every audit event.
export const CLIENT_REQUEST_ID_MAX = 100;

export function clientRequestIdOf(headers: Headers): string | null {
  const raw = headers.get("x-request-id");
  if (!raw) return null;
  const printable = raw.replace(/[^\x20-\x7e]/g, "").trim();
  return printable ? printable.slice(0, CLIENT_REQUEST_ID_MAX) : null;
}

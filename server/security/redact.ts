// Secrets must never reach a log, an audit event or the browser. Everything that leaves the
// server as "before/after" state passes through redactSecrets first.

const SECRET_KEY_PATTERN = /pass(word)?|secret|token|ciphertext|credential|connection_?url|^url$/i;
export const REDACTED = "[redacted]";

/** "postgresql://app:hunter2@db:5432/x" → "postgresql://app:***@db:5432/x" */
export function redactUrl(url: string): string {
  return url.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)([^@\s]*)@/gi, "$1***@");
}

export function redactSecrets<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v)) as T;
  if (value && typeof value === "object" && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SECRET_KEY_PATTERN.test(k) ? REDACTED : redactSecrets(v);
    }
    return out as T;
  }
  if (typeof value === "string" && /:\/\/[^@\s]*:[^@\s]*@/.test(value)) return redactUrl(value) as T;
  return value;
}

// The database form shows the connection URL readably (host, port, database, user: a typo must be
// visible) and masks only the password, in a field of its own. A pasted URL that carries a
// password is split at once; the two are joined again only to send them.

/** A URL's password moved out of it; null when the text is not a URL or holds no password. */
export function takePassword(text: string): { url: string; password: string } | null {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    return null;
  }
  if (!url.password) return null;
  let password: string;
  try {
    password = decodeURIComponent(url.password);
  } catch {
    password = url.password;
  }
  url.password = "";
  return { url: url.toString(), password };
}

/** The URL with the password put back (percent-encoded); the text unchanged if it is not a URL. */
export function withPassword(text: string, password: string): string {
  if (!password) return text.trim();
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    return text.trim();
  }
  url.password = encodeURIComponent(password);
  return url.toString();
}

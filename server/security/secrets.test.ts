import { describe, expect, it } from "vitest";
import { REDACTED, redactSecrets, redactUrl } from "./redact";
import { decryptSecret, encryptSecret, generateSecretKey } from "./secrets";

describe("secret encryption (AES-256-GCM)", () => {
  const key = generateSecretKey();
  const url = "postgresql://app:s3cr%40t@db.internal:5432/monolith";

  it("round-trips and never contains the plaintext", () => {
    const sealed = encryptSecret(url, key);
    expect(sealed).not.toContain("s3cr");
    expect(sealed.startsWith("v1.")).toBe(true);
    expect(decryptSecret(sealed, key)).toBe(url);
  });

  it("uses a fresh IV each time", () => {
    expect(encryptSecret(url, key)).not.toBe(encryptSecret(url, key));
  });

  it("refuses a wrong key and a tampered value with a message that says what to do", () => {
    const sealed = encryptSecret(url, key);
    expect(() => decryptSecret(sealed, generateSecretKey())).toThrow(/Restore the original key/);
    const parts = sealed.split(".");
    const flipped = Buffer.from(parts[3] ?? "", "base64url");
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    parts[3] = flipped.toString("base64url");
    expect(() => decryptSecret(parts.join("."), key)).toThrow(/could not be decrypted/);
  });

  it("refuses a key of the wrong length", () => {
    expect(() => encryptSecret(url, Buffer.alloc(16).toString("base64"))).toThrow(/32 bytes/);
  });
});

describe("redaction", () => {
  it("masks passwords in URLs and secret-named fields, recursively", () => {
    expect(redactUrl("postgresql://app:hunter2@h:5432/d")).toBe("postgresql://app:***@h:5432/d");
    const redacted = redactSecrets({
      name: "legacy",
      urlCiphertext: "v1.abc",
      nested: [{ password: "x", note: "see postgres://u:p@h/d" }],
    });
    expect(redacted).toEqual({
      name: "legacy",
      urlCiphertext: REDACTED,
      nested: [{ password: REDACTED, note: "see postgres://u:***@h/d" }],
    });
  });
});

// Connection URLs carry passwords, so they are stored only as AES-256-GCM ciphertext. The key
// comes from SHARDSHIFT_SECRET_KEY (32 bytes, base64) and never touches the database.
//
// Format: "v1.<iv>.<tag>.<ciphertext>" (base64url parts). GCM authenticates the ciphertext, so a
// tampered value or a wrong key fails to decrypt instead of yielding garbage. A version prefix lets
// a later key rotation tell old values from new.
import crypto from "node:crypto";

const VERSION = "v1";
const ASSOCIATED_DATA = Buffer.from("shardshift:secret:v1");

function keyBytes(key: string): Buffer {
  const bytes = Buffer.from(key, "base64");
  if (bytes.length !== 32) {
    throw new Error(
      "The secret key must be 32 bytes, base64-encoded (generate one with `openssl rand -base64 32`).",
    );
  }
  return bytes;
}

export function encryptSecret(plaintext: string, key: string): string {
  const iv = crypto.randomBytes(12);
  const cipher = crypto.createCipheriv("aes-256-gcm", keyBytes(key), iv);
  cipher.setAAD(ASSOCIATED_DATA);
  const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return [VERSION, iv, cipher.getAuthTag(), ciphertext]
    .map((part) => (typeof part === "string" ? part : part.toString("base64url")))
    .join(".");
}

export function decryptSecret(sealed: string, key: string): string {
  const [version, iv, tag, ciphertext] = sealed.split(".");
  if (version !== VERSION || !iv || !tag || ciphertext === undefined) {
    throw new Error("The stored secret is not in a format this version of Shardshift understands.");
  }
  const decipher = crypto.createDecipheriv("aes-256-gcm", keyBytes(key), Buffer.from(iv, "base64url"));
  decipher.setAAD(ASSOCIATED_DATA);
  decipher.setAuthTag(Buffer.from(tag, "base64url"));
  try {
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]).toString(
      "utf8",
    );
  } catch {
    throw new Error(
      "A stored secret could not be decrypted: SHARDSHIFT_SECRET_KEY is not the key it was encrypted with, " +
        "or the value was altered. Restore the original key.",
    );
  }
}

export function generateSecretKey(): string {
  return crypto.randomBytes(32).toString("base64");
}

import { describe, expect, it } from "vitest";
import { takePassword, withPassword } from "./connection-url";

describe("connection URL with the password apart", () => {
  it("moves a pasted password out and leaves host, port, database and user readable", () => {
    expect(takePassword("postgresql://app:s3cr%40t@db.internal:5433/monolith?sslmode=require")).toEqual({
      url: "postgresql://app@db.internal:5433/monolith?sslmode=require",
      password: "s3cr@t",
    });
  });

  it("leaves a URL without a password, and text that is not a URL, alone", () => {
    expect(takePassword("postgresql://app@db:5432/x")).toBeNull();
    expect(takePassword("db.internal:5432")).toBeNull();
  });

  it("puts the password back encoded, so it survives any character", () => {
    const joined = withPassword("postgresql://app@db.internal:5433/monolith", "p@ss:w/rd%");
    expect(new URL(joined).hostname).toBe("db.internal");
    expect(takePassword(joined)?.password).toBe("p@ss:w/rd%");
    expect(withPassword("postgresql://app@db/x", "")).toBe("postgresql://app@db/x");
  });
});

import { describe, expect, it } from "vitest";
import { ZAuditFilter } from "@/server/schemas/audit";
import { draftFromParams, filterInput, paramsFromFilter } from "./audit-url";

describe("the audit filter in the URL", () => {
  it("round-trips every field, times as the same instants", () => {
    const filter = ZAuditFilter.parse({
      actorEmail: "ops",
      action: "movement.pause",
      planId: "0d6f3a52-8d7e-4a53-9a43-3b1a3f0c9e11",
      from: new Date("2026-12-01T08:30:00Z"),
      to: new Date("2026-12-01T17:45:00Z"),
    });
    const params = paramsFromFilter(filter);
    expect(params.get("from")).toBe("2026-12-01T08:30:00.000Z");
    const back = ZAuditFilter.parse(filterInput(draftFromParams(new URLSearchParams(params.toString()))));
    expect(back).toEqual(filter);
  });

  it("leaves empty fields out of the URL and the filter", () => {
    expect(paramsFromFilter({}).toString()).toBe("");
    expect(ZAuditFilter.parse(filterInput(draftFromParams(new URLSearchParams("planId=&action="))))).toEqual(
      {},
    );
  });

  it("refuses a broken link's filter with the field's message", () => {
    const parsed = ZAuditFilter.safeParse(
      filterInput(draftFromParams(new URLSearchParams("planId=nope&from=xyz"))),
    );
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues.map((i) => i.path[0]).sort()).toEqual(["from", "planId"]);
  });
});

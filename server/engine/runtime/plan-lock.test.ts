// One job of a kind per plan: a second start while the first runs does not run (the census or a
// parity pass would otherwise do the work twice beside itself); other plans and other kinds do; the
// lock is free again once the job ends, also when it failed.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { runExclusivePerPlan } from "./plan-lock";

let control: TestDatabase;

beforeAll(async () => {
  control = await createTestDatabase("plan_lock");
});

afterAll(async () => {
  await control?.drop();
});

describe("runExclusivePerPlan", () => {
  it("runs one job of a kind per plan at a time", async () => {
    const plan = "6f1c2d9e-0000-4000-8000-000000000001";
    const other = "6f1c2d9e-0000-4000-8000-000000000002";
    let finish = () => {};
    let started = () => {};
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const first = runExclusivePerPlan(control.url, "census", plan, async () => {
      started();
      await new Promise<void>((resolve) => {
        finish = resolve;
      });
      return "first";
    });
    await running;

    let ranTwice = false;
    const second = await runExclusivePerPlan(control.url, "census", plan, async () => {
      ranTwice = true;
      return "second";
    });
    expect(second).toBeNull();
    expect(ranTwice).toBe(false);
    expect(await runExclusivePerPlan(control.url, "parity", plan, async () => "parity")).toBe("parity");
    expect(await runExclusivePerPlan(control.url, "census", other, async () => "other")).toBe("other");

    finish();
    expect(await first).toBe("first");
    expect(await runExclusivePerPlan(control.url, "census", plan, async () => "again")).toBe("again");

    await expect(
      runExclusivePerPlan(control.url, "census", plan, async () => {
        throw new Error("the census failed");
      }),
    ).rejects.toThrow("the census failed");
    expect(await runExclusivePerPlan(control.url, "census", plan, async () => "after")).toBe("after");
  });
});

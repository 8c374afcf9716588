// The gate the cutover scheduler puts its freezes behind: at most `slots` holders, served in order.
import { describe, expect, it } from "vitest";
import { createGate } from "./gate";

describe("gate", () => {
  it("lets at most its slots in, the next waiter first, and frees a slot once", async () => {
    const gate = createGate(2);
    const order: string[] = [];
    const a = await gate.acquire();
    const b = await gate.acquire();
    const c = gate.acquire().then((release) => {
      order.push("c");
      return release;
    });
    const d = gate.acquire().then((release) => {
      order.push("d");
      return release;
    });
    await Promise.resolve();
    expect(order).toEqual([]);
    expect(gate.held).toBe(2);
    a();
    a(); // a second call frees nothing more
    const releaseC = await c;
    expect(order).toEqual(["c"]);
    expect(gate.held).toBe(2);
    b();
    const releaseD = await d;
    expect(order).toEqual(["c", "d"]);
    releaseC();
    releaseD();
    expect(gate.held).toBe(0);
  });

  it("refuses a gate without a slot", () => {
    expect(() => createGate(0)).toThrow(/at least one slot/);
  });
});

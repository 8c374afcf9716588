// Shared by the cutover tests: wait for an attempt to reach an end state (done or aborted).
import { db } from "../db";
import { waitFor } from "./worker-process";

/** The attempt's row once it is done or aborted (polled, with a deadline). */
export function waitForCutoverEnd(id: string, timeoutMs: number) {
  return waitFor(
    `cutover ${id} to end`,
    async () => {
      const row = await db().tenantCutover.findUniqueOrThrow({ where: { id } });
      return row.status === "done" || row.status === "aborted" ? row : null;
    },
    timeoutMs,
  );
}

// The rollback's path from the click to the flip runs Prisma query shapes nothing else in a worker
// runs, and Prisma compiles a shape's plan the first time it runs in a process (and the pool opens
// the connections a burst of them needs). The first trip after a worker started paid both inside
// its path: 0.3–0.6 s under the bench's load (`fences 612` in the rollback's spans against 19–31
// for the next trips). A worker runs each of those shapes once when its breaker scheduler starts,
// against a plan and a trip that do not exist: nothing is read, nothing is written.
import type { TBreakerScope } from "../../schemas/breaker";
import { loadPlanFences } from "../routing/plan-fences";
import { db } from "../store/db";
import { cutoversOfScope, tenantsInScope } from "./scope";
import { readTrip, tripLockHeld } from "./trip-store";

const NOBODY = "00000000-0000-0000-0000-000000000000";

const SCOPES: TBreakerScope[] = [
  { kind: "all" },
  { kind: "shard", databaseId: NOBODY },
  { kind: "tenants", tenants: ["-"] },
  { kind: "cohort", ordinal: 0, andLater: false },
  { kind: "cohort", ordinal: 0, andLater: true },
];

/** Runs the rollback path's query shapes once; failures are ignored (the real trip meets them). */
export async function warmRollbackPath(): Promise<void> {
  const quietly = (work: Promise<unknown>) => work.catch(() => undefined);
  await Promise.all([
    quietly(readTrip(NOBODY)),
    quietly(loadPlanFences(NOBODY)),
    quietly(db().dataMovement.findUnique({ where: { planId: NOBODY }, select: { status: true } })),
    // advanceTrip's and noteTripStep's writes, matching no row, and their check of the lock.
    quietly(db().$transaction((tx) => tripLockHeld(tx, NOBODY, 0))),
    quietly(
      db().breakerTrip.updateMany({
        where: { id: NOBODY, status: "tripped" },
        data: { attempts: 1, worker: "warm-up", status: "rolling_back", steps: [], updatedAt: new Date() },
      }),
    ),
    quietly(
      db().breakerTrip.updateMany({
        where: { id: NOBODY, status: "rolling_back" },
        data: { freezeLsns: {}, steps: [], updatedAt: new Date() },
      }),
    ),
    ...SCOPES.map((scope) =>
      quietly(
        (async () => {
          await tenantsInScope(db(), NOBODY, scope);
          const where = await cutoversOfScope(db(), NOBODY, scope);
          await db().tenantCutover.updateMany({
            where: { AND: [where, { status: "requested" }] },
            data: { status: "aborted", error: "warm-up", endedAt: new Date() },
          });
          await db().tenantCutover.findMany({
            where,
            select: { tenantKey: true, status: true, direction: true },
          });
        })(),
      ),
    ),
  ]);
}

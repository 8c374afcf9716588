// The slot watch: every movement that holds a replication slot on legacy has the WAL that slot
// retains sampled (`pg_current_wal_lsn() - restart_lsn`), streaming or not. A failed movement's
// slot is read by nobody and keeps all WAL from where CDC stopped: one held 241 MB and growing,
// shown nowhere. The samples go to the store (metric `slot.retained_bytes`), the plan's header shows
// the newest, and a slot that nobody streams and holds more than the plan's warning threshold gets
// a warning event. The same round recovers starts whose process died (interrupted-start.ts).
//
// It runs beside the supervisor's tick, never inside it: an unreachable legacy costs its connect
// timeout here, and must not hold up the CDC streams and slices the tick keeps running.

import { ZPlanSettings } from "../../schemas/plan";
import { readSlotStatus } from "../cdc/slot";
import type { MovementStatus } from "../state/movement";
import { db } from "../store/db";
import { loadMovementContext, recordEngineEvent, recordMetric } from "../store/movement-context";
import { recoverInterruptedStart } from "./interrupted-start";

export const RETAINED_WAL_METRIC = "slot.retained_bytes";
/** Movements in these statuses have a CDC stream reading their slot (the supervisor runs one). */
const STREAMING: readonly MovementStatus[] = ["running", "paused"];
/** A non-streaming slot over the threshold is warned about again after this long. */
const REWARN_MS = 60 * 60_000;

export function isStreamingStatus(status: MovementStatus): boolean {
  return STREAMING.includes(status);
}

/** Samples one movement's slot; returns the bytes it retains, or null when the slot does not exist. */
export async function sampleRetainedWal(planId: string): Promise<number | null> {
  const ctx = await loadMovementContext(planId);
  const slot = await readSlotStatus(ctx.source, ctx.slotName);
  if (slot?.retainedBytes == null) return null;
  const bytes = Number(slot.retainedBytes);
  await recordMetric(planId, RETAINED_WAL_METRIC, bytes);
  return bytes;
}

export interface SlotWatch {
  stop(): Promise<void>;
}

export function startSlotWatch(
  controlPlaneUrl: string,
  options: { intervalMs?: number; log?: (m: string) => void } = {},
): SlotWatch {
  const intervalMs = options.intervalMs ?? 10_000;
  const log = options.log ?? ((m) => console.log(m));
  const warnedAt = new Map<string, number>();
  let stopped = false;
  let round: Promise<void> = Promise.resolve();

  async function watch(planId: string, status: MovementStatus) {
    if (status === "preparing") {
      if ((await recoverInterruptedStart(controlPlaneUrl, planId)) === "recovered") {
        log(`[slot-watch] recovered the interrupted start of ${planId}`);
      }
      return;
    }
    // Several workers run this round: one sample per interval is enough for all of them.
    const newest = await db().metricSample.findFirst({
      where: { planId, name: RETAINED_WAL_METRIC },
      orderBy: { at: "desc" },
      select: { at: true },
    });
    if (newest && Date.now() - newest.at.getTime() < intervalMs * 0.8) return;
    const bytes = await sampleRetainedWal(planId);
    if (bytes === null || isStreamingStatus(status)) {
      warnedAt.delete(planId);
      return;
    }
    const plan = await db().plan.findUniqueOrThrow({ where: { id: planId }, select: { settings: true } });
    const limit = ZPlanSettings.parse(plan.settings).slotRetainedWarnMb * 1024 * 1024;
    if (bytes <= limit || Date.now() - (warnedAt.get(planId) ?? 0) < REWARN_MS) return;
    warnedAt.set(planId, Date.now());
    await recordEngineEvent(
      planId,
      "warn",
      "slot",
      `The replication slot on legacy holds ${Math.round(bytes / 1024 / 1024)} MB of WAL and nothing streams it ` +
        `(the movement is ${status}): it grows with every write until legacy's disk fills. ` +
        "Resume the data movement once its cause is fixed, or cancel it to drop the slot.",
    );
  }

  async function runRound() {
    const movements = await db().dataMovement.findMany({
      where: { status: { not: "cancelled" } },
      select: { planId: true, status: true },
    });
    await Promise.all(
      movements.map((m) =>
        watch(m.planId, m.status as MovementStatus).catch((e) =>
          log(`[slot-watch] ${m.planId}: ${(e as Error).message}`),
        ),
      ),
    );
  }

  const tick = () => {
    round = round.then(() =>
      stopped ? undefined : runRound().catch((e) => log(`[slot-watch] ${(e as Error).message}`)),
    );
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await round;
    },
  };
}

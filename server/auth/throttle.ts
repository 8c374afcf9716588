// Fixed-window counters in the control-plane database, shared by every dashboard process: one
// atomic statement per event, so twenty requests at once count to twenty, never fewer.
import type { Prisma } from "../generated/prisma/client";

export interface WindowCount {
  /** Events in the current window, this one included (1 = this event opened a new window). */
  count: number;
  windowStart: Date;
  /** When this event opened a new window: how many the window before it counted (else null). */
  previousCount: number | null;
}

type Store = Pick<Prisma.TransactionClient, "$queryRaw" | "$executeRaw">;

export async function countInWindow(store: Store, key: string, windowSeconds: number): Promise<WindowCount> {
  await store.$executeRaw`
    insert into throttle_window (key, window_start, count) values (${key}, now(), 0)
    on conflict (key) do nothing`;
  // The FROM subquery locks the row and yields its values before this update: the window being
  // closed is reported exactly once, to the event that opens the next one, even under contention.
  const rows = await store.$queryRaw<{ count: number; window_start: Date; previous_count: number }[]>`
    update throttle_window t set
      window_start = case when old.window_start <= now() - make_interval(secs => ${windowSeconds}) then now() else old.window_start end,
      count = case when old.window_start <= now() - make_interval(secs => ${windowSeconds}) then 1 else old.count + 1 end
    from (select key, count, window_start from throttle_window where key = ${key} for update) old
    where t.key = old.key
    returning t.count, t.window_start, old.count as previous_count`;
  const row = rows[0];
  if (!row) throw new Error(`throttle_window: no row for ${key}`);
  const count = Number(row.count);
  return {
    count,
    windowStart: row.window_start,
    previousCount: count === 1 ? Number(row.previous_count) : null,
  };
}

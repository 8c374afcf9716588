// Which backfill tasks have a copier working on them right now, read from the control plane's lock
// table: a slice holds its task's advisory lock (TASK_LOCK_CLASS, task id) from its first chunk until
// it has stopped, and a killed worker's lock dies with its connection. So "no lock held" is the
// engine's own word that a pause has taken effect — the store's status says only what was asked.
import { db } from "./db";

export const TASK_LOCK_CLASS = 7_363_100;

/** How many of these tasks a copier holds at this moment. */
export async function countActiveCopiers(taskIds: bigint[]): Promise<number> {
  if (taskIds.length === 0) return 0;
  const rows = await db().$queryRaw<{ n: number }[]>`
    select count(*)::int as n
      from pg_locks
     where locktype = 'advisory'
       and database = (select oid from pg_database where datname = current_database())
       and classid = ${TASK_LOCK_CLASS}::int::oid
       and objsubid = 2
       and granted
       and objid::text::bigint = any(${taskIds.map(Number)}::bigint[])`;
  return rows[0]?.n ?? 0;
}

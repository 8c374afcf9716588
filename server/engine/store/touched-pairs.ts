// The (table, tenant) pairs CDC touched, as the "recent" parity pass reads and forgets them.
//
// In SQL with the pairs as one JSON parameter, not through Prisma: a pass forgets up to 2,000 pairs,
// and a Prisma `deleteMany` with 2,000 `OR` branches compiled for a quarter of a second on the
// worker's event loop, which also receives the CDC stream. That stalled CDC by 260 ms every 30 s
// (the bench's 40 s lag test showed it).
import { db } from "./db";

/**
 * CDC re-stamps a pair at most this often (upsertTouched), and a pass forgets only pairs stamped
 * this long before it began. Every change since a pass began is then either re-stamped after it
 * or within this margin before it, so it is never forgotten unchecked; and a busy tenant costs a
 * write every 30 s instead of one every flush (rewriting every busy pair every 2 s stalled legacy's
 * commits on a shared machine).
 */
export const RESTAMP_AFTER_SECONDS = 30;

export interface TouchedPair {
  tableName: string;
  tenantKey: string;
}

/** The pairs touched longest ago first (a pass checks at most `limit`). */
export async function readTouchedPairs(planId: string, limit: number): Promise<TouchedPair[]> {
  return db().$queryRawUnsafe<TouchedPair[]>(
    `select table_name as "tableName", tenant_key as "tenantKey"
     from parity_touched where plan_id = $1::uuid
     order by touched_at, table_name, tenant_key limit $2::int`,
    planId,
    limit,
  );
}

/**
 * Forgets the pairs a pass checked, except those stamped since `since` (when the pass began reading
 * them) less RESTAMP_AFTER_SECONDS: a change after that may not have been seen, so the next pass
 * checks it again.
 */
export async function forgetCheckedPairs(
  planId: string,
  pairs: readonly TouchedPair[],
  since: Date,
): Promise<number> {
  if (pairs.length === 0) return 0;
  return db().$executeRawUnsafe(
    `delete from parity_touched p
     using jsonb_to_recordset($2::jsonb) as c("tableName" text, "tenantKey" text)
     where p.plan_id = $1::uuid and p.table_name = c."tableName" and p.tenant_key = c."tenantKey"
       and p.touched_at < $3::timestamptz - make_interval(secs => $4::int)`,
    planId,
    JSON.stringify(pairs.map(({ tableName, tenantKey }) => ({ tableName, tenantKey }))),
    since.toISOString(),
    RESTAMP_AFTER_SECONDS,
  );
}

// The CDC runner's bookkeeping in the control-plane store, in plain SQL on the runner's own
// control-plane connection (the one holding its lock) rather than through Prisma: these run several
// times a second on the event loop that also receives the stream, and each Prisma query costs
// milliseconds of synchronous work there (query compilation), which showed up in the lag's tail.
// The tables and columns are Prisma's (prisma/schema.prisma); the movement test exercises every query.
import type pg from "pg";
import { RESTAMP_AFTER_SECONDS } from "../parity/touched-pairs";

export interface MovementState {
  /** Running or paused: the stream keeps going. */
  active: boolean;
  /** Tables whose backfill is done (CDC stops guarding them). */
  doneTables: string[];
}

export async function readMovementState(client: pg.ClientBase, planId: string): Promise<MovementState> {
  const { rows } = await client.query<{ status: string; done: string[] }>(
    `select m.status::text as status,
            coalesce(array_agg(t.table_name) filter (where t.status = 'done'), '{}') as done
     from data_movement m left join backfill_task t on t.plan_id = m.plan_id
     where m.plan_id = $1 group by m.status`,
    [planId],
  );
  const row = rows[0];
  return { active: row?.status === "running" || row?.status === "paused", doneTables: row?.done ?? [] };
}

export async function insertMetric(client: pg.ClientBase, planId: string, name: string, value: number) {
  await client.query("insert into metric_sample (plan_id, name, value) values ($1, $2, $3)", [
    planId,
    name,
    value,
  ]);
}

/**
 * Tenants CDC changed, per table: the "recently changed" parity pass checks these. A pair stamped
 * within RESTAMP_AFTER_SECONDS is left as it is (read, not rewritten): see touched-pairs.ts.
 */
export async function upsertTouched(
  client: pg.ClientBase,
  planId: string,
  touched: readonly { table: string; tenant: string }[],
) {
  await client.query(
    `insert into parity_touched (plan_id, table_name, tenant_key, touched_at)
     select $1::uuid, u.t, u.k, now() from unnest($2::text[], $3::text[]) as u(t, k)
     where not exists (
       select 1 from parity_touched p
       where p.plan_id = $1::uuid and p.table_name = u.t and p.tenant_key = u.k
         and p.touched_at > now() - make_interval(secs => $4::int))
     on conflict (plan_id, table_name, tenant_key) do update set touched_at = excluded.touched_at`,
    [planId, touched.map((p) => p.table), touched.map((p) => p.tenant), RESTAMP_AFTER_SECONDS],
  );
}

export async function writeConfirmedLsn(client: pg.ClientBase, planId: string, lsn: string) {
  await client.query("update data_movement set confirmed_lsn = $2, updated_at = now() where plan_id = $1", [
    planId,
    lsn,
  ]);
}

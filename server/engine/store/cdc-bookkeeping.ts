// The CDC runner's bookkeeping in the control-plane store, in plain SQL on the runner's own
// control-plane connection (the one holding its lock) rather than through Prisma: these run several
// times a second on the event loop that also receives the stream, and each Prisma query costs
// milliseconds of synchronous work there (query compilation), which showed up in the lag's tail.
// The tables and columns are Prisma's (prisma/schema.prisma); the movement test exercises every query.
import type pg from "pg";
import { RESTAMP_AFTER_SECONDS } from "./touched-pairs";

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

/** The plan's legacy database (stray writes forward CDC finds are recorded against it). */
export async function readLegacyDatabase(
  store: pg.ClientBase,
  planId: string,
): Promise<{ id: string; name: string }> {
  const { rows } = await store.query<{ id: string; name: string }>(
    `select d.id::text, d.name from plan p join database d on d.id = p.source_database_id where p.id = $1::uuid`,
    [planId],
  );
  const row = rows[0];
  if (!row) throw new Error(`Plan ${planId} does not exist.`);
  return row;
}

/** At most this many tenants of one transaction are told apart; the rest are folded into the last. */
const STRAY_TENANTS_PER_TRANSACTION = 16;

/**
 * Records rows forward CDC dropped because legacy no longer owned their tenant (ownership-route.ts)
 * as stray writes of the plan, reason CDC_STRAY_REASON. Ticket: the transaction's commit LSN plus
 * the tenant's index in it (below 16: a commit record is longer than that, so two transactions'
 * tickets never meet). Idempotent through the table's unique key: a replay records nothing twice.
 */
export async function insertCdcStrayWrites(
  store: pg.ClientBase,
  planId: string,
  legacy: { id: string; name: string },
  strays: readonly { tenantKey: string; commitLsn: bigint; rows: number }[],
  reason: string,
): Promise<number> {
  const byTransaction = new Map<bigint, { tenantKey: string; rows: number }[]>();
  for (const s of strays) {
    const list = byTransaction.get(s.commitLsn) ?? [];
    list.push({ tenantKey: s.tenantKey, rows: s.rows });
    byTransaction.set(s.commitLsn, list);
  }
  const tickets: string[] = [];
  const tenants: (string | null)[] = [];
  const counts: number[] = [];
  for (const [lsn, list] of byTransaction) {
    list.sort((a, b) => (a.tenantKey < b.tenantKey ? -1 : a.tenantKey > b.tenantKey ? 1 : 0));
    const told = list.slice(0, STRAY_TENANTS_PER_TRANSACTION - 1);
    const rest = list.slice(STRAY_TENANTS_PER_TRANSACTION - 1);
    const entries = [
      ...told,
      ...(rest.length === 1
        ? rest
        : rest.length > 1
          ? [{ tenantKey: null, rows: rest.reduce((n, r) => n + r.rows, 0) }]
          : []),
    ];
    for (const [i, e] of entries.entries()) {
      tickets.push((lsn + BigInt(i)).toString());
      tenants.push(e.tenantKey);
      counts.push(e.rows);
    }
  }
  if (tickets.length === 0) return 0;
  const { rowCount } = await store.query(
    `insert into stray_write (plan_id, database_id, database_name, tenant_key, reason, ticket, count)
     select $1::uuid, $2::uuid, $3, t.tenant_key, $4, t.ticket, t.count
     from unnest($5::bigint[], $6::text[], $7::int[]) as t(ticket, tenant_key, count)
     on conflict (plan_id, database_id, ticket) do nothing`,
    [planId, legacy.id, legacy.name, reason, tickets, tenants, counts],
  );
  return rowCount ?? 0;
}

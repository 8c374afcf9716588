// A live write workload against the demo dataset: what the application does while we migrate it.
//
// Design:
// - A token bucket paced by one fixed-interval timer: every tick adds `rate × elapsed` writes owed,
//   and up to MAX_CONCURRENT_WRITES lanes drain them. One timer per write would drift and pile up
//   timers when the database is slow; this way a slow database lowers the observed rate instead.
// - Owed writes are capped at MAX_BACKLOG_SECONDS of the rate, so a stall (a cutover freeze, a
//   restart) is not followed by a thundering burst that no real app would send.
// - Every write is one SQL statement, hence one short transaction; several write two tables at once
//   (a task and its event, an invoice and its lines) so CDC sees multi-table transactions.
// - Tenants are drawn with Zipf skew, biggest first, so hot tenants are also the busiest writers.
// - Updates never touch tasks.description except in the rare "rewrite" write: most updates of a
//   task with a TOASTed description therefore reach CDC with an "unchanged toast" marker.
//
// - Writes go through the router SDK (sdk/): each to the tenant's owner in the routing map. Given a
//   bare pool, the workload wraps it in a router over a fixed map (every tenant on that database).
//   A retryable routing error (a freeze that outlasted its budget, a route that changed under a
//   write) is retried, up to MAX_ROUTING_RETRIES times, and counted apart from failures.
//
// Invariants:
// - A failed write never escapes: it is counted, handed to onError, and the workload carries on.
// - stop() resolves only after every in-flight write has settled.
// - At most MAX_CONCURRENT_WRITES queries are in flight, whatever the pool size.
import pg from "pg";
import { RouterError } from "../../sdk/errors";
import { legacyOnlyMap, staticMapSource } from "../../sdk/map-source";
import { createRouter, type Router, type TenantQueryable } from "../../sdk/router";
import { createRandom, createZipfSampler, DEMO_ZIPF_EXPONENT, pickWeighted, type Random } from "./zipf";

export interface WriteWorkloadOptions {
  writesPerSecond: number;
  /** Tenant ids 1…tenants; read from the tenants table (biggest first) if omitted. */
  tenants?: number;
  seed?: number;
  onError?: (error: unknown) => void;
}

export interface WriteWorkloadStats {
  inserts: number;
  updates: number;
  deletes: number;
  errors: number;
  /** Writes sent again after a retryable routing error (a freeze, a re-route). */
  retries: number;
  startedAt: Date;
  writesPerSecondObserved: number;
}

export interface WriteWorkload {
  stats(): WriteWorkloadStats;
  setRate(writesPerSecond: number): void;
  stop(): Promise<void>;
}

export const DEFAULT_WRITES_PER_SECOND = 300;

const TICK_MS = 25;
const MAX_CONCURRENT_WRITES = 4;
const MAX_BACKLOG_SECONDS = 0.5;
const RATE_WINDOW_MS = 5_000;
const TENANT_RELOAD_DELAY_MS = 1_000;
const DEFAULT_SEED = 42;
const MAX_ROUTING_RETRIES = 3;

type WriteKind = "insert" | "update" | "delete";

interface WriteContext {
  db: TenantQueryable;
  tenantId: string;
  random: Random;
}

interface Operation {
  name: string;
  kind: WriteKind;
  weight: number;
  /** Resolves to false when the tenant had no row to act on (nothing was written). */
  run(context: WriteContext): Promise<boolean>;
}

// ---------------------------------------------------------------------------------------------
// SQL. Random rows are picked as "the first id at or after a random point, else the first id": two
// index probes on the primary key, however big the tenant.

function randomRowIdSql(table: string, tenantParam: string, pointParam: string, filter = "true"): string {
  return `coalesce(
    (select id from ${table} where tenant_id = ${tenantParam} and id >= ${pointParam}::uuid and ${filter} order by id limit 1),
    (select id from ${table} where tenant_id = ${tenantParam} and ${filter} order by id limit 1))`;
}

const RECORD_EVENT_SQL = `
insert into events (tenant_id, kind, actor_id, payload, created_at)
values ($1::bigint, $2::text, ${randomRowIdSql("users", "$1::bigint", "$3")},
  jsonb_build_object('source', $4::text, 'duration_ms', $5::int, 'request_id', $6::text), now())`;

const CREATE_TASK_SQL = `
with project as (
  select id from projects where tenant_id = $1 and not archived
  order by id offset floor(random() * (select count(*) from projects where tenant_id = $1 and not archived)) limit 1
), task as (
  insert into tasks (tenant_id, id, project_id, title, description, status, priority, assignee_id, created_at, updated_at)
  select $1::bigint, gen_random_uuid(), project.id, $2::text, $3::text, 'todo', $4::smallint,
    ${randomRowIdSql("users", "$1::bigint", "$5")}, now(), now()
  from project
  returning tenant_id, id, assignee_id
)
insert into events (tenant_id, kind, actor_id, payload, created_at)
select tenant_id, 'task.created', assignee_id, jsonb_build_object('task_id', id), now() from task`;

// Lines first, materialised once, so the invoice amount is exactly the sum of its lines.
const ISSUE_INVOICE_SQL = `
with lines as (
  select g as line_no,
    (array['Seats', 'Storage', 'API calls', 'Premium support', 'SSO add-on', 'Overage'])[1 + floor(random() * 6)::int] as description,
    1 + floor(random() * 20)::int as quantity,
    100 + floor(random() * 9900)::bigint as unit_price_cents
  from generate_series(1, $2::int) g
), invoice as (
  insert into invoices (tenant_id, currency_code, amount_cents, status, issued_at, due_at)
  select t.tenant_id, t.currency_code, (select sum(quantity * unit_price_cents) from lines), 'open', now(), now() + interval '30 days'
  from tenants t where t.tenant_id = $1
  returning tenant_id, id
)
insert into invoice_lines (tenant_id, invoice_id, line_no, description, quantity, unit_price_cents)
select invoice.tenant_id, invoice.id, lines.line_no, lines.description, lines.quantity, lines.unit_price_cents
from invoice cross join lines`;

const ADVANCE_TASK_SQL = `
with task as (
  update tasks set
    status = case status when 'todo' then 'in_progress' when 'in_progress' then 'review'
                         when 'review' then 'done' else 'todo' end,
    updated_at = now()
  where tenant_id = $1 and id = ${randomRowIdSql("tasks", "$1::bigint", "$2")}
  returning tenant_id, id, status
)
insert into events (tenant_id, kind, payload, created_at)
select tenant_id, case when status = 'done' then 'task.completed' else 'task.updated' end,
  jsonb_build_object('task_id', id, 'status', status), now()
from task`;

// The one write that replaces a description; a large one goes out of line into TOAST.
const REWRITE_TASK_DESCRIPTION_SQL = `
update tasks set
  description = case when $3::boolean
    then (select string_agg(md5(random()::text || piece), '') from generate_series(1, 200) piece)
    else 'Updated: ' || md5(random()::text) end,
  updated_at = now()
where tenant_id = $1 and id = ${randomRowIdSql("tasks", "$1::bigint", "$2")}`;

const TOUCH_USER_SQL = `
update users set last_seen_at = now()
where tenant_id = $1 and id = ${randomRowIdSql("users", "$1::bigint", "$2")}`;

const UPDATE_TENANT_SETTINGS_SQL = `
update tenants set settings = jsonb_set(
  jsonb_set(settings, '{features,beta}', to_jsonb(not coalesce((settings #>> '{features,beta}')::boolean, false))),
  '{notifications,digest}', to_jsonb($2::text))
where tenant_id = $1`;

const PAY_INVOICE_SQL = `
update invoices set status = 'paid', paid_at = now()
where tenant_id = $1
  and id = (select id from invoices where tenant_id = $1 and status = 'open' order by due_at limit 1)`;

// Retention: the oldest event of the tenant goes first.
const PRUNE_EVENT_SQL = `
delete from events
where tenant_id = $1 and id = (select id from events where tenant_id = $1 order by id limit 1)`;

const DELETE_DONE_TASK_SQL = `
delete from tasks
where tenant_id = $1 and id = ${randomRowIdSql("tasks", "$1::bigint", "$2", "status = 'done'")}`;

// Invoice lines go with their invoice through the ON DELETE CASCADE foreign key.
const VOID_INVOICE_SQL = `
delete from invoices
where tenant_id = $1
  and id = (select id from invoices where tenant_id = $1 and status in ('draft', 'open') order by id desc limit 1)`;

// ---------------------------------------------------------------------------------------------

function randomUuid(random: Random): string {
  let hex = "";
  for (let i = 0; i < 4; i++) {
    hex += Math.floor(random() * 4_294_967_296)
      .toString(16)
      .padStart(8, "0");
  }
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function pick<T>(values: readonly T[], random: Random): T {
  const value = values[Math.floor(random() * values.length)];
  if (value === undefined) throw new Error("pick needs at least one value.");
  return value;
}

async function wrote(result: Promise<pg.QueryResult>): Promise<boolean> {
  return ((await result).rowCount ?? 0) > 0;
}

const recordEvent: Operation = {
  name: "record event",
  kind: "insert",
  weight: 30,
  run: ({ db, tenantId, random }) =>
    wrote(
      db.query(RECORD_EVENT_SQL, [
        tenantId,
        pick(["user.login", "project.viewed", "comment.added", "file.uploaded", "api.call"], random),
        randomUuid(random),
        pick(["web", "web", "api", "mobile"], random),
        Math.floor(5 + random() * random() * 2000),
        Math.floor(random() * 2 ** 48).toString(16),
      ]),
    ),
};

const OPERATIONS: readonly Operation[] = [
  recordEvent,
  {
    name: "create task",
    kind: "insert",
    weight: 12,
    run: ({ db, tenantId, random }) =>
      wrote(
        db.query(CREATE_TASK_SQL, [
          tenantId,
          `${pick(["Fix", "Add", "Review", "Ship"], random)} ${pick(["search", "export", "webhooks", "billing"], random)}`,
          `Created by the demo workload: ${randomUuid(random)}`,
          1 + Math.floor(random() * 4),
          randomUuid(random),
        ]),
      ),
  },
  {
    name: "issue invoice",
    kind: "insert",
    weight: 5,
    run: ({ db, tenantId, random }) =>
      wrote(db.query(ISSUE_INVOICE_SQL, [tenantId, 1 + Math.floor(random() * 5)])),
  },
  {
    name: "advance task",
    kind: "update",
    weight: 18,
    run: ({ db, tenantId, random }) => wrote(db.query(ADVANCE_TASK_SQL, [tenantId, randomUuid(random)])),
  },
  {
    name: "rewrite task description",
    kind: "update",
    weight: 1,
    run: ({ db, tenantId, random }) =>
      wrote(db.query(REWRITE_TASK_DESCRIPTION_SQL, [tenantId, randomUuid(random), random() < 0.3])),
  },
  {
    name: "touch user",
    kind: "update",
    weight: 12,
    run: ({ db, tenantId, random }) => wrote(db.query(TOUCH_USER_SQL, [tenantId, randomUuid(random)])),
  },
  {
    name: "update tenant settings",
    kind: "update",
    weight: 4,
    run: ({ db, tenantId, random }) =>
      wrote(db.query(UPDATE_TENANT_SETTINGS_SQL, [tenantId, pick(["daily", "weekly", "off"], random)])),
  },
  {
    name: "pay invoice",
    kind: "update",
    weight: 4,
    run: ({ db, tenantId }) => wrote(db.query(PAY_INVOICE_SQL, [tenantId])),
  },
  {
    name: "prune event",
    kind: "delete",
    weight: 8,
    run: ({ db, tenantId }) => wrote(db.query(PRUNE_EVENT_SQL, [tenantId])),
  },
  {
    name: "delete done task",
    kind: "delete",
    weight: 4,
    run: ({ db, tenantId, random }) => wrote(db.query(DELETE_DONE_TASK_SQL, [tenantId, randomUuid(random)])),
  },
  {
    name: "void invoice",
    kind: "delete",
    weight: 2,
    run: ({ db, tenantId }) => wrote(db.query(VOID_INVOICE_SQL, [tenantId])),
  },
];

const WEIGHTED_OPERATIONS = OPERATIONS.map((operation) => [operation, operation.weight] as const);

// Biggest tenants first (users grow with tenant size), so Zipf rank 0 is the biggest tenant.
const TENANTS_BY_SIZE_SQL = `
select t.tenant_id::text as tenant_id
from tenants t
left join (select tenant_id, count(*) as n from users group by tenant_id) u on u.tenant_id = t.tenant_id
order by u.n desc nulls last, t.tenant_id`;

function validateRate(writesPerSecond: number): number {
  if (!Number.isFinite(writesPerSecond) || writesPerSecond < 0) {
    throw new Error(
      `The write workload's rate must be a number of writes per second ≥ 0, got ${writesPerSecond}; ` +
        "use 0 to pause it.",
    );
  }
  return writesPerSecond;
}

/** A router over one pool (every tenant on it), for callers that hand the workload a bare pool. */
function singleDatabaseRouter(pool: pg.Pool): Promise<Router> {
  return createRouter({ databases: { legacy: pool }, map: staticMapSource(legacyOnlyMap("legacy")) });
}

/** Writes through `target`: a router (the demo's, following the routing map) or a bare pool. */
export function startWriteWorkload(target: pg.Pool | Router, options: WriteWorkloadOptions): WriteWorkload {
  const ownsRouter = target instanceof pg.Pool;
  const routerReady: Promise<Router> =
    target instanceof pg.Pool ? singleDatabaseRouter(target) : Promise.resolve(target);
  let router: Router | undefined;
  let rate = validateRate(options.writesPerSecond);
  if (options.tenants !== undefined && (!Number.isSafeInteger(options.tenants) || options.tenants < 1)) {
    throw new Error(
      `The write workload needs tenants ≥ 1 (ids 1…tenants), got ${options.tenants}; omit it to read the tenants table.`,
    );
  }
  const random = createRandom(options.seed ?? DEFAULT_SEED);
  const startedAt = new Date();
  const counts = { inserts: 0, updates: 0, deletes: 0, errors: 0, retries: 0 };
  const samples: { at: number; completed: number }[] = [];
  const inFlight = new Set<Promise<void>>();

  let state: "running" | "stopping" | "stopped" = "running";
  let tenantIds: string[] | undefined;
  let drawTenantRank: (() => number) | undefined;
  let tenantsRetryAt = 0;
  let owed = 0;
  let lastTickAt = performance.now();
  let stopping: Promise<void> | undefined;

  const completed = () => counts.inserts + counts.updates + counts.deletes;

  const reportError = (error: unknown) => {
    counts.errors++;
    try {
      options.onError?.(error);
    } catch {
      // A throwing error callback must not take the workload (or the process) down with it.
    }
  };

  const adoptTenants = (ids: string[]) => {
    if (ids.length === 0) {
      throw new Error(
        "The tenants table is empty: load the demo dataset before starting the write workload.",
      );
    }
    tenantIds = ids;
    drawTenantRank = createZipfSampler(ids.length, DEMO_ZIPF_EXPONENT, random);
  };

  const loadTenants = async () => {
    try {
      router ??= await routerReady;
      // Reading every tenant belongs to no tenant: legacy's pool, outside routing.
      const result = await router
        .pool(router.legacyDatabase)
        .query<{ tenant_id: string }>(TENANTS_BY_SIZE_SQL);
      adoptTenants(result.rows.map((row) => row.tenant_id));
    } catch (error) {
      tenantsRetryAt = performance.now() + TENANT_RELOAD_DELAY_MS;
      reportError(
        new Error(
          `The write workload could not read the tenants table (${error instanceof Error ? error.message : String(error)}); ` +
            "it retries every second. Load the demo dataset, or pass `tenants`.",
          { cause: error },
        ),
      );
    }
  };

  /** Runs one operation, again after a retryable routing error (the statement was not applied). */
  const runRouted = async (operation: Operation, context: WriteContext): Promise<boolean> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await operation.run(context);
      } catch (error) {
        if (!(error instanceof RouterError && error.retryable) || attempt >= MAX_ROUTING_RETRIES) throw error;
        counts.retries++;
      }
    }
  };

  const writeOnce = async () => {
    if (!tenantIds || !drawTenantRank || !router) return;
    const tenantId = tenantIds[drawTenantRank()] ?? tenantIds[0] ?? "1";
    let operation = pickWeighted(WEIGHTED_OPERATIONS, random);
    const context: WriteContext = { db: router.forTenant(tenantId), tenantId, random };
    try {
      // A tenant with nothing to update or delete still gets a real write, so the rate stays honest.
      if (!(await runRouted(operation, context))) {
        operation = recordEvent;
        await runRouted(operation, context);
      }
      counts[`${operation.kind}s`]++;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      reportError(
        new Error(`Demo workload write "${operation.name}" for tenant ${tenantId} failed: ${reason}`, {
          cause: error,
        }),
      );
    }
  };

  const lane = async () => {
    // Claiming a write before awaiting it keeps the lanes from overspending the bucket.
    while (state === "running" && owed >= 1) {
      owed -= 1;
      await writeOnce();
    }
  };

  const track = (work: Promise<void>) => {
    const tracked = work.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };

  const tick = () => {
    const now = performance.now();
    // At least one whole write must fit in the bucket, or a rate below 2/s would never write.
    const capacity = rate > 0 ? Math.max(1, rate * MAX_BACKLOG_SECONDS) : 0;
    owed = Math.min(owed + (rate * (now - lastTickAt)) / 1000, capacity);
    lastTickAt = now;
    samples.push({ at: now, completed: completed() });
    while (samples.length > 1 && (samples[0]?.at ?? now) < now - RATE_WINDOW_MS) samples.shift();

    if (!tenantIds) {
      if (inFlight.size === 0 && now >= tenantsRetryAt) track(loadTenants());
      return;
    }
    while (inFlight.size < MAX_CONCURRENT_WRITES && owed >= 1) track(lane());
  };

  if (options.tenants !== undefined) {
    const count = options.tenants;
    track(
      routerReady.then(
        (ready) => {
          router = ready;
          adoptTenants(Array.from({ length: count }, (_, index) => String(index + 1)));
        },
        (error: unknown) => reportError(error),
      ),
    );
  }
  const timer = setInterval(tick, TICK_MS);

  return {
    stats() {
      const now = performance.now();
      const oldest = samples[0];
      const seconds = oldest ? (now - oldest.at) / 1000 : 0;
      return {
        ...counts,
        startedAt,
        writesPerSecondObserved: oldest && seconds > 0 ? (completed() - oldest.completed) / seconds : 0,
      };
    },
    setRate(writesPerSecond) {
      rate = validateRate(writesPerSecond);
    },
    stop() {
      stopping ??= (async () => {
        state = "stopping";
        clearInterval(timer);
        // Lanes see the state change after their current write and exit; wait for those writes.
        while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
        if (ownsRouter) await (await routerReady.catch(() => null))?.close();
        state = "stopped";
      })();
      return stopping;
    },
  };
}

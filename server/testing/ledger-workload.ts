// A write workload through the router SDK that remembers every acknowledged write (a ledger), so a
// test can prove none was lost across cutovers: each key's final value, or that it was deleted.
//
// - Lanes: each lane writes its own tenants' rows in sequence (inserts into the demo's events, with
//   their bigserial ids; updates and deletes of rows it inserted; an invoice with its line in one
//   transaction) so a key's last acknowledged write is its final state, whatever the timing.
// - A write is in the ledger only once the SDK acknowledged it (the statement or COMMIT returned).
// - A retryable RouterError (a freeze outlasting its budget, a route changed under a transaction)
//   means nothing was written: counted by type and retried. Anything else is an unexpected error,
//   kept for the test to show.
import type pg from "pg";
import { RouterError } from "../../sdk/errors";
import type { Router } from "../../sdk/router";

export interface LedgerEntry {
  table: "events" | "invoices" | "invoice_lines";
  tenant: string;
  /** The row's key as text: "id" (events, invoices) or "invoice_id|line_no". */
  key: string;
  /** The final value of the column the workload writes (payload n / amount_cents); null: deleted. */
  value: string | null;
}

export interface LedgerStats {
  acknowledged: number;
  retries: Record<string, number>;
  unexpected: string[];
  writesPerSecond: number;
}

export interface LedgerWorkload {
  stats(): LedgerStats;
  entries(): LedgerEntry[];
  stop(): Promise<void>;
}

interface LaneState {
  events: string[];
  invoices: string[];
}

export function startLedgerWorkload(
  router: Router,
  options: {
    /** Tenants by weight: a hot tenant appears several times. */
    tenants: string[];
    lanes: number;
    /** Target writes per second over all lanes (each lane paces itself to its share). */
    writesPerSecond: number;
    seed?: number;
  },
): LedgerWorkload {
  const ledger = new Map<string, LedgerEntry>();
  const retries: Record<string, number> = {};
  const unexpected: string[] = [];
  let acknowledged = 0;
  let stopping = false;
  const startedAt = Date.now();
  let seed = options.seed ?? 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const put = (entry: LedgerEntry) => {
    ledger.set(`${entry.table}:${entry.tenant}:${entry.key}`, entry);
    acknowledged++;
  };

  /** Runs `write` until it is acknowledged; a retryable routing error is counted and retried. */
  const acknowledge = async (write: () => Promise<void>) => {
    for (let attempt = 0; attempt < 50 && !stopping; attempt++) {
      try {
        await write();
        return;
      } catch (error) {
        if (error instanceof RouterError && error.retryable) {
          retries[error.name] = (retries[error.name] ?? 0) + 1;
          continue;
        }
        unexpected.push(`${(error as Error).name}: ${(error as Error).message}`);
        return;
      }
    }
  };

  const step = async (lane: LaneState, tenant: string, n: number) => {
    const handle = router.forTenant(tenant);
    const roll = random();
    if (roll < 0.45 || lane.events.length === 0) {
      await acknowledge(async () => {
        const { rows } = await handle.query<{ id: string }>(
          "insert into events (tenant_id, kind, payload, created_at) values ($1, 'ledger', jsonb_build_object('n', $2::int), now()) returning id::text",
          [tenant, n],
        );
        const id = rows[0]?.id as string;
        lane.events.push(`${tenant}|${id}`);
        put({ table: "events", tenant, key: id, value: String(n) });
      });
    } else if (roll < 0.7) {
      const [t, id] = (lane.events[Math.floor(random() * lane.events.length)] as string).split("|") as [
        string,
        string,
      ];
      await acknowledge(async () => {
        const result = await router
          .forTenant(t)
          .query(
            "update events set payload = jsonb_build_object('n', $3::int) where tenant_id = $1 and id = $2",
            [t, id, n],
          );
        if (result.rowCount !== 1)
          throw new Error(`update of events ${t}/${id} found ${result.rowCount} rows`);
        put({ table: "events", tenant: t, key: id, value: String(n) });
      });
    } else if (roll < 0.8) {
      const index = Math.floor(random() * lane.events.length);
      const [t, id] = (lane.events[index] as string).split("|") as [string, string];
      await acknowledge(async () => {
        const result = await router
          .forTenant(t)
          .query("delete from events where tenant_id = $1 and id = $2", [t, id]);
        if (result.rowCount !== 1)
          throw new Error(`delete of events ${t}/${id} found ${result.rowCount} rows`);
        lane.events.splice(index, 1);
        put({ table: "events", tenant: t, key: id, value: null });
      });
    } else if (roll < 0.92 || lane.invoices.length === 0) {
      // Two tables, one transaction: the invoice and its line commit together or not at all.
      await acknowledge(async () => {
        const id = await handle.transaction(async (tx) => {
          const { rows } = await tx.query<{ id: string }>(
            "insert into invoices (tenant_id, currency_code, amount_cents, status, issued_at, due_at) select $1, currency_code, $2, 'open', now(), now() + interval '30 days' from tenants where tenant_id = $1 returning id::text",
            [tenant, n],
          );
          const invoiceId = rows[0]?.id;
          if (!invoiceId) throw new Error(`tenant ${tenant} has no tenants row`);
          await tx.query(
            "insert into invoice_lines (tenant_id, invoice_id, line_no, description, quantity, unit_price_cents) values ($1, $2, 1, 'ledger', 1, $3)",
            [tenant, invoiceId, n],
          );
          return invoiceId;
        });
        lane.invoices.push(`${tenant}|${id}`);
        put({ table: "invoices", tenant, key: id, value: String(n) });
        put({ table: "invoice_lines", tenant, key: `${id}|1`, value: String(n) });
      });
    } else {
      const [t, id] = (lane.invoices[Math.floor(random() * lane.invoices.length)] as string).split("|") as [
        string,
        string,
      ];
      await acknowledge(async () => {
        await router.forTenant(t).transaction(async (tx) => {
          await tx.query("update invoices set amount_cents = $3 where tenant_id = $1 and id = $2", [
            t,
            id,
            n,
          ]);
          await tx.query(
            "update invoice_lines set unit_price_cents = $3 where tenant_id = $1 and invoice_id = $2 and line_no = 1",
            [t, id, n],
          );
        });
        put({ table: "invoices", tenant: t, key: id, value: String(n) });
        put({ table: "invoice_lines", tenant: t, key: `${id}|1`, value: String(n) });
      });
    }
  };

  let counter = 0;
  const perLaneIntervalMs = (1000 * options.lanes) / Math.max(1, options.writesPerSecond);
  const lanes = Array.from({ length: options.lanes }, async (_, laneIndex) => {
    const lane: LaneState = { events: [], invoices: [] };
    // Each lane writes its own slice of the tenant list, so no two lanes race on one key.
    const mine = options.tenants.filter((_, i) => i % options.lanes === laneIndex);
    const tenants = mine.length > 0 ? mine : options.tenants;
    while (!stopping) {
      const began = Date.now();
      const tenant = tenants[Math.floor(random() * tenants.length)] as string;
      await step(lane, tenant, ++counter);
      const wait = perLaneIntervalMs - (Date.now() - began);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  });

  return {
    stats: () => ({
      acknowledged,
      retries: { ...retries },
      unexpected: [...unexpected],
      writesPerSecond: acknowledged / Math.max(0.001, (Date.now() - startedAt) / 1000),
    }),
    entries: () => [...ledger.values()],
    async stop() {
      stopping = true;
      await Promise.all(lanes);
    },
  };
}

const READ_SQL: Record<LedgerEntry["table"], string> = {
  events: "select (payload->>'n') as v from events where tenant_id = $1 and id = $2::bigint",
  invoices: "select amount_cents::text as v from invoices where tenant_id = $1 and id = $2::bigint",
  invoice_lines:
    "select unit_price_cents::text as v from invoice_lines where tenant_id = $1 and invoice_id = split_part($2, '|', 1)::bigint and line_no = split_part($2, '|', 2)::int",
};

/** The ledger entries `pool` does not hold as acknowledged (missing, stale, or not deleted). */
export async function ledgerMismatches(
  pool: pg.Pool,
  entries: readonly LedgerEntry[],
  where: string,
): Promise<string[]> {
  const problems: string[] = [];
  for (const entry of entries) {
    const { rows } = await pool.query<{ v: string }>(READ_SQL[entry.table], [entry.tenant, entry.key]);
    const found = rows[0]?.v ?? null;
    if (found !== entry.value) {
      problems.push(
        `${where}: ${entry.table} tenant ${entry.tenant} key ${entry.key}: expected ${entry.value ?? "deleted"}, found ${found ?? "nothing"}`,
      );
    }
  }
  return problems;
}

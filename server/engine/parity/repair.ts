// Repair copies a row from its owner to the shard, with the row-lock rule: the owner's row is read
// FOR SHARE and stays locked until the shard committed, so a concurrent write lands after the
// repair and its CDC event overwrites it — a repair can never leave an older version behind. A row
// the owner does not have is deleted from the shard; a row on a shard that does not own its tenant
// is deleted there.
//
// The owner is a parameter: legacy until the tenant cuts over (all a caller can pass today); the
// cutover issue passes the tenant's current owner. Both sides run under the pinned rendering
// settings: the row travels as text, and an owner session rendering dates as 'SQL, DMY' read back
// by a shard session in 'ISO, MDY' would write another date (or fail) — silently wrong repairs.
import type pg from "pg";
import { tableApplier } from "../cdc/apply";
import type { Tuple } from "../cdc/pgoutput";
import type { Placement } from "../router/placement";
import type { TablePlan } from "../shared/table-plan";
import { quoteIdent } from "../sql/identifiers";
import { setLocalRenderingSql } from "../sql/rendering";

export interface RepairOutcome {
  action: "upserted" | "deleted" | "none";
  legacyRow: Record<string, string | null> | null;
}

export async function repairRow(
  /** The database that owns the row's tenant now: its row is the truth. */
  owner: pg.Pool,
  shards: readonly pg.Pool[],
  placement: Placement,
  plan: TablePlan,
  shardOrdinal: number,
  key: string[],
): Promise<RepairOutcome> {
  const table = plan.table;
  const applier = tableApplier(table);
  const pk = table.primaryKey;
  const typeOf = new Map(table.columns.map((c) => [c.name, c.type]));
  const where = pk.map((c, i) => `${quoteIdent(c)} = $${i + 1}::${typeOf.get(c) ?? "text"}`).join(" and ");
  // The key is in plan.keyColumns order (shard key first); the statements want primary-key order.
  const pkValues = pk.map((c) => key[plan.keyColumns.indexOf(c)] ?? null);
  const target = shards[shardOrdinal];
  if (!target) throw new Error(`No shard ${shardOrdinal} in this plan.`);
  const source = await owner.connect();
  // Each side sits idle in its transaction while the other works (the owner's row lock is held
  // until the shard commits): a checked-out client has no 'error' listener, and a session the
  // server ends meanwhile emitted an unheard 'error' that ends the worker process. Heard: the next
  // statement on it fails, the repair fails cleanly, and the connection is destroyed.
  const lost = new Map<pg.PoolClient, Error>();
  const hear = (client: pg.PoolClient) => {
    const listener = (error: Error) => {
      if (!lost.has(client)) lost.set(client, error);
    };
    client.on("error", listener);
    return () => client.off("error", listener);
  };
  const unhearSource = hear(source);
  let shard: pg.PoolClient;
  try {
    shard = await target.connect();
  } catch (error) {
    unhearSource();
    source.release(lost.get(source));
    throw error;
  }
  const unhearShard = hear(shard);
  try {
    await source.query(`begin; ${setLocalRenderingSql()}`);
    const cols = applier.columns
      .map((c) => `${quoteIdent(c.name)}::text as ${quoteIdent(c.name)}`)
      .join(", ");
    const { rows } = await source.query<Record<string, string | null>>(
      `select ${cols} from ${table.qualified} where ${where} for share`,
      pkValues,
    );
    const legacyRow = rows[0] ?? null;
    const owner =
      table.kind === "reference" || !legacyRow
        ? shardOrdinal
        : placement.shardFor(legacyRow[plan.keyColumns[0] ?? ""] ?? "");
    let action: RepairOutcome["action"] = "none";
    await shard.query(`begin; set local session_replication_role = replica; ${setLocalRenderingSql()}`);
    if (legacyRow && owner === shardOrdinal) {
      const statement = applier.upsert(legacyRow as Tuple);
      await shard.query(statement.text, statement.values);
      action = "upserted";
    } else {
      const statement = applier.deleteByKey(
        Object.fromEntries(pk.map((c, i) => [c, pkValues[i] ?? null])) as Tuple,
      );
      const result = await shard.query(statement.text, statement.values);
      action = result.rowCount ? "deleted" : "none";
    }
    await shard.query("commit");
    await source.query("commit");
    return { action, legacyRow };
  } catch (error) {
    await shard.query("rollback").catch(() => {});
    await source.query("rollback").catch(() => {});
    throw error;
  } finally {
    unhearShard();
    unhearSource();
    shard.release(lost.get(shard));
    source.release(lost.get(source));
  }
}

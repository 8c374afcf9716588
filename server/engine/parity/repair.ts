// Repair copies a row from its owner (legacy, until the tenant cuts over) to the shard, with the
// row-lock rule: the legacy row is read FOR SHARE and stays locked until the shard
// committed, so a concurrent write lands after the repair and its CDC event overwrites it — a
// repair can never leave an older version behind. A row legacy does not have is deleted from
// the shard; a row on a shard that does not own its tenant is deleted there.
import type pg from "pg";
import type { TablePlan } from "../backfill/copy-chunk";
import { tableApplier } from "../cdc/apply";
import type { Tuple } from "../cdc/pgoutput";
import type { Placement } from "../router/placement";
import { quoteIdent } from "../sql/identifiers";

export interface RepairOutcome {
  action: "upserted" | "deleted" | "none";
  legacyRow: Record<string, string | null> | null;
}

export async function repairRow(
  legacy: pg.Pool,
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
  const source = await legacy.connect();
  const target = shards[shardOrdinal];
  if (!target) throw new Error(`No shard ${shardOrdinal} in this plan.`);
  const shard = await target.connect();
  try {
    await source.query("begin");
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
    await shard.query("begin");
    await shard.query("set local session_replication_role = replica");
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
    shard.release();
    source.release();
  }
}

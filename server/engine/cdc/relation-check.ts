// Every relation the stream describes is checked against the schema snapshot taken when the
// movement started — names, type OIDs and type modifiers — before any change of it is applied.
//
// Why here and not only on relation changes: the stream reports a changed definition only within
// one session; after a restart the first Relation message is simply "the current definition". A
// column whose type or typmod changed while no stream ran (numeric(10,2) → numeric(12,4)) keeps its
// name, so comparing names lets its values be written into the shard's old column type — silently
// rounded or truncated. The typmod is compared through format_type() on the source, the same text
// the snapshot recorded, so "numeric(12,4)" is what the message says, not 786440.
import type pg from "pg";
import type { SourceSchema } from "../analysis/introspect";
import { CdcStopError } from "./apply";
import type { Relation } from "./pgoutput";

export class RelationCheck {
  /** Relation ids (this session) whose definition matched the snapshot. */
  private readonly verified = new Set<number>();

  constructor(
    private readonly schema: SourceSchema,
    /** format_type(oid, typmod) for each pair, on the source. */
    private readonly formatTypes: (pairs: readonly { oid: number; typmod: number }[]) => Promise<string[]>,
    /** How messages name the source. */
    private readonly sourceName = "legacy",
  ) {}

  /** Throws CdcStopError when a relation differs from the snapshot; cheap once a relation was seen. */
  async verify(relations: Iterable<Relation>): Promise<void> {
    const fresh = new Map<number, Relation>();
    for (const r of relations) if (!this.verified.has(r.relationId)) fresh.set(r.relationId, r);
    for (const relation of fresh.values()) {
      const table = this.schema.tables.find((t) => t.schema === relation.schema && t.name === relation.table);
      // An unknown table stops the stream where it is routed, with its own message (apply.ts).
      if (!table) continue;
      const expected = table.columns.filter((c) => !c.generatedExpr);
      const types = await this.formatTypes(
        relation.columns.map((c) => ({ oid: c.typeOid, typmod: c.typeMod })),
      );
      const now = relation.columns.map((c, i) => `${c.name} ${types[i] ?? "?"}`);
      const then = expected.map((c) => `${c.name} ${c.type}`);
      const differs =
        now.length !== then.length ||
        relation.columns.some((c, i) => {
          const e = expected[i];
          return !e || e.name !== c.name || e.typeOid !== c.typeOid || e.type !== types[i];
        });
      if (differs) {
        const changed = now.filter((c) => !then.includes(c));
        throw new CdcStopError(
          `The schema of ${relation.schema}.${relation.table} changed on ${this.sourceName} during the migration ` +
            `(now: ${changed.join(", ") || now.join(", ")}; at start: ${then.filter((c) => !now.includes(c)).join(", ") || then.join(", ")}). ` +
            "Its changes were not applied, so nothing was truncated or rounded on the shards. Apply the same change to every shard, then cancel and restart the data movement.",
        );
      }
      this.verified.add(relation.relationId);
    }
  }
}

/** format_type on the source for several (oid, typmod) pairs in one query. */
export async function formatTypesOn(
  client: pg.ClientBase,
  pairs: readonly { oid: number; typmod: number }[],
): Promise<string[]> {
  const { rows } = await client.query<{ t: string }>(
    "select format_type(o, m) as t from unnest($1::oid[], $2::int[]) with ordinality as u(o, m, n) order by n",
    [pairs.map((p) => p.oid), pairs.map((p) => p.typmod)],
  );
  return rows.map((r) => r.t);
}

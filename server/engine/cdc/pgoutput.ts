// Decoder for the pgoutput logical replication protocol, version 1
// (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html).
//
// Design: one PgoutputDecoder per replication session. It is stateful only because Insert/Update/
// Delete/Truncate name their table by relation id, and the server sends the Relation message once
// per session (and again after the table's definition or cache entry changed).
//
// Invariants:
// - Column values stay exactly the server's text output (string | null). Nothing is parsed: a
//   timestamptz stays '2026-01-02 03:04:05.123456+00', a jsonb stays its text, a numeric keeps
//   every digit. Apply writes the same text back, so no precision or formatting is lost on the way.
// - An unchanged TOASTed value ('u' in the tuple) is UNCHANGED_TOAST, never null or undefined:
//   applying it as NULL would silently wipe a large column that the UPDATE did not touch.
// - LSNs and timestamps are bigint: a JS number loses LSN bits above 2^53 and a Date loses the
//   server's microseconds.
// - Unknown message tags and tuple kinds throw: skipping bytes we do not understand would drop
//   changes silently.

/** Marks a column whose TOASTed value the UPDATE did not change: keep the target's current value. */
export const UNCHANGED_TOAST: unique symbol = Symbol("pgoutput.unchanged-toast");
export type UnchangedToast = typeof UNCHANGED_TOAST;

/** A column value as the server rendered it: text, SQL NULL, or "unchanged, keep what you have". */
export type TupleValue = string | null | UnchangedToast;

/** Column name → value. Created without a prototype so a column named `__proto__` is just a column. */
export type Tuple = Readonly<Record<string, TupleValue>>;

export type ReplicaIdentity = "default" | "nothing" | "full" | "index";

export interface RelationColumn {
  name: string;
  typeOid: number;
  /** -1 when the type has no modifier; e.g. varchar(20) has 24 (length + 4), numeric(10,2) has 655366. */
  typeMod: number;
  /** Part of the replica identity (the old key sent with UPDATE/DELETE). With FULL, every column is. */
  isKey: boolean;
}

export interface Relation {
  relationId: number;
  schema: string;
  table: string;
  replicaIdentity: ReplicaIdentity;
  columns: readonly RelationColumn[];
}

/** What the old row looked like, as far as the replica identity lets the server say. */
export type OldRow =
  /** Only the replica identity columns (DEFAULT or USING INDEX); the tuple has just those columns. */
  | { kind: "key"; tuple: Tuple }
  /** The whole old row (REPLICA IDENTITY FULL). */
  | { kind: "full"; tuple: Tuple };

export type Change =
  | { kind: "insert"; relation: Relation; new: Tuple }
  | {
      kind: "update";
      relation: Relation;
      new: Tuple;
      /**
       * null when the server sent no old row: with DEFAULT/INDEX identity that means the key did
       * not change, so the key columns of `new` identify the row.
       */
      old: OldRow | null;
    }
  | { kind: "delete"; relation: Relation; old: OldRow }
  | { kind: "truncate"; relations: Relation[]; cascade: boolean; restartIdentity: boolean }
  /**
   * A transactional logical message (pg_logical_emit_message(true, prefix, content)), at its place
   * among the transaction's changes. Only a stream that asked for messages receives them; the
   * fence writes one per change of ownership (FENCE_MESSAGE_PREFIX).
   */
  | { kind: "message"; lsn: bigint; prefix: string; content: Buffer };

export type PgoutputMessage =
  | { tag: "begin"; finalLsn: bigint; commitTime: bigint; xid: number }
  | { tag: "commit"; flags: number; commitLsn: bigint; endLsn: bigint; commitTime: bigint }
  | { tag: "origin"; originLsn: bigint; name: string }
  /** `previous` is set when the relation id was known with a different definition. */
  | { tag: "relation"; relation: Relation; previous: Relation | null }
  | { tag: "type"; typeOid: number; schema: string; name: string }
  | { tag: "change"; change: Change }
  | { tag: "message"; transactional: boolean; lsn: bigint; prefix: string; content: Buffer };

export class PgoutputProtocolError extends Error {
  constructor(message: string) {
    super(
      `${message}. The pgoutput stream cannot be decoded safely, so it was stopped; ` +
        "check that the slot uses the pgoutput plugin with proto_version '1'.",
    );
    this.name = "PgoutputProtocolError";
  }
}

/** Microseconds between 1970-01-01 and 2000-01-01, PostgreSQL's timestamp epoch. */
const PG_EPOCH_UNIX_MICROS = 946_684_800_000_000n;

/**
 * Renders a server timestamp (microseconds since 2000-01-01 UTC) as an ISO-8601 string that keeps
 * all six fractional digits, e.g. '2026-03-01T12:00:00.123456Z'.
 */
export function pgTimestampToIso(micros: bigint): string {
  const unixMicros = micros + PG_EPOCH_UNIX_MICROS;
  let millis = unixMicros / 1000n;
  let subMillis = unixMicros % 1000n;
  if (subMillis < 0n) {
    // bigint division truncates toward zero; dates before 1970 need the floor.
    millis -= 1n;
    subMillis += 1000n;
  }
  const iso = new Date(Number(millis)).toISOString(); // ends in '.mmmZ'
  return `${iso.slice(0, -1)}${subMillis.toString().padStart(3, "0")}Z`;
}

/** The current time as a server timestamp (microseconds since 2000-01-01 UTC), for status updates. */
export function nowAsPgTimestamp(): bigint {
  return BigInt(Date.now()) * 1000n - PG_EPOCH_UNIX_MICROS;
}

class Reader {
  private offset = 0;
  constructor(private readonly buffer: Buffer) {}

  private need(bytes: number, what: string): void {
    if (this.offset + bytes > this.buffer.length) {
      throw new PgoutputProtocolError(
        `pgoutput message ended early while reading ${what} (${this.buffer.length} bytes, needed ${this.offset + bytes})`,
      );
    }
  }
  uint8(what: string): number {
    this.need(1, what);
    return this.buffer.readUInt8(this.offset++);
  }
  int16(what: string): number {
    this.need(2, what);
    const value = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return value;
  }
  int32(what: string): number {
    this.need(4, what);
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }
  /** Unsigned: OIDs and xids go above 2^31. */
  uint32(what: string): number {
    this.need(4, what);
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }
  uint64(what: string): bigint {
    this.need(8, what);
    const value = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    return value;
  }
  int64(what: string): bigint {
    this.need(8, what);
    const value = this.buffer.readBigInt64BE(this.offset);
    this.offset += 8;
    return value;
  }
  cstring(what: string): string {
    const end = this.buffer.indexOf(0, this.offset);
    if (end === -1) throw new PgoutputProtocolError(`unterminated string while reading ${what}`);
    const value = this.buffer.toString("utf8", this.offset, end);
    this.offset = end + 1;
    return value;
  }
  bytes(length: number, what: string): Buffer {
    this.need(length, what);
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
}

const REPLICA_IDENTITIES: Record<string, ReplicaIdentity> = {
  d: "default",
  n: "nothing",
  f: "full",
  i: "index",
};

function sameDefinition(a: Relation, b: Relation): boolean {
  if (a.schema !== b.schema || a.table !== b.table || a.replicaIdentity !== b.replicaIdentity) return false;
  if (a.columns.length !== b.columns.length) return false;
  return a.columns.every((column, i) => {
    const other = b.columns[i];
    return (
      other !== undefined &&
      column.name === other.name &&
      column.typeOid === other.typeOid &&
      column.typeMod === other.typeMod &&
      column.isKey === other.isKey
    );
  });
}

export class PgoutputDecoder {
  private readonly relations = new Map<number, Relation>();

  /** The relation last announced for this id in this session, if any. */
  relation(relationId: number): Relation | undefined {
    return this.relations.get(relationId);
  }

  /** Decodes the payload of one XLogData message (without the 'w' header). */
  decode(payload: Buffer): PgoutputMessage {
    const reader = new Reader(payload);
    const tag = String.fromCharCode(reader.uint8("message tag"));
    switch (tag) {
      case "B":
        return {
          tag: "begin",
          finalLsn: reader.uint64("Begin final LSN"),
          commitTime: reader.int64("Begin commit time"),
          xid: reader.uint32("Begin xid"),
        };
      case "C":
        return {
          tag: "commit",
          flags: reader.uint8("Commit flags"),
          commitLsn: reader.uint64("Commit LSN"),
          endLsn: reader.uint64("Commit end LSN"),
          commitTime: reader.int64("Commit time"),
        };
      case "O":
        return { tag: "origin", originLsn: reader.uint64("Origin LSN"), name: reader.cstring("Origin name") };
      case "R":
        return this.decodeRelation(reader);
      case "Y":
        return {
          tag: "type",
          typeOid: reader.uint32("Type OID"),
          schema: reader.cstring("Type schema"),
          name: reader.cstring("Type name"),
        };
      case "I": {
        const relation = this.knownRelation(reader.uint32("Insert relation id"), "Insert");
        this.expectByte(reader, "N", "Insert");
        return { tag: "change", change: { kind: "insert", relation, new: this.readTuple(reader, relation) } };
      }
      case "U":
        return this.decodeUpdate(reader);
      case "D": {
        const relation = this.knownRelation(reader.uint32("Delete relation id"), "Delete");
        const old = this.readOldRow(reader, relation, String.fromCharCode(reader.uint8("Delete tuple kind")));
        if (old === null) throw new PgoutputProtocolError("Delete message without an old key or old row");
        return { tag: "change", change: { kind: "delete", relation, old } };
      }
      case "T": {
        const count = reader.uint32("Truncate relation count");
        const options = reader.uint8("Truncate options");
        const relations: Relation[] = [];
        for (let i = 0; i < count; i++) {
          relations.push(this.knownRelation(reader.uint32("Truncate relation id"), "Truncate"));
        }
        return {
          tag: "change",
          change: {
            kind: "truncate",
            relations,
            cascade: (options & 1) !== 0,
            restartIdentity: (options & 2) !== 0,
          },
        };
      }
      case "M": {
        const flags = reader.uint8("Message flags");
        const lsn = reader.uint64("Message LSN");
        const prefix = reader.cstring("Message prefix");
        const length = reader.int32("Message length");
        // Copy: the payload buffer belongs to the socket read and may be reused.
        const content = Buffer.from(reader.bytes(length, "Message content"));
        return { tag: "message", transactional: (flags & 1) !== 0, lsn, prefix, content };
      }
      default:
        throw new PgoutputProtocolError(
          `unknown pgoutput message tag '${tag}' (0x${payload[0]?.toString(16) ?? "??"}); ` +
            "protocol version 2+ messages (streamed or two-phase transactions) are not supported",
        );
    }
  }

  private decodeRelation(reader: Reader): PgoutputMessage {
    const relationId = reader.uint32("Relation id");
    const schema = reader.cstring("Relation schema");
    const table = reader.cstring("Relation name");
    const identityCode = String.fromCharCode(reader.uint8("Relation replica identity"));
    const replicaIdentity = REPLICA_IDENTITIES[identityCode];
    if (replicaIdentity === undefined) {
      throw new PgoutputProtocolError(`unknown replica identity '${identityCode}' for ${schema}.${table}`);
    }
    const columnCount = reader.int16("Relation column count");
    const columns: RelationColumn[] = [];
    for (let i = 0; i < columnCount; i++) {
      const flags = reader.uint8("column flags");
      columns.push({
        isKey: (flags & 1) !== 0,
        name: reader.cstring("column name"),
        typeOid: reader.uint32("column type OID"),
        typeMod: reader.int32("column type modifier"),
      });
    }
    const relation: Relation = { relationId, schema, table, replicaIdentity, columns };
    const known = this.relations.get(relationId);
    // The server re-sends an identical Relation after harmless cache invalidations (TRUNCATE,
    // ALTER … SET (…)): keep the object consumers already know; only a real difference is a change.
    if (known !== undefined && sameDefinition(known, relation))
      return { tag: "relation", relation: known, previous: null };
    this.relations.set(relationId, relation);
    return { tag: "relation", relation, previous: known ?? null };
  }

  private decodeUpdate(reader: Reader): PgoutputMessage {
    const relation = this.knownRelation(reader.uint32("Update relation id"), "Update");
    let kind = String.fromCharCode(reader.uint8("Update tuple kind"));
    let old: OldRow | null = null;
    if (kind === "K" || kind === "O") {
      old = this.readOldRow(reader, relation, kind);
      kind = String.fromCharCode(reader.uint8("Update new tuple kind"));
    }
    if (kind !== "N")
      throw new PgoutputProtocolError(`Update message has tuple kind '${kind}', expected 'N'`);
    return {
      tag: "change",
      change: { kind: "update", relation, old, new: this.readTuple(reader, relation) },
    };
  }

  private readOldRow(reader: Reader, relation: Relation, kind: string): OldRow | null {
    if (kind === "O") return { kind: "full", tuple: this.readTuple(reader, relation) };
    if (kind === "K") {
      // The key tuple has one entry per column, with non-key columns sent as null: keep only the key.
      const all = this.readTuple(reader, relation);
      const tuple: Record<string, TupleValue> = Object.create(null);
      for (const column of relation.columns) {
        if (column.isKey) tuple[column.name] = all[column.name] ?? null;
      }
      return { kind: "key", tuple };
    }
    throw new PgoutputProtocolError(
      `unknown old tuple kind '${kind}' for ${relation.schema}.${relation.table}`,
    );
  }

  private readTuple(reader: Reader, relation: Relation): Tuple {
    const count = reader.int16("tuple column count");
    if (count !== relation.columns.length) {
      throw new PgoutputProtocolError(
        `tuple for ${relation.schema}.${relation.table} has ${count} columns, its Relation message announced ${relation.columns.length}`,
      );
    }
    const tuple: Record<string, TupleValue> = Object.create(null);
    for (const column of relation.columns) {
      const kind = String.fromCharCode(reader.uint8("tuple value kind"));
      switch (kind) {
        case "n":
          tuple[column.name] = null;
          break;
        case "u":
          tuple[column.name] = UNCHANGED_TOAST;
          break;
        case "t": {
          const length = reader.int32("text value length");
          tuple[column.name] = reader.bytes(length, `value of ${column.name}`).toString("utf8");
          break;
        }
        default:
          // 'b' (binary) only appears when the stream asked for binary mode, which we never do.
          throw new PgoutputProtocolError(
            `unexpected tuple value kind '${kind}' for ${relation.schema}.${relation.table}.${column.name}`,
          );
      }
    }
    return tuple;
  }

  private knownRelation(relationId: number, message: string): Relation {
    const relation = this.relations.get(relationId);
    if (relation === undefined) {
      throw new PgoutputProtocolError(
        `${message} names relation id ${relationId} before its Relation message`,
      );
    }
    return relation;
  }

  private expectByte(reader: Reader, expected: string, message: string): void {
    const actual = String.fromCharCode(reader.uint8(`${message} tuple kind`));
    if (actual !== expected) {
      throw new PgoutputProtocolError(
        `${message} message has tuple kind '${actual}', expected '${expected}'`,
      );
    }
  }
}

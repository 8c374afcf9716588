// The message that carries an apply transaction's origin stamp (apply-origin.ts), sent so that the
// stamped transaction's xid is known even when its COMMIT fails.
//
// Why: PostgreSQL advances the session's origin when a stamped transaction ABORTS too, and a COMMIT
// can still fail after the stamp ran — it waits in PreCommit_Notify (an ENABLE ALWAYS trigger
// notified) until the backend is terminated or cancelled, or the NOTIFY queue is full — leaving the
// origin at the batch's stamp with none of its rows (break-stamp-xid-commit-wait.test.ts). Undoing
// that (origin-settlement.ts) needs to know that the stamp ran and which transaction carried it: the
// stamp's select returns pg_current_xact_id(), and its row is caught as it arrives. The server
// buffers the row, but flushes what it buffered before any ErrorResponse — a terminated backend's
// FATAL included — so the row reaches us before the error. Same message, same round trip: nothing
// is added to a batch that commits.
import pg from "pg";
import { STAMP_XID_COLUMN } from "./apply-origin";

/** What became of one stamped message, filled in as its answer arrives. */
export interface StampWatch {
  /** Handed to the connection: from here on the stamp may have run. */
  sent: boolean;
  /** The stamped transaction's xid (xid8, as text): the stamp ran. */
  xid: string | null;
  /**
   * committed: ReadyForQuery after the COMMIT. failed: the server's error (an ERROR, or the FATAL of
   * a terminated backend): the transaction aborted, and if the stamp had run its row came first.
   * lost: no answer from the server (the connection dropped, the server crashed): the transaction
   * may still be running, may have committed, or may have aborted.
   */
  outcome: "committed" | "failed" | "lost" | null;
}

export function newStampWatch(): StampWatch {
  return { sent: false, xid: null, outcome: null };
}

/** Whether an apply that failed may have left its stamp on the origin without its rows. */
export function stampMayHaveAborted(watch: StampWatch): boolean {
  if (!watch.sent || watch.outcome === "committed") return false;
  return watch.xid !== null || watch.outcome === "lost";
}

/** Sends `text` (one simple-protocol message ending with the stamp and COMMIT), watched. */
export function sendStamped(client: pg.ClientBase, text: string, watch: StampWatch): Promise<void> {
  return new Promise((resolve, reject) => {
    const query = new pg.Query(text);
    query.on("row", (row: Record<string, unknown>) => {
      const xid = row[STAMP_XID_COLUMN];
      if (typeof xid === "string") watch.xid = xid;
    });
    query.on("error", (error: Error) => {
      // The server's own error comes after everything it sent before it (the stamp's row too); an
      // error of pg's own (the connection ended) says nothing about how far the server got.
      watch.outcome = (error as { severity?: string }).severity !== undefined ? "failed" : "lost";
      reject(error);
    });
    query.on("end", () => {
      watch.outcome = "committed";
      resolve();
    });
    watch.sent = true;
    client.query(query);
  });
}

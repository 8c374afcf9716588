// The last check before the servers stop: no replication slot and no subscription the bench created
// may remain. An orphaned slot retains WAL until the disk fills, so a leftover is a bug in whatever
// should have dropped it (a movement's cancel, a subscription's drop): it is reported as a warning,
// then dropped here so the servers can stop cleanly.
import pg from "pg";
import type { EmbeddedServer } from "@/server/embedded/embedded-server";
import { runSql } from "./cluster";

export async function dropReplicationLeftovers(
  servers: readonly EmbeddedServer[],
  warn: (line: string) => void,
): Promise<number> {
  let leftovers = 0;
  for (const server of servers) {
    // pg_subscription is shared across a server's databases; dropping needs the owning database.
    const subscriptions = await runSql<{ subname: string; datname: string }>(
      server.url(),
      "select s.subname, d.datname from pg_subscription s join pg_database d on d.oid = s.subdbid",
    );
    for (const sub of subscriptions) {
      leftovers++;
      warn(
        `warning: subscription ${sub.subname} (database ${sub.datname} on ${server.name}) was left behind; dropping it.`,
      );
      const url = server.url(sub.datname);
      const name = pg.escapeIdentifier(sub.subname);
      await runSql(url, `drop subscription if exists ${name}`).catch(async () => {
        // The publisher is unreachable: detach the slot so the drop does not need it.
        await runSql(url, `alter subscription ${name} disable`);
        await runSql(url, `alter subscription ${name} set (slot_name = none)`);
        await runSql(url, `drop subscription ${name}`);
      });
    }
  }
  for (const server of servers) {
    const slots = await runSql<{ slot_name: string; database: string | null; active_pid: number | null }>(
      server.url(),
      "select slot_name, database, active_pid from pg_replication_slots",
    );
    for (const slot of slots) {
      leftovers++;
      warn(
        `warning: replication slot ${slot.slot_name} (database ${slot.database ?? "-"} on ${server.name}) was left behind; dropping it.`,
      );
      if (slot.active_pid !== null)
        await runSql(server.url(), "select pg_terminate_backend($1)", [slot.active_pid]);
      for (let attempt = 0; ; attempt++) {
        try {
          await runSql(server.url(), "select pg_drop_replication_slot($1)", [slot.slot_name]);
          break;
        } catch (error) {
          if (attempt >= 20) throw error;
          await new Promise((r) => setTimeout(r, 100)); // the terminated backend still holds it
        }
      }
    }
  }
  return leftovers;
}

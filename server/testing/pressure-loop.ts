// A replication loop on a real target beside a watched pressure buffer, for the tests of background
// work yielding to replication (replication-pressure.ts): this thread plays the CDC thread (the loop
// writes the slots) and the worker (the test reads them). Fed by a fake stream reader.
import pg from "pg";
import type { ChangeRouter } from "../engine/cdc/change-router";
import { Confirmer } from "../engine/cdc/confirmer";
import { type ReplicationHooks, runReplication } from "../engine/cdc/replication-loop";
import type { SourceBatch } from "../engine/cdc/stream-reader";
import { readOriginProgress, TargetApplier, TargetAppliers } from "../engine/cdc/target-applier";
import {
  installPressureBuffer,
  newPressureBuffer,
  watchPressure,
} from "../engine/shared/replication-pressure";
import { fakeReader } from "./fake-stream-reader";

export interface PressureLoop {
  feed: (batch: SourceBatch) => void;
  /** The loop; it rejects when it fails (already caught once, so an unawaited failure is quiet). */
  running: Promise<void>;
  /** Stops the loop, closes its sessions, drops its origin and unwatches the buffer. */
  close(): Promise<void>;
}

export async function startPressureLoop(options: {
  url: string;
  origin: string;
  router: ChangeRouter;
  hooks?: Partial<ReplicationHooks>;
}): Promise<PressureLoop> {
  const buffer = newPressureBuffer();
  installPressureBuffer(buffer);
  const unwatch = watchPressure(buffer);
  const { url, origin, router } = options;
  const applier = await TargetApplier.open({ url, ordinal: 0, origin });
  const appliers = new TargetAppliers([applier]);
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const confirmer = new Confirmer({
    durableOf: () => readOriginProgress(admin, origin),
    confirm: () => {},
    periodMs: 50,
    log: () => {},
  });
  const { reader, feed } = fakeReader();
  const running = runReplication(
    { reader, router, appliers, confirmer },
    { keepGoing: () => true, ...options.hooks },
  );
  running.catch(() => {});
  return {
    feed,
    running,
    async close() {
      await reader.stop();
      await running.catch(() => {});
      await confirmer.stop();
      await appliers.close();
      await admin.query("select pg_replication_origin_drop($1)", [origin]).catch(() => {});
      await admin.end();
      unwatch();
    },
  };
}

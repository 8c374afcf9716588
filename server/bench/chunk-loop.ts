// A diagnostic between the raw COPY pipe and the full backfill: the engine's own copyChunk called in
// a bare loop, with no queue, worker, rate limit, checkpoint or back-off around it. Two lanes take
// tables from one list, as the worker's two slice consumers do.
//
//   raw COPY pipe  →  chunk loop     : what the chunk protocol itself costs (locks, staging, upserts)
//   chunk loop     →  worker backfill: what scheduling, checkpoints and polling cost
import pg from "pg";
import type { SourceSchema, TableInfo } from "@/server/engine/analysis/introspect";
import { copyChunk } from "@/server/engine/backfill/copy-chunk";
import type { Placement } from "@/server/engine/router/placement";
import { planTable } from "@/server/engine/shared/table-plan";

/** The largest chunk run-slice.ts copies (its MAX_CHUNK_ROWS), which an unthrottled slice always uses. */
export const SLICE_CHUNK_ROWS = 20_000;

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: "shardshift-bench-chunks" });
  client.on("error", () => {});
  await client.connect();
  return client;
}

export async function runChunkLoop(options: {
  sourceUrl: string;
  targetUrls: readonly string[];
  schema: SourceSchema;
  placement: Placement;
  lanes: number;
  chunkRows: number;
}): Promise<{ rows: number; ms: number; rowsPerSecond: number; chunks: number }> {
  const queue: TableInfo[] = [...options.schema.tables];
  let rows = 0;
  let chunks = 0;
  // Connections first, so the timing covers copying only.
  const lanes = await Promise.all(
    Array.from({ length: options.lanes }, async () => ({
      source: await connect(options.sourceUrl),
      targets: await Promise.all(options.targetUrls.map(connect)),
    })),
  );
  const lane = async ({ source, targets }: { source: pg.Client; targets: pg.Client[] }) => {
    for (let table = queue.shift(); table; table = queue.shift()) {
      const plan = planTable(table, options.schema.shardKeyColumn);
      let lastKey: string[] | null = null;
      for (;;) {
        const chunk = await copyChunk(source, targets, options.placement, plan, lastKey, options.chunkRows);
        if (chunk.rows === 0) break;
        rows += chunk.rows;
        chunks++;
        lastKey = chunk.lastKey;
      }
    }
  };
  const started = performance.now();
  let ms: number;
  try {
    await Promise.all(lanes.map(lane));
    ms = performance.now() - started;
  } finally {
    await Promise.all(lanes.flatMap((l) => [l.source, ...l.targets]).map((c) => c.end().catch(() => {})));
  }
  return { rows, ms, rowsPerSecond: (rows * 1000) / ms, chunks };
}

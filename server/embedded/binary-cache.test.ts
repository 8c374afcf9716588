// The binary cache: a checkout only root can enter still runs its embedded servers (as `postgres`),
// and processes racing to fill the cache end with one complete copy.
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBinaryCache, packagedBinaries } from "./binary-cache";
import { postgresUserIds, startEmbeddedServer } from "./embedded-server";

const isRoot = process.getuid?.() === 0;
let scratch: string;

beforeAll(async () => {
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), "shardshift-binary-cache-test-"));
});

afterAll(async () => {
  await fs.rm(scratch, { recursive: true, force: true });
});

/** A small stand-in for the package's native/ folder: executables, a library and its symlink. */
async function fakePackage(dir: string): Promise<string> {
  await fs.mkdir(path.join(dir, "bin"), { recursive: true });
  await fs.mkdir(path.join(dir, "lib"), { recursive: true });
  for (const name of ["initdb", "postgres", "pg_ctl"]) {
    await fs.writeFile(path.join(dir, "bin", name), `#!/bin/sh\necho ${name}\n`, { mode: 0o755 });
  }
  await fs.writeFile(path.join(dir, "lib", "libpq.so.5.18"), crypto.randomBytes(4096));
  await fs.writeFile(path.join(dir, "lib", "libpq.a"), "static, not needed at run time");
  await fs.symlink("libpq.so.5.18", path.join(dir, "lib", "libpq.so.5"));
  return dir;
}

describe("the PostgreSQL binary cache", () => {
  it("fourteen processes racing end with one complete copy and no leftovers", async () => {
    const source = await fakePackage(path.join(scratch, "race-source"));
    const cacheRoot = path.join(scratch, "race-cache");
    await fs.mkdir(cacheRoot);
    const results = await Promise.all(
      Array.from({ length: 14 }, () => ensureBinaryCache({ sourceDir: source, version: "1.0.0", cacheRoot })),
    );
    expect(new Set(results.map((r) => r.dir)).size).toBe(1);
    const dir = results[0]?.dir ?? "";
    expect(await fs.readdir(cacheRoot)).toEqual([path.basename(dir)]);
    expect((await fs.readdir(dir)).sort()).toEqual(["bin", "lib", "shardshift-stamp.json"]);
    expect((await fs.readdir(path.join(dir, "lib"))).sort()).toEqual(["libpq.so.5", "libpq.so.5.18"]);
    expect(await fs.readlink(path.join(dir, "lib", "libpq.so.5"))).toBe("libpq.so.5.18");
    expect((await fs.stat(path.join(dir, "bin", "initdb"))).mode & 0o777).toBe(0o755);
    expect((await fs.stat(path.join(dir, "lib", "libpq.so.5.18"))).mode & 0o777).toBe(0o644);
  });

  it("gives other users read access whatever the umask", async () => {
    const source = await fakePackage(path.join(scratch, "umask-source"));
    const cacheRoot = path.join(scratch, "umask-cache");
    await fs.mkdir(cacheRoot);
    const previous = process.umask(0o077);
    try {
      const { dir } = await ensureBinaryCache({ sourceDir: source, version: "1.0.0", cacheRoot });
      for (const folder of [dir, path.join(dir, "bin"), path.join(dir, "lib")]) {
        expect((await fs.stat(folder)).mode & 0o777).toBe(0o755);
      }
    } finally {
      process.umask(previous);
    }
  });

  it("replaces a damaged copy, and a changed package gets a folder of its own", async () => {
    const source = await fakePackage(path.join(scratch, "damage-source"));
    const cacheRoot = path.join(scratch, "damage-cache");
    await fs.mkdir(cacheRoot);
    const first = await ensureBinaryCache({ sourceDir: source, version: "1.0.0", cacheRoot });
    await fs.rm(path.join(first.dir, "shardshift-stamp.json"));
    await fs.rm(first.initdb);
    const again = await ensureBinaryCache({ sourceDir: source, version: "1.0.0", cacheRoot });
    expect(again.dir).toBe(first.dir);
    expect(await fs.readFile(again.initdb, "utf8")).toContain("echo initdb");

    await fs.writeFile(path.join(source, "bin", "postgres"), "#!/bin/sh\necho upgraded\n");
    const upgraded = await ensureBinaryCache({ sourceDir: source, version: "1.0.0", cacheRoot });
    expect(upgraded.dir).not.toBe(first.dir);
    expect(await fs.readFile(upgraded.postgres, "utf8")).toContain("upgraded");
  });

  it("refuses a cache folder that others can write to", async () => {
    const source = await fakePackage(path.join(scratch, "trust-source"));
    const cacheRoot = path.join(scratch, "trust-cache");
    await fs.mkdir(cacheRoot);
    const { dir } = await ensureBinaryCache({ sourceDir: source, version: "1.0.0", cacheRoot });
    await fs.chmod(dir, 0o777);
    await expect(ensureBinaryCache({ sourceDir: source, version: "1.0.0", cacheRoot })).rejects.toThrow(
      /not ours to trust.*Delete it, or set TMPDIR/,
    );
  });
});

/** Runs `file --version` as the `postgres` user; resolves to the error code, or "ok". */
function runAsPostgres(file: string, uid: number, gid: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(file, ["--version"], { uid, gid });
    child.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
    child.once("close", (code) => resolve(code === 0 ? "ok" : `exit ${code}`));
  });
}

describe.skipIf(!isRoot)("as root, a checkout in a folder only root can enter (mode 0700)", () => {
  it("runs the embedded server from the cache, although `postgres` cannot reach the packaged binaries", {
    timeout: 120_000,
  }, async () => {
    // A checkout's node_modules in a mktemp -d folder, as `git clone` into one would leave it.
    const closed = await fs.mkdtemp(path.join(os.tmpdir(), "shardshift-closed-checkout-"));
    try {
      expect((await fs.stat(closed)).mode & 0o777).toBe(0o700);
      const packaged = await packagedBinaries();
      const source = path.join(closed, "native");
      await fs.cp(packaged.dir, source, { recursive: true, verbatimSymlinks: true });
      const { uid, gid } = await postgresUserIds();
      // Without the cache: what every test met before it — now with an error that says what to do.
      expect(await runAsPostgres(path.join(source, "bin", "initdb"), uid, gid)).toBe("EACCES");
      const port = Number(process.env.SHARDSHIFT_CACHE_TEST_PG_PORT ?? 26_590);
      const rootDir = path.join(os.tmpdir(), "shardshift-test");
      const inPlace = {
        dir: source,
        initdb: path.join(source, "bin", "initdb"),
        postgres: path.join(source, "bin", "postgres"),
        pg_ctl: path.join(source, "bin", "pg_ctl"),
      };
      await expect(
        startEmbeddedServer({
          name: `closed-${process.pid}`,
          port,
          rootDir,
          password: "x",
          ephemeral: true,
          binaries: inPlace,
        }),
      ).rejects.toThrow(/could not be started as the "postgres" user.*set TMPDIR=\/tmp/);

      const cacheRoot = path.join(
        os.tmpdir(),
        `shardshift-cache-test-${crypto.randomBytes(4).toString("hex")}`,
      );
      await fs.mkdir(cacheRoot, { mode: 0o755 });
      try {
        const binaries = await ensureBinaryCache({ sourceDir: source, version: packaged.version, cacheRoot });
        expect(await runAsPostgres(binaries.initdb, uid, gid)).toBe("ok");

        const server = await startEmbeddedServer({
          name: `closed-${process.pid}`,
          port,
          rootDir,
          password: crypto.randomBytes(12).toString("hex"),
          ephemeral: true,
          binaries,
        });
        try {
          const client = new pg.Client({ connectionString: server.url() });
          await client.connect();
          const { rows } = await client.query<{ v: string }>("select current_setting('server_version') as v");
          await client.end();
          expect(rows[0]?.v).toMatch(/^\d+\.\d+/);
        } finally {
          await server.stop();
        }
      } finally {
        await fs.rm(cacheRoot, { recursive: true, force: true });
      }
    } finally {
      await fs.rm(closed, { recursive: true, force: true });
    }
  });
});

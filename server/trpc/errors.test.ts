// What users get back when something goes wrong, through the same HTTP handler the browser talks
// to: a race only the database can settle is a 409 with a sentence, a value out of range or of the
// wrong type a 400 with the reason, and an internal error a 500 that names a request id — never
// Prisma's message, a source path or a code line (those stay in the server log).
import { PrismaPg } from "@prisma/adapter-pg";
import { fetchRequestHandler } from "@trpc/server/adapters/fetch";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { db } from "../db";
import { loadDemoDataset } from "../demo/dataset";
import { withoutInternals } from "../errors";
import { PrismaClient } from "../generated/prisma/client";
import { DEFAULT_PLAN_SETTINGS } from "../schemas/plan";
import { systemActor } from "../services/actor";
import { registerDatabase } from "../services/databases/databases";
import { startDataMovement } from "../services/movement/movement";
import { createPlan, transitionPlan } from "../services/plans/plans";
import { useControlPlane } from "../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../testing/databases";
import { domainErrorOf } from "./domain-errors";
import { publicProcedure, router } from "./init";
import { appRouter } from "./root";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
const actor = systemActor("errors-setup", "engineer@test");
const ids = { source: "", shard: "" };

const operator = { id: "op-1", email: "operator@test", name: "Oskar Operator", role: "operator" as const };

interface Answer {
  status: number;
  message: string;
  code: string;
  fieldErrors: Record<string, string[]> | null;
  body: string;
}

/** One tRPC call over HTTP, as the browser makes it (superjson envelope, batch off). */
async function call(
  path: string,
  input: unknown,
  options: { kind?: "query" | "mutation"; requestId?: string; on?: typeof appRouter } = {},
): Promise<Answer> {
  const payload = JSON.stringify({ json: input });
  const url = new URL(`http://localhost/api/trpc/${path}`);
  if (options.kind === "query") url.searchParams.set("input", payload);
  const req = new Request(url, {
    method: options.kind === "query" ? "GET" : "POST",
    headers: { "content-type": "application/json" },
    body: options.kind === "query" ? undefined : payload,
  });
  const res = await fetchRequestHandler({
    endpoint: "/api/trpc",
    req,
    router: options.on ?? appRouter,
    createContext: () => ({ user: operator, requestId: options.requestId ?? "req-test" }),
  });
  const body = await res.text();
  const error = (JSON.parse(body) as { error?: { json: { message: string; data: Record<string, unknown> } } })
    .error?.json;
  return {
    status: res.status,
    message: error?.message ?? "",
    code: String(error?.data.code ?? ""),
    fieldErrors: (error?.data.fieldErrors as Answer["fieldErrors"]) ?? null,
    body,
  };
}

/** What must never reach a user: Prisma's call header, source files, quoted code, stack frames. */
const INTERNALS = /invocation|prisma|\.tsx?\b|node_modules|\/work\/|\n\s+at\s|→/i;

beforeAll(async () => {
  control = await useControlPlane("errors_control");
  legacy = await createTestDatabase("errors_legacy");
  shard = await createTestDatabase("errors_shard");
  await loadDemoDataset(legacy.pool, { tenants: 20, rows: 1_000, seed: 3 });
  ids.source = (await registerDatabase(actor, { name: "legacy", kind: "legacy", url: legacy.url })).id;
  ids.shard = (await registerDatabase(actor, { name: "shard-0", kind: "shard", url: shard.url })).id;
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

describe("errors users see", () => {
  it("ten concurrent creates with one name: one plan, nine 409s that say so", async () => {
    const input = {
      name: "same name",
      sourceDatabaseId: ids.source,
      shardDatabaseIds: [ids.shard],
      shardKeyColumn: "tenant_id",
    };
    const answers = await Promise.all(Array.from({ length: 10 }, () => call("plans.create", input)));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
    const refused = answers.filter((a) => a.status !== 200);
    expect(refused).toHaveLength(9);
    for (const a of refused) {
      expect(a.status, a.body).toBe(409);
      expect(a.message).toMatch(
        /A plan (named "same name"|with this name) already exists\. Choose another name\./,
      );
      expect(a.fieldErrors).toEqual({ name: [a.message] });
      expect(a.body).not.toMatch(INTERNALS);
    }
    expect(await db().plan.count({ where: { name: "same name" } })).toBe(1);
    expect(await db().auditEvent.count({ where: { action: "plan.create" } })).toBe(1);
  });

  it("out-of-range ids, cursors and versions are 400s with the reason", async () => {
    const cursor = await call(
      "audit.list",
      { filter: {}, cursor: "99999999999999999999" },
      { kind: "query" },
    );
    expect(cursor.status, cursor.body).toBe(400);
    expect(cursor.fieldErrors?.cursor?.[0]).toMatch(/The cursor must be a whole number of at most 19 digits/);
    const bigCursor = await call(
      "audit.list",
      { filter: {}, cursor: "9999999999999999999" },
      { kind: "query" },
    );
    expect(bigCursor.status, bigCursor.body).toBe(400);
    expect(bigCursor.fieldErrors?.cursor?.[0]).toMatch(/The cursor is out of range/);

    const plan = await db().plan.findFirstOrThrow();
    const version = await call("plans.updateSettings", {
      planId: plan.id,
      expectedVersion: 2 ** 31,
      settings: DEFAULT_PLAN_SETTINGS,
    });
    expect(version.status, version.body).toBe(400);
    expect(version.fieldErrors?.expectedVersion?.[0]).toMatch(/Not a version/);

    const mismatch = await call("parity.repair", {
      scope: "row",
      planId: plan.id,
      mismatchId: "123456789012345678901234",
      reason: "fix it",
    });
    expect(mismatch.status, mismatch.body).toBe(400);
    for (const a of [cursor, bigCursor, version, mismatch]) expect(a.body).not.toMatch(INTERNALS);
  });

  it("a tenant key of the wrong type is a 400 naming the problem", async () => {
    let plan = await createPlan(actor, {
      name: "typed keys",
      sourceDatabaseId: ids.source,
      shardDatabaseIds: [ids.shard],
      shardKeyColumn: "tenant_id",
    });
    for (const reason of ["key analysed", "router deployed"]) {
      plan = await transitionPlan(actor, {
        planId: plan.id,
        expectedVersion: plan.version,
        event: "advance",
        reason,
      });
    }
    await startDataMovement(actor, { planId: plan.id, reason: "copy it" });
    const answer = await call("parity.repair", {
      scope: "tenant",
      planId: plan.id,
      tenant: "not-a-number",
      reason: "fix it",
    });
    expect(answer.status, answer.body).toBe(400);
    expect(answer.message).toMatch(/does not fit.*invalid input syntax for type bigint: "not-a-number"/);
    expect(answer.body).not.toMatch(INTERNALS);
  });

  it("a duplicate reported by node-postgres (better-auth's pool, engine queries) is a 409 too", async () => {
    const client = await legacy.pool.connect();
    try {
      await client.query("create temp table badge (code text unique)");
      await client.query("insert into badge values ('a')");
      const duplicate = await client.query("insert into badge values ('a')").then(
        () => null,
        (e: unknown) => e,
      );
      expect(domainErrorOf(duplicate)).toMatchObject({
        code: "CONFLICT",
        message: /This record already exists/,
      });
      const typed = await client.query("select 'x'::int").then(
        () => null,
        (e: unknown) => e,
      );
      expect(domainErrorOf(typed)).toMatchObject({ code: "BAD_REQUEST", message: /invalid input syntax/ });
      expect(domainErrorOf(new Error("ECONNRESET"))).toBeNull();
    } finally {
      client.release();
    }
  });

  it("an internal error is a 500 with a request id; its text stays in the server log", async () => {
    const failing = router({
      broken: publicProcedure.mutation(() => {
        throw new Error("connect ECONNREFUSED at /work/secret/server/engine/x.ts:12:5");
      }),
    });
    const log = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const answer = await call("broken", null, { on: failing as never, requestId: "req-42" });
      expect(answer.status).toBe(500);
      expect(answer.message).toMatch(/Something went wrong on the server.*request id req-42/);
      expect(answer.body).not.toMatch(/ECONNREFUSED|secret|x\.ts/);
      expect(String(log.mock.calls[0]?.[1])).toMatch(/ECONNREFUSED/);
      expect(String(log.mock.calls[0]?.[0])).toMatch(/req-42/);
    } finally {
      log.mockRestore();
    }
  });

  it("engine errors stored for the dashboard carry no source paths or code lines", async () => {
    // The control plane's client: its messages are what the engine records.
    const fromDb = await db()
      .plan.update({ where: { id: "00000000-0000-0000-0000-000000000000" }, data: { version: 2 } })
      .then(
        () => "",
        (e: Error) => e.message,
      );
    expect(fromDb).toMatch(/No record was found for an update/);
    expect(fromDb).not.toMatch(/\.ts:\d+|→|\n\s+\d+ /);

    // Texts stored before (Prisma's default format) are cleaned when shown.
    const verbose = new PrismaClient({ adapter: new PrismaPg({ connectionString: control.url }) });
    try {
      const old = await verbose.plan
        .update({ where: { id: "00000000-0000-0000-0000-000000000000" }, data: { version: 2 } })
        .then(
          () => "",
          (e: Error) => e.message,
        );
      expect(old).toMatch(/errors\.test\.ts:\d+/);
      const shown = withoutInternals(old);
      expect(shown).toMatch(/^An operation failed .* No record was found for an update\.$/);
      expect(shown).not.toMatch(INTERNALS);
    } finally {
      await verbose.$disconnect();
    }
    expect(
      withoutInternals(
        "TypeError: boom\n    at run (/work/main/server/engine/cdc/apply.ts:10:3)\n    at node:internal",
      ),
    ).toBe("TypeError: boom");
  });
});

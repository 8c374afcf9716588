"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, PageTitle } from "@/components/ui/card";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { Field, SelectInput, TextInput } from "@/components/ui/field";
import {
  type FieldErrors,
  fieldErrorsFromServer,
  fieldErrorsFromZod,
  messageOf,
} from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { TableSearch } from "@/components/ui/table-search";
import { takePassword, withPassword } from "@/server/schemas/connection-url";
import { ZConnectionUrl, ZRegisterDatabaseInput } from "@/server/schemas/database";

interface Report {
  ok: boolean;
  message: string;
  latencyMs?: number;
  warnings: string[];
}

function ReportLine({ report }: { report: Report }) {
  return (
    <div className="space-y-1">
      <Alert tone={report.ok ? "ok" : "error"} title={report.message}>
        {report.ok && report.latencyMs !== undefined ? `Answered in ${report.latencyMs} ms.` : null}
      </Alert>
      {report.warnings.map((w) => (
        <Alert key={w} tone="warn" title={w} />
      ))}
    </div>
  );
}

/** What the server reported: where it was reached and what it is (two names, one database, are told apart here). */
function ServerIdentityLine({
  database,
}: {
  database: { serverAddress: string | null; systemIdentifier: string | null; databaseOid: string | null };
}) {
  if (!database.systemIdentifier) {
    return <div className="font-sans text-slate-500">Not identified yet: test the connection.</div>;
  }
  return (
    <div
      className="text-slate-500"
      title="Read from the server: inet_server_addr(), pg_control_system(), the database's oid"
    >
      reached at {database.serverAddress} · system {database.systemIdentifier} · oid {database.databaseOid}
    </div>
  );
}

export function DatabasesPage() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const blocked = useRoleBlock("admin");
  const databases = useQuery(trpc.databases.list.queryOptions());
  const test = useMutation(trpc.databases.testConnection.mutationOptions());
  const remove = useMutation(
    trpc.databases.remove.mutationOptions({ onSuccess: () => queryClient.invalidateQueries() }),
  );
  const [tested, setTested] = useState<{ id: string; report: Report } | null>(null);
  const [filter, setFilter] = useState("");
  type Registered = NonNullable<typeof databases.data>[number];
  const columns: ColumnDef<Registered>[] = [
    { id: "name", header: "Name", accessorFn: (d) => d.name, meta: { className: "font-medium" } },
    {
      id: "kind",
      header: "Role",
      accessorFn: (d) => (d.kind === "legacy" ? "Legacy (source)" : "Shard"),
      cell: ({ row: { original: d }, getValue }) => (
        <Badge tone={d.kind === "legacy" ? "warn" : "info"}>{getValue<string>()}</Badge>
      ),
    },
    {
      id: "server",
      header: "Server",
      accessorFn: (d) => `${d.host}:${d.port}/${d.databaseName}`,
      cell: ({ row: { original: d }, getValue }) => (
        <>
          {getValue<string>()}
          <ServerIdentityLine database={d} />
        </>
      ),
      meta: { className: "font-mono text-xs" },
    },
    { id: "user", header: "User", accessorFn: (d) => d.username, meta: { className: "font-mono text-xs" } },
    { id: "plans", header: "Plans", accessorFn: (d) => d.usedByPlans, meta: { className: "text-xs" } },
    {
      id: "actions",
      header: () => <span className="sr-only">Actions</span>,
      enableSorting: false,
      cell: ({ row: { original: d } }) => (
        <>
          <div className="flex flex-wrap justify-end gap-2">
            <Button
              disabledReason={blocked}
              busy={
                test.isPending &&
                test.variables &&
                "databaseId" in test.variables &&
                test.variables.databaseId === d.id
              }
              onClick={async () =>
                setTested({ id: d.id, report: await test.mutateAsync({ databaseId: d.id }) })
              }
            >
              Test connection
            </Button>
            {blocked ? null : (
              <ConfirmDialog
                trigger={<Button variant="ghost">Remove</Button>}
                title={`Remove ${d.name}?`}
                scope={`Unregister “${d.name}” (${d.host}:${d.port}/${d.databaseName}). The database itself is not touched. Refused while a plan uses it.`}
                confirmLabel={`Remove ${d.name}`}
                dismissLabel="Keep it registered"
                tone="danger"
                busy={remove.isPending}
                error={remove.error ? messageOf(remove.error) : null}
                onConfirm={(reason) => remove.mutateAsync({ databaseId: d.id, reason })}
              />
            )}
          </div>
          {tested?.id === d.id ? (
            <div className="mt-2">
              <ReportLine report={tested.report} />
            </div>
          ) : null}
        </>
      ),
    },
  ];

  return (
    <>
      <PageTitle
        title="Databases"
        subtitle="The legacy monolith and the shards Shardshift may read and write. Connection URLs are encrypted at rest (AES-256-GCM) and never shown again after registration."
      />
      <Card
        title="Registered"
        actions={
          <TableSearch
            label="Filter the databases"
            placeholder="Filter by name, server, user"
            value={filter}
            onChange={setFilter}
          />
        }
      >
        <QueryState isLoading={databases.isLoading} error={databases.error} what="databases" />
        {databases.data ? (
          <DataTable
            data={databases.data}
            columns={columns}
            label="Registered databases"
            filter={filter.trim()}
            getRowId={(d) => d.id}
            empty={
              databases.data.length === 0 ? "No databases registered yet." : "No database matches the filter."
            }
          />
        ) : null}
      </Card>
      <RegisterDatabase blocked={blocked} />
    </>
  );
}

function RegisterDatabase({ blocked }: { blocked: string | null }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [name, setName] = useState("");
  const [kind, setKind] = useState<"legacy" | "shard">("shard");
  const [url, setUrl] = useState("");
  const [password, setPassword] = useState("");
  // The URL as sent: the readable part with the masked password put back.
  const fullUrl = withPassword(url, password);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [report, setReport] = useState<Report | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const test = useMutation(trpc.databases.testConnection.mutationOptions({ onSuccess: setReport }));
  const register = useMutation(
    trpc.databases.register.mutationOptions({
      onSuccess: async (created) => {
        setDone(`Registered ${created.name}.`);
        setName("");
        setUrl("");
        setPassword("");
        setReport(null);
        await queryClient.invalidateQueries();
      },
      onError: (error) => setErrors(fieldErrorsFromServer(error)),
    }),
  );

  return (
    <Card
      className="mt-4"
      title="Register a database"
      description={blocked ?? "Shardshift connects once to check the URL before saving it."}
    >
      <form
        noValidate
        className="grid grid-cols-4 items-start gap-3"
        onSubmit={(event) => {
          event.preventDefault();
          setDone(null);
          const parsed = ZRegisterDatabaseInput.safeParse({ name, kind, url: fullUrl });
          if (!parsed.success) {
            setErrors(fieldErrorsFromZod(parsed.error));
            return;
          }
          setErrors({});
          register.mutate(parsed.data);
        }}
      >
        <fieldset disabled={Boolean(blocked)} className="contents">
          <Field id="db-name" label="Name" hint="e.g. shard-5" errors={errors.name}>
            <TextInput
              id="db-name"
              value={name}
              onChange={(e) => setName(e.target.value)}
              invalid={Boolean(errors.name)}
            />
          </Field>
          <Field id="db-kind" label="Role" errors={errors.kind}>
            <SelectInput
              id="db-kind"
              value={kind}
              onChange={(e) => setKind(e.target.value as "legacy" | "shard")}
            >
              <option value="shard">Shard (target)</option>
              <option value="legacy">Legacy (source)</option>
            </SelectInput>
          </Field>
          <div className="col-span-2 grid grid-cols-[1fr_11rem] gap-3">
            <Field
              id="db-url"
              label="Connection URL"
              hint="postgresql://user@host:5432/database — a pasted password moves to its own field"
              errors={errors.url}
            >
              <TextInput
                id="db-url"
                autoComplete="off"
                spellCheck={false}
                value={url}
                onChange={(e) => {
                  const split = takePassword(e.target.value);
                  setUrl(split ? split.url : e.target.value);
                  if (split) setPassword(split.password);
                }}
                invalid={Boolean(errors.url)}
                className="font-mono"
              />
            </Field>
            <Field id="db-password" label="Password" hint="stored encrypted, never shown again">
              <TextInput
                id="db-password"
                type="password"
                autoComplete="new-password"
                value={password}
                onChange={(e) => setPassword(e.target.value)}
                className="font-mono"
              />
            </Field>
          </div>
        </fieldset>
        <div className="col-span-4 flex gap-2">
          <Button
            disabledReason={blocked}
            busy={test.isPending}
            onClick={() => {
              const parsed = ZConnectionUrl.safeParse(fullUrl);
              if (!parsed.success) {
                setErrors({ url: parsed.error.issues.map((i) => i.message) });
                return;
              }
              setErrors({});
              test.mutate({ url: parsed.data });
            }}
          >
            Test connection
          </Button>
          <Button type="submit" variant="primary" disabledReason={blocked} busy={register.isPending}>
            Register
          </Button>
        </div>
        <div className="col-span-4 space-y-2" aria-live="polite">
          {report ? <ReportLine report={report} /> : null}
          {register.error && !Object.keys(fieldErrorsFromServer(register.error)).length ? (
            <Alert tone="error" title={messageOf(register.error)} />
          ) : null}
          {done ? <Alert tone="ok" title={done} /> : null}
        </div>
      </form>
    </Card>
  );
}

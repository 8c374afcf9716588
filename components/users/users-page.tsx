"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock, useUser } from "@/components/providers/user";
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
import { Time } from "@/components/ui/time";
import { ROLE_INFO, ROLES, type TRole, ZCreateUserInput } from "@/server/schemas/user";
import { AccountActions, AccountActionsBlocked } from "./account-actions";
import { OwnAccount } from "./own-account";

export function UsersPage() {
  const blocked = useRoleBlock("admin");
  return (
    <>
      <PageTitle
        title="Users and roles"
        subtitle="Viewers read everything; operators run and promote; admins also manage databases and people."
      />
      <Card title="Roles">
        <ul className="grid grid-cols-3 gap-3 text-xs">
          {ROLES.map((role) => (
            <li key={role} className="rounded-md border border-slate-200 p-2.5">
              <p className="font-semibold">{ROLE_INFO[role].title}</p>
              <p className="text-slate-600">May {ROLE_INFO[role].may}.</p>
            </li>
          ))}
        </ul>
      </Card>
      {blocked ? (
        <div className="mt-4">
          <Alert tone="info" title="Only admins can see and change accounts.">
            {blocked}
          </Alert>
          <div className="mt-3">
            <AccountActionsBlocked reason={blocked} />
          </div>
        </div>
      ) : (
        <>
          <UserList />
          <CreateUser />
        </>
      )}
      <OwnAccount />
    </>
  );
}

function UserList() {
  const trpc = useTRPC();
  const me = useUser();
  const queryClient = useQueryClient();
  const users = useQuery(trpc.users.list.queryOptions());
  const setRole = useMutation(
    trpc.users.setRole.mutationOptions({ onSuccess: () => queryClient.invalidateQueries() }),
  );
  const [pending, setPending] = useState<Record<string, TRole>>({});
  const [filter, setFilter] = useState("");
  type Account = NonNullable<typeof users.data>[number];
  const columns: ColumnDef<Account>[] = [
    { id: "name", header: "Name", accessorFn: (u) => u.name },
    { id: "email", header: "Email", accessorFn: (u) => u.email, meta: { className: "font-mono text-xs" } },
    {
      id: "role",
      header: "Role",
      // Searchable by title and state ("operator", "disabled").
      accessorFn: (u) => `${ROLE_INFO[u.role].title}${u.disabledAt ? " disabled" : ""}`,
      cell: ({ row: { original: u } }) => (
        <>
          <Badge tone={u.role === "admin" ? "warn" : u.role === "operator" ? "info" : "neutral"}>
            {ROLE_INFO[u.role].title}
          </Badge>
          {u.disabledAt ? (
            <span className="ml-1.5" title={u.disabledReason ?? undefined}>
              <Badge tone="danger">Disabled</Badge>
            </span>
          ) : null}
        </>
      ),
    },
    {
      id: "since",
      header: "Since",
      accessorFn: (u) => u.createdAt,
      enableGlobalFilter: false,
      cell: ({ row }) => <Time value={row.original.createdAt} />,
      meta: { className: "text-xs" },
    },
    {
      id: "change",
      header: "Change role",
      enableSorting: false,
      cell: ({ row: { original: u } }) => {
        const chosen = pending[u.id] ?? u.role;
        return u.id === me.id ? (
          <span className="text-xs text-slate-500">You cannot change your own role.</span>
        ) : (
          <div className="flex items-center gap-2">
            <label className="sr-only" htmlFor={`role-${u.id}`}>
              Role for {u.email}
            </label>
            <SelectInput
              id={`role-${u.id}`}
              value={chosen}
              onChange={(e) => setPending({ ...pending, [u.id]: e.target.value as TRole })}
              className="w-32"
            >
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {ROLE_INFO[r].title}
                </option>
              ))}
            </SelectInput>
            {chosen !== u.role ? (
              <ConfirmDialog
                trigger={<Button variant="primary">Apply</Button>}
                title="Change role"
                scope={`Make ${u.email} a ${ROLE_INFO[chosen].title} (now ${ROLE_INFO[u.role].title}).`}
                confirmLabel="Change role"
                dismissLabel="Keep the current role"
                busy={setRole.isPending}
                error={setRole.error ? messageOf(setRole.error) : null}
                onConfirm={(reason) => setRole.mutateAsync({ userId: u.id, role: chosen, reason })}
              />
            ) : null}
          </div>
        );
      },
    },
    {
      id: "access",
      header: "Access",
      enableSorting: false,
      cell: ({ row: { original: u } }) => (
        <AccountActions
          isMe={u.id === me.id}
          user={{ id: u.id, email: u.email, disabledAt: u.disabledAt, activeSessions: u._count.sessions }}
        />
      ),
    },
  ];
  return (
    <Card
      className="mt-4"
      title="Accounts"
      actions={
        <TableSearch
          label="Filter the accounts"
          placeholder="Filter by name, email, role"
          value={filter}
          onChange={setFilter}
        />
      }
    >
      <QueryState isLoading={users.isLoading} error={users.error} what="users" />
      {users.data ? (
        <DataTable
          data={users.data}
          columns={columns}
          label="Accounts"
          filter={filter.trim()}
          getRowId={(u) => u.id}
          initialSorting={[{ id: "name", desc: false }]}
          empty="No account matches the filter."
        />
      ) : null}
    </Card>
  );
}

function CreateUser() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [draft, setDraft] = useState({ name: "", email: "", role: "viewer" as TRole, password: "" });
  const [errors, setErrors] = useState<FieldErrors>({});
  const [done, setDone] = useState<string | null>(null);
  const create = useMutation(
    trpc.users.create.mutationOptions({
      onSuccess: async () => {
        setDone(`Added ${draft.email}. Give them the password through a safe channel.`);
        setDraft({ name: "", email: "", role: "viewer", password: "" });
        await queryClient.invalidateQueries();
      },
      onError: (error) => setErrors(fieldErrorsFromServer(error)),
    }),
  );
  return (
    <Card className="mt-4" title="Add a person" description="Sign-up is closed: admins add accounts here.">
      <form
        noValidate
        className="grid grid-cols-5 items-start gap-3"
        onSubmit={(event) => {
          event.preventDefault();
          setDone(null);
          const parsed = ZCreateUserInput.safeParse(draft);
          if (!parsed.success) {
            setErrors(fieldErrorsFromZod(parsed.error));
            return;
          }
          setErrors({});
          create.mutate(parsed.data);
        }}
      >
        <Field id="u-name" label="Name" errors={errors.name}>
          <TextInput
            id="u-name"
            value={draft.name}
            onChange={(e) => setDraft({ ...draft, name: e.target.value })}
            invalid={Boolean(errors.name)}
          />
        </Field>
        <Field id="u-email" label="Email" errors={errors.email}>
          <TextInput
            id="u-email"
            type="email"
            value={draft.email}
            onChange={(e) => setDraft({ ...draft, email: e.target.value })}
            invalid={Boolean(errors.email)}
          />
        </Field>
        <Field id="u-role" label="Role" errors={errors.role}>
          <SelectInput
            id="u-role"
            value={draft.role}
            onChange={(e) => setDraft({ ...draft, role: e.target.value as TRole })}
          >
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {ROLE_INFO[r].title}
              </option>
            ))}
          </SelectInput>
        </Field>
        <Field
          id="u-password"
          label="Initial password"
          hint="At least 10 characters"
          errors={errors.password}
        >
          <TextInput
            id="u-password"
            type="password"
            autoComplete="new-password"
            value={draft.password}
            onChange={(e) => setDraft({ ...draft, password: e.target.value })}
            invalid={Boolean(errors.password)}
          />
        </Field>
        <div className="pt-5">
          <Button type="submit" variant="primary" busy={create.isPending}>
            Add person
          </Button>
        </div>
        <div className="col-span-5" aria-live="polite">
          {create.error && !Object.keys(fieldErrorsFromServer(create.error)).length ? (
            <Alert tone="error" title={messageOf(create.error)} />
          ) : null}
          {done ? <Alert tone="ok" title={done} /> : null}
        </div>
      </form>
    </Card>
  );
}

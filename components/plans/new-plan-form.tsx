"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import { Card, PageTitle } from "@/components/ui/card";
import { Field, SelectInput, TextInput } from "@/components/ui/field";
import {
  type FieldErrors,
  fieldErrorsFromServer,
  fieldErrorsFromZod,
  messageOf,
} from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { DEFAULT_PLAN_SETTINGS, ZCreatePlanInput } from "@/server/schemas/plan";
import { fromDraft, SettingsFields, toDraft } from "./settings-fields";

export function NewPlanForm() {
  const trpc = useTRPC();
  const router = useRouter();
  const queryClient = useQueryClient();
  const blocked = useRoleBlock("operator");
  const databases = useQuery(trpc.databases.list.queryOptions());
  const [name, setName] = useState("");
  const [sourceDatabaseId, setSource] = useState("");
  const [shardDatabaseIds, setShards] = useState<string[]>([]);
  const [shardKeyColumn, setKey] = useState("tenant_id");
  const [draft, setDraft] = useState(toDraft(DEFAULT_PLAN_SETTINGS));
  const [errors, setErrors] = useState<FieldErrors>({});
  const create = useMutation(
    trpc.plans.create.mutationOptions({
      onSuccess: async (plan) => {
        await queryClient.invalidateQueries({ queryKey: trpc.plans.list.queryKey() });
        router.push(`/plans/${plan.id}`);
      },
      onError: (error) => setErrors(fieldErrorsFromServer(error)),
    }),
  );

  const legacies = databases.data?.filter((d) => d.kind === "legacy") ?? [];
  const shards = databases.data?.filter((d) => d.kind === "shard") ?? [];

  function submit(event: React.FormEvent) {
    event.preventDefault();
    const parsed = ZCreatePlanInput.safeParse({
      name,
      sourceDatabaseId,
      shardDatabaseIds,
      shardKeyColumn,
      settings: fromDraft(draft),
    });
    if (!parsed.success) {
      setErrors(fieldErrorsFromZod(parsed.error));
      return;
    }
    setErrors({});
    create.mutate(parsed.data);
  }

  return (
    <>
      <PageTitle
        title="New migration plan"
        subtitle="Choose the legacy database, the shards its tenants will move to, and the column that names the tenant. Shardshift checks the column on the real database before saving."
      />
      <QueryState isLoading={databases.isLoading} error={databases.error} what="databases" />
      {databases.data && (legacies.length === 0 || shards.length === 0) ? (
        <Alert tone="warn" title="Register a legacy database and at least one shard first.">
          <Link href="/databases" className="underline">
            Go to Databases
          </Link>
        </Alert>
      ) : null}
      <form onSubmit={submit} noValidate className="space-y-4">
        <Card title="Plan">
          <div className="grid grid-cols-2 gap-4">
            <Field id="name" label="Name" hint="e.g. “EU tenants to shards”" errors={errors.name}>
              <TextInput
                id="name"
                value={name}
                onChange={(e) => setName(e.target.value)}
                invalid={Boolean(errors.name)}
              />
            </Field>
            <Field
              id="shardKeyColumn"
              label="Shard key column"
              hint="The column that identifies the tenant in every sharded table."
              errors={errors.shardKeyColumn}
            >
              <TextInput
                id="shardKeyColumn"
                value={shardKeyColumn}
                onChange={(e) => setKey(e.target.value)}
                invalid={Boolean(errors.shardKeyColumn)}
                className="font-mono"
              />
            </Field>
            <Field id="sourceDatabaseId" label="Legacy database (source)" errors={errors.sourceDatabaseId}>
              <SelectInput
                id="sourceDatabaseId"
                value={sourceDatabaseId}
                onChange={(e) => setSource(e.target.value)}
                invalid={Boolean(errors.sourceDatabaseId)}
              >
                <option value="">Choose…</option>
                {legacies.map((d) => (
                  <option key={d.id} value={d.id}>
                    {d.name} ({d.host}:{d.port}/{d.databaseName})
                  </option>
                ))}
              </SelectInput>
            </Field>
            <fieldset
              className="space-y-1"
              aria-describedby={errors.shardDatabaseIds ? "shards-error" : undefined}
            >
              <legend className="text-xs font-medium text-slate-700">Shards (targets)</legend>
              <div className="grid grid-cols-2 gap-1">
                {shards.map((d) => (
                  <label key={d.id} className="flex items-center gap-2 text-sm">
                    <input
                      type="checkbox"
                      checked={shardDatabaseIds.includes(d.id)}
                      onChange={(e) =>
                        setShards(
                          e.target.checked
                            ? [...shardDatabaseIds, d.id]
                            : shardDatabaseIds.filter((id) => id !== d.id),
                        )
                      }
                    />
                    {d.name}{" "}
                    <span className="text-xs text-slate-500">
                      {d.host}:{d.port}
                    </span>
                  </label>
                ))}
              </div>
              {errors.shardDatabaseIds ? (
                <p id="shards-error" role="alert" className="text-xs font-medium text-red-700">
                  {errors.shardDatabaseIds.join(" ")}
                </p>
              ) : null}
              {shards.length > 1 ? (
                <button
                  type="button"
                  className="text-xs text-sky-700 hover:underline"
                  onClick={() => setShards(shards.map((s) => s.id))}
                >
                  Select all {shards.length}
                </button>
              ) : null}
            </fieldset>
          </div>
        </Card>
        <Card title="Settings" description="Defaults suit most migrations; every value can be changed later.">
          <SettingsFields draft={draft} onChange={setDraft} errors={errors} />
        </Card>
        {create.error && !Object.keys(fieldErrorsFromServer(create.error)).length ? (
          <Alert tone="error" title={messageOf(create.error)} />
        ) : null}
        {Object.keys(errors).length ? (
          <Alert tone="error" title="Some fields need attention: see the messages beside them." />
        ) : null}
        <div className="flex gap-2">
          <Button type="submit" variant="primary" busy={create.isPending} disabledReason={blocked}>
            Create plan
          </Button>
          <Link href="/" className="rounded-md px-3 py-1.5 text-sm text-slate-700 hover:bg-slate-100">
            Cancel
          </Link>
        </div>
      </form>
    </>
  );
}

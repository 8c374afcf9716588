"use client";

import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { Field, TextInput } from "@/components/ui/field";
import {
  type FieldErrors,
  fieldErrorsFromServer,
  fieldErrorsFromZod,
  messageOf,
} from "@/components/ui/field-errors";
import { ZUpdatePlanSettingsInput } from "@/server/schemas/plan";
import { PlanHeader } from "./plan-header";
import { PlanQueryState } from "./plan-query-state";
import { fromDraft, type SettingsDraft, SettingsFields, toDraft } from "./settings-fields";
import { usePlan } from "./use-plan";

export function PlanSettingsForm({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const plan = usePlan(planId);
  const roleBlock = useRoleBlock("operator");
  const [draft, setDraft] = useState<SettingsDraft | null>(null);
  const [version, setVersion] = useState<number | null>(null);
  const [reason, setReason] = useState("");
  const [errors, setErrors] = useState<FieldErrors>({});
  const [saved, setSaved] = useState(false);
  const save = useMutation(
    trpc.plans.updateSettings.mutationOptions({
      onSuccess: async (updated) => {
        setSaved(true);
        setDraft(toDraft(updated.settings));
        setVersion(updated.version);
        setReason("");
        await queryClient.invalidateQueries();
      },
      onError: (error) => setErrors(fieldErrorsFromServer(error)),
    }),
  );

  // Fill the form once from the loaded plan; later refetches must not overwrite what is being typed.
  useEffect(() => {
    if (plan.data && draft === null) {
      setDraft(toDraft(plan.data.settings));
      setVersion(plan.data.version);
    }
  }, [plan.data, draft]);

  if (!plan.data || !draft || version === null) {
    return <PlanQueryState planId={planId} isLoading={plan.isLoading || !draft} error={plan.error} />;
  }
  const archived = plan.data.status === "archived" ? "Archived plans are read-only." : null;
  const blocked = roleBlock ?? archived;

  function submit(event: React.FormEvent) {
    event.preventDefault();
    setSaved(false);
    if (!draft || version === null) return;
    const parsed = ZUpdatePlanSettingsInput.safeParse({
      planId,
      expectedVersion: version,
      settings: fromDraft(draft),
      reason: reason || undefined,
    });
    if (!parsed.success) {
      setErrors(fieldErrorsFromZod(parsed.error));
      return;
    }
    setErrors({});
    save.mutate(parsed.data);
  }

  const stale = plan.data.version !== version;
  return (
    <>
      <PlanHeader plan={plan.data} />
      <form onSubmit={submit} noValidate className="space-y-4">
        <Card
          title="Settings"
          description="Throttle, gates, freeze budget and soak. Changes apply to the next step the engine takes and are audited with before and after."
        >
          <fieldset disabled={Boolean(blocked)}>
            <SettingsFields draft={draft} onChange={setDraft} errors={errors} />
            <div className="mt-4 max-w-xl">
              <Field
                id="settings-reason"
                label="Reason (optional, recorded in the audit log)"
                errors={errors.reason}
              >
                <TextInput id="settings-reason" value={reason} onChange={(e) => setReason(e.target.value)} />
              </Field>
            </div>
          </fieldset>
        </Card>
        {stale ? (
          <Alert tone="warn" title="Someone changed this plan since you opened the form.">
            Saving will be refused.{" "}
            <button
              type="button"
              className="underline"
              onClick={() => {
                setDraft(toDraft(plan.data.settings));
                setVersion(plan.data.version);
              }}
            >
              Load the current settings
            </button>
          </Alert>
        ) : null}
        {Object.keys(errors).length ? (
          <Alert tone="error" title="Some fields need attention: see the messages beside them." />
        ) : null}
        {save.error && !Object.keys(fieldErrorsFromServer(save.error)).length ? (
          <Alert tone="error" title={messageOf(save.error)} />
        ) : null}
        {saved ? <Alert tone="ok" title="Settings saved." /> : null}
        <Button type="submit" variant="primary" busy={save.isPending} disabledReason={blocked}>
          Save settings
        </Button>
      </form>
    </>
  );
}

"use client";
// The "Tenant key → Show" form that the parity and routing pages both use: it keeps the draft and
// hands the submitted key (trimmed; null when empty) to the page, which runs its own query.
import { type FormEvent, useState } from "react";
import { Button } from "@/components/ui/button";
import { Field, TextInput } from "@/components/ui/field";

export function TenantKeyForm({
  id,
  buttonLabel,
  onLookup,
}: {
  id: string;
  buttonLabel: string;
  onLookup: (tenant: string | null) => void;
}) {
  const [draft, setDraft] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onLookup(draft.trim() || null);
  };
  return (
    <form onSubmit={submit} className="flex items-end gap-2">
      <div className="w-56">
        <Field id={id} label="Tenant key" hint="The value of the shard key, e.g. 42.">
          <TextInput id={id} value={draft} onChange={(e) => setDraft(e.target.value)} />
        </Field>
      </div>
      <Button type="submit" variant="secondary" disabled={!draft.trim()}>
        {buttonLabel}
      </Button>
    </form>
  );
}

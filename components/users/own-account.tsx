"use client";

// Everyone's own account: change the password (every other session ends) and sign out everywhere
// (every session ends, this one too).
import { useMutation } from "@tanstack/react-query";
import { useRouter } from "next/navigation";
import { useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
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
import { ZChangeOwnPasswordInput } from "@/server/schemas/user";

export function OwnAccount() {
  return (
    <Card
      className="mt-4"
      title="Your account"
      description="A session ends a fixed time after sign-in (12 hours unless set otherwise), however busy it is."
    >
      <div className="grid grid-cols-2 gap-6">
        <ChangePassword />
        <SignOutEverywhere />
      </div>
    </Card>
  );
}

function ChangePassword() {
  const trpc = useTRPC();
  const [draft, setDraft] = useState({ currentPassword: "", newPassword: "" });
  const [errors, setErrors] = useState<FieldErrors>({});
  const [done, setDone] = useState<string | null>(null);
  const change = useMutation(
    trpc.users.changeOwnPassword.mutationOptions({
      onSuccess: (result) => {
        setDraft({ currentPassword: "", newPassword: "" });
        setDone(
          `Password changed. ${result.otherSessionsRevoked} other session${result.otherSessionsRevoked === 1 ? " was" : "s were"} signed out; this one stays.`,
        );
      },
      onError: (error) => setErrors(fieldErrorsFromServer(error)),
    }),
  );
  return (
    <form
      noValidate
      className="space-y-3"
      onSubmit={(event) => {
        event.preventDefault();
        setDone(null);
        const parsed = ZChangeOwnPasswordInput.safeParse(draft);
        if (!parsed.success) {
          setErrors(fieldErrorsFromZod(parsed.error));
          return;
        }
        setErrors({});
        change.mutate(parsed.data);
      }}
    >
      <h3 className="text-sm font-semibold">Change your password</h3>
      <Field id="own-current" label="Current password" errors={errors.currentPassword}>
        <TextInput
          id="own-current"
          type="password"
          autoComplete="current-password"
          value={draft.currentPassword}
          onChange={(e) => setDraft({ ...draft, currentPassword: e.target.value })}
          invalid={Boolean(errors.currentPassword)}
        />
      </Field>
      <Field
        id="own-new"
        label="New password"
        hint="At least 10 characters. Your other sessions are signed out."
        errors={errors.newPassword}
      >
        <TextInput
          id="own-new"
          type="password"
          autoComplete="new-password"
          value={draft.newPassword}
          onChange={(e) => setDraft({ ...draft, newPassword: e.target.value })}
          invalid={Boolean(errors.newPassword)}
        />
      </Field>
      <Button type="submit" variant="primary" busy={change.isPending}>
        Change password
      </Button>
      <div aria-live="polite">
        {change.error && !Object.keys(fieldErrorsFromServer(change.error)).length ? (
          <Alert tone="error" title={messageOf(change.error)} />
        ) : null}
        {done ? <Alert tone="ok" title={done} /> : null}
      </div>
    </form>
  );
}

function SignOutEverywhere() {
  const trpc = useTRPC();
  const router = useRouter();
  const [asking, setAsking] = useState(false);
  const signOut = useMutation(
    trpc.users.signOutEverywhere.mutationOptions({
      onSuccess: () => {
        router.push("/sign-in");
        router.refresh();
      },
    }),
  );
  return (
    <div className="space-y-3">
      <h3 className="text-sm font-semibold">Sign out everywhere</h3>
      <p className="text-xs text-slate-600">
        Ends every session of yours — other browsers, other machines, and this one. Use it after a lost laptop
        or a shared screen.
      </p>
      {asking ? (
        <fieldset className="flex items-center gap-2">
          <legend className="sr-only">Confirm sign out everywhere</legend>
          <Button variant="danger" busy={signOut.isPending} onClick={() => signOut.mutate()}>
            Yes, sign out everywhere
          </Button>
          <Button variant="ghost" onClick={() => setAsking(false)}>
            Cancel
          </Button>
        </fieldset>
      ) : (
        <Button onClick={() => setAsking(true)}>Sign out everywhere…</Button>
      )}
      {signOut.error ? <Alert tone="error" title={messageOf(signOut.error)} /> : null}
    </div>
  );
}

"use client";

import { useRouter, useSearchParams } from "next/navigation";
import { useState } from "react";
import { authClient } from "@/components/auth-client";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import { Field, TextInput } from "@/components/ui/field";
import { type FieldErrors, fieldErrorsFromZod } from "@/components/ui/field-errors";
import { ZSignInInput } from "@/server/schemas/user";

export function SignInForm({
  demoAccounts,
}: {
  demoAccounts: { email: string; password: string; role: string }[];
}) {
  const router = useRouter();
  const next = useSearchParams().get("next");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [errors, setErrors] = useState<FieldErrors>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: React.FormEvent) {
    event.preventDefault();
    setFailure(null);
    const parsed = ZSignInInput.safeParse({ email, password });
    if (!parsed.success) {
      setErrors(fieldErrorsFromZod(parsed.error));
      return;
    }
    setErrors({});
    setBusy(true);
    const result = await authClient.signIn.email(parsed.data);
    setBusy(false);
    if (result.error) {
      setFailure(
        result.error.status === 401
          ? "That email and password do not match an account. Check both, or ask an admin to add you."
          : result.error.status === 429 && result.error.code !== "ACCOUNT_THROTTLED"
            ? "Too many sign-in attempts from here. Wait a minute, then try again."
            : // A disabled account (403) or too many attempts on this account: the server says what to do.
              (result.error.message ?? "Sign-in failed. Try again."),
      );
      return;
    }
    router.push(next?.startsWith("/") ? next : "/");
    router.refresh();
  }

  return (
    <div className="space-y-4">
      <form
        onSubmit={submit}
        noValidate
        className="space-y-3 rounded-lg border border-slate-200 bg-white p-5 shadow-xs"
      >
        <Field id="email" label="Email" errors={errors.email}>
          <TextInput
            id="email"
            type="email"
            autoComplete="username"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            invalid={Boolean(errors.email)}
          />
        </Field>
        <Field id="password" label="Password" errors={errors.password}>
          <TextInput
            id="password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            invalid={Boolean(errors.password)}
          />
        </Field>
        {failure ? <Alert tone="error" title={failure} /> : null}
        <Button type="submit" variant="primary" busy={busy} className="w-full justify-center">
          Sign in
        </Button>
      </form>
      {demoAccounts.length ? (
        <div className="rounded-lg border border-dashed border-slate-300 bg-white/60 p-4 text-xs text-slate-600">
          <p className="mb-2 font-medium text-slate-700">Demo accounts</p>
          <ul className="space-y-1">
            {demoAccounts.map((account) => (
              <li key={account.email} className="flex items-center justify-between gap-2">
                <span>
                  <span className="font-mono">{account.email}</span> · {account.role}
                </span>
                <button
                  type="button"
                  className="rounded px-1.5 py-0.5 text-sky-700 hover:bg-sky-50"
                  onClick={() => {
                    setEmail(account.email);
                    setPassword(account.password);
                  }}
                >
                  Use
                </button>
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </div>
  );
}

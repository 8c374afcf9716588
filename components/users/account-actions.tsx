"use client";

// An admin's lock-out actions for one person: disable (every session ends at once) or enable, and
// reset the password (their sessions end). Each asks for a reason that goes into the audit log.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { Button } from "@/components/ui/button";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Field, TextInput } from "@/components/ui/field";
import { messageOf } from "@/components/ui/field-errors";

export interface AccountRow {
  id: string;
  email: string;
  disabledAt: Date | string | null;
  activeSessions: number;
}

export function AccountActions({ user, isMe }: { user: AccountRow; isMe: boolean }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const refresh = { onSuccess: () => queryClient.invalidateQueries() };
  const disable = useMutation(trpc.users.disable.mutationOptions(refresh));
  const enable = useMutation(trpc.users.enable.mutationOptions(refresh));
  const reset = useMutation(trpc.users.resetPassword.mutationOptions(refresh));
  const [newPassword, setNewPassword] = useState("");
  const [passwordError, setPasswordError] = useState<string | null>(null);

  if (isMe) {
    return <span className="text-xs text-slate-500">Your own account: use “Your account” below.</span>;
  }
  const sessions = `${user.activeSessions} active session${user.activeSessions === 1 ? "" : "s"}`;
  return (
    <div className="flex flex-wrap items-center gap-2">
      {user.disabledAt ? (
        <ConfirmDialog
          trigger={<Button>Enable</Button>}
          title="Enable account"
          scope={`Let ${user.email} sign in again.`}
          confirmLabel="Enable"
          dismissLabel="Keep it disabled"
          busy={enable.isPending}
          error={enable.error ? messageOf(enable.error) : null}
          onConfirm={(reason) => enable.mutateAsync({ userId: user.id, reason })}
        />
      ) : (
        <ConfirmDialog
          trigger={<Button>Disable</Button>}
          title="Disable account"
          scope={`Sign ${user.email} out now (${sessions}) and refuse their sign-ins until an admin enables the account.`}
          confirmLabel="Disable and sign out"
          dismissLabel="Keep the account"
          tone="danger"
          busy={disable.isPending}
          error={disable.error ? messageOf(disable.error) : null}
          onConfirm={(reason) => disable.mutateAsync({ userId: user.id, reason })}
        />
      )}
      <ConfirmDialog
        trigger={<Button>Reset password</Button>}
        title="Reset password"
        scope={`Set a new password for ${user.email} and end their ${sessions}. Give them the password through a safe channel.`}
        confirmLabel="Reset password"
        dismissLabel="Keep the password"
        tone="danger"
        busy={reset.isPending}
        error={passwordError ?? (reset.error ? messageOf(reset.error) : null)}
        onConfirm={async (reason) => {
          if (newPassword.length < 10 || newPassword.length > 128) {
            setPasswordError("The new password needs 10 to 128 characters.");
            throw new Error("invalid password");
          }
          setPasswordError(null);
          await reset.mutateAsync({ userId: user.id, newPassword, reason });
          setNewPassword("");
        }}
      >
        <Field id={`reset-${user.id}`} label="New password" hint="At least 10 characters">
          <TextInput
            id={`reset-${user.id}`}
            type="password"
            autoComplete="new-password"
            value={newPassword}
            onChange={(e) => setNewPassword(e.target.value)}
          />
        </Field>
      </ConfirmDialog>
    </div>
  );
}

/** What a non-admin sees in place of the actions: the same buttons, disabled, with the reason once. */
export function AccountActionsBlocked({ reason }: { reason: string }) {
  return (
    <div className="flex flex-wrap items-center gap-3">
      <Button disabled title={reason}>
        Disable a person
      </Button>
      <Button disabled title={reason}>
        Reset a password
      </Button>
      <span className="text-xs text-slate-600">
        Admins only: disabling an account ends its sessions at once.
      </span>
    </div>
  );
}

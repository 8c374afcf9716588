"use client";

// Production-changing actions ask for a reason and a confirmation that names the scope.
import * as Dialog from "@radix-ui/react-dialog";
import { type ReactNode, useState } from "react";
import { Alert } from "./alert";
import { Button } from "./button";
import { Field } from "./field";

export function ConfirmDialog({
  trigger,
  title,
  scope,
  confirmLabel,
  dismissLabel,
  tone = "primary",
  busy,
  error,
  onConfirm,
  children,
}: {
  trigger: ReactNode;
  title: string;
  /** What exactly will change, in words: "Advance plan X from A to B". */
  scope: ReactNode;
  /** Names the action: "Cancel the movement", never a bare "OK". */
  confirmLabel: string;
  /** Names what dismissing means ("Keep it running"): a bare "Cancel" beside "Cancel the movement" is a trap. */
  dismissLabel: string;
  tone?: "primary" | "danger";
  busy?: boolean;
  error?: string | null;
  onConfirm: (reason: string) => Promise<unknown>;
  /** Extra inputs the action needs, shown above the reason. */
  children?: ReactNode;
}) {
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState("");
  const [touched, setTouched] = useState(false);
  const reasonError =
    reason.trim().length < 3 ? "Say why (at least 3 characters): it goes into the audit log" : null;

  return (
    <Dialog.Root
      open={open}
      onOpenChange={(next) => {
        setOpen(next);
        if (!next) {
          setReason("");
          setTouched(false);
        }
      }}
    >
      <Dialog.Trigger asChild>{trigger}</Dialog.Trigger>
      <Dialog.Portal>
        <Dialog.Overlay className="fixed inset-0 bg-slate-900/40" />
        <Dialog.Content className="fixed top-1/2 left-1/2 w-[32rem] max-w-[92vw] -translate-x-1/2 -translate-y-1/2 rounded-lg bg-white p-5 shadow-xl">
          <Dialog.Title className="text-base font-semibold text-slate-900">{title}</Dialog.Title>
          <Dialog.Description asChild>
            <div className="mt-2 text-sm text-slate-700">{scope}</div>
          </Dialog.Description>
          <form
            className="mt-4 space-y-3"
            onSubmit={async (event) => {
              event.preventDefault();
              setTouched(true);
              if (reasonError) return;
              try {
                await onConfirm(reason.trim());
                setOpen(false);
                setReason("");
                setTouched(false);
              } catch {
                // The caller shows the error below; keep the dialog open so nothing is lost.
              }
            }}
          >
            {children}
            <Field
              id="confirm-reason"
              label="Reason (recorded in the audit log)"
              errors={touched && reasonError ? [reasonError] : undefined}
            >
              <textarea
                id="confirm-reason"
                value={reason}
                onChange={(e) => setReason(e.target.value)}
                rows={3}
                aria-invalid={Boolean(touched && reasonError) || undefined}
                className="block w-full rounded-md border border-slate-300 px-2.5 py-1.5 text-sm focus:border-sky-600 focus:ring-1 focus:ring-sky-600 focus:outline-none"
              />
            </Field>
            {error ? <Alert tone="error" title={error} /> : null}
            <div className="flex justify-end gap-2">
              <Dialog.Close asChild>
                <Button variant="ghost">{dismissLabel}</Button>
              </Dialog.Close>
              <Button type="submit" variant={tone} busy={busy}>
                {confirmLabel}
              </Button>
            </div>
          </form>
        </Dialog.Content>
      </Dialog.Portal>
    </Dialog.Root>
  );
}

"use client";

import type { ButtonHTMLAttributes } from "react";

const variants = {
  primary: "bg-sky-700 text-white hover:bg-sky-800 border-sky-700",
  secondary: "bg-white text-slate-800 hover:bg-slate-100 border-slate-300",
  danger: "bg-red-700 text-white hover:bg-red-800 border-red-700",
  ghost: "bg-transparent text-slate-700 hover:bg-slate-100 border-transparent",
} as const;

export interface ButtonProps extends ButtonHTMLAttributes<HTMLButtonElement> {
  variant?: keyof typeof variants;
  /** Why the action is unavailable: the button is disabled and the reason shown beside it. */
  disabledReason?: string | null;
  busy?: boolean;
}

export function Button({
  variant = "secondary",
  disabledReason,
  busy,
  className = "",
  children,
  ...rest
}: ButtonProps) {
  const disabled = Boolean(disabledReason) || busy || rest.disabled;
  return (
    <span className="inline-flex flex-col items-start gap-0.5">
      <button
        type="button"
        {...rest}
        disabled={disabled}
        title={disabledReason ?? rest.title}
        aria-busy={busy || undefined}
        className={`inline-flex items-center gap-1.5 rounded-md border px-3 py-1.5 text-sm font-medium shadow-xs transition-colors disabled:cursor-not-allowed disabled:opacity-50 ${variants[variant]} ${className}`}
      >
        {busy ? (
          <span
            aria-hidden
            className="size-3 animate-spin rounded-full border-2 border-current border-t-transparent"
          />
        ) : null}
        {children}
      </button>
      {disabledReason ? <span className="max-w-72 text-xs text-slate-500">{disabledReason}</span> : null}
    </span>
  );
}

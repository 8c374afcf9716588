import type { ReactNode } from "react";

const tones = {
  error: "border-red-300 bg-red-50 text-red-900",
  warn: "border-amber-300 bg-amber-50 text-amber-900",
  ok: "border-emerald-300 bg-emerald-50 text-emerald-900",
  info: "border-sky-300 bg-sky-50 text-sky-900",
} as const;

const labels = { error: "Error", warn: "Warning", ok: "Done", info: "Note" } as const;

export function Alert({
  tone,
  title,
  children,
}: {
  tone: keyof typeof tones;
  title?: ReactNode;
  children?: ReactNode;
}) {
  return (
    <div
      role={tone === "error" ? "alert" : "status"}
      className={`rounded-md border px-3 py-2 text-sm ${tones[tone]}`}
    >
      <p className="font-medium">
        <span className="sr-only">{labels[tone]}: </span>
        {title}
      </p>
      {children ? <div className="mt-1 text-sm">{children}</div> : null}
    </div>
  );
}

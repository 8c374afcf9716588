// Status is shown by word, symbol and colour together: never colour alone.
const tones = {
  ok: { className: "bg-emerald-50 text-emerald-800 ring-emerald-600/30", symbol: "●" },
  info: { className: "bg-sky-50 text-sky-800 ring-sky-600/30", symbol: "◆" },
  warn: { className: "bg-amber-50 text-amber-900 ring-amber-600/40", symbol: "▲" },
  danger: { className: "bg-red-50 text-red-800 ring-red-600/30", symbol: "■" },
  neutral: { className: "bg-slate-100 text-slate-700 ring-slate-500/30", symbol: "○" },
} as const;

export type Tone = keyof typeof tones;

export function Badge({ tone = "neutral", children }: { tone?: Tone; children: React.ReactNode }) {
  const t = tones[tone];
  return (
    <span
      className={`inline-flex items-center gap-1 rounded-full px-2 py-0.5 text-xs font-medium ring-1 ring-inset ${t.className}`}
    >
      <span aria-hidden className="text-[0.6rem] leading-none">
        {t.symbol}
      </span>
      {children}
    </span>
  );
}

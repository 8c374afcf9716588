"use client";

// The plan settings inputs, shared by "new plan" and "settings". Values are kept as text while
// typing and parsed by ZPlanSettings on submit, so the form and the API refuse the same things.
import { useRoleBlock } from "@/components/providers/user";
import { Field, TextArea, TextInput } from "@/components/ui/field";
import type { FieldErrors } from "@/components/ui/field-errors";
import type { TPlanSettings } from "@/server/schemas/plan";

export type SettingsDraft = Record<Exclude<keyof TPlanSettings, "requireCleanParity">, string> & {
  requireCleanParity: boolean;
};

export function toDraft(settings: TPlanSettings): SettingsDraft {
  return {
    backfillRowsPerSecond: String(settings.backfillRowsPerSecond),
    parityRowsPerSecond: String(settings.parityRowsPerSecond),
    cdcLagThresholdMs: String(settings.cdcLagThresholdMs),
    gateSoakMinutes: String(settings.gateSoakMinutes),
    requireCleanParity: settings.requireCleanParity,
    freezeBudgetMs: String(settings.freezeBudgetMs),
    soakDays: String(settings.soakDays),
    cohortPercents: settings.cohortPercents.join(", "),
    slotRetainedWarnMb: String(settings.slotRetainedWarnMb),
    sourceBusyConnections: String(settings.sourceBusyConnections),
    sourceLoadQuery: settings.sourceLoadQuery,
    sourceLoadThreshold: String(settings.sourceLoadThreshold),
    gateWindowMinutes: String(settings.gateWindowMinutes),
    promotionConcurrency: String(settings.promotionConcurrency),
    breakerParityDriftRows: String(settings.breakerParityDriftRows),
    breakerLagThresholdMs: String(settings.breakerLagThresholdMs),
    breakerWindowSeconds: String(settings.breakerWindowSeconds),
    breakerShardDownSeconds: String(settings.breakerShardDownSeconds),
    breakerStrayWrites: String(settings.breakerStrayWrites),
    breakerSdkErrorPercent: String(settings.breakerSdkErrorPercent),
  };
}

const num = (text: string) =>
  text.trim() === "" ? Number.NaN : Number(text.replaceAll(",", "").replaceAll("_", ""));

/** Draft → candidate settings object; zod decides whether it is valid. */
export function fromDraft(draft: SettingsDraft): unknown {
  return {
    backfillRowsPerSecond: num(draft.backfillRowsPerSecond),
    parityRowsPerSecond: num(draft.parityRowsPerSecond),
    cdcLagThresholdMs: num(draft.cdcLagThresholdMs),
    gateSoakMinutes: num(draft.gateSoakMinutes),
    requireCleanParity: draft.requireCleanParity,
    freezeBudgetMs: num(draft.freezeBudgetMs),
    soakDays: num(draft.soakDays),
    cohortPercents: draft.cohortPercents
      .split(/[,\s]+/)
      .filter(Boolean)
      .map((p) => Number(p.replace("%", ""))),
    slotRetainedWarnMb: num(draft.slotRetainedWarnMb),
    sourceBusyConnections: num(draft.sourceBusyConnections),
    sourceLoadQuery: draft.sourceLoadQuery,
    sourceLoadThreshold: num(draft.sourceLoadThreshold),
    gateWindowMinutes: num(draft.gateWindowMinutes),
    promotionConcurrency: num(draft.promotionConcurrency),
    breakerParityDriftRows: num(draft.breakerParityDriftRows),
    breakerLagThresholdMs: num(draft.breakerLagThresholdMs),
    breakerWindowSeconds: num(draft.breakerWindowSeconds),
    breakerShardDownSeconds: num(draft.breakerShardDownSeconds),
    breakerStrayWrites: num(draft.breakerStrayWrites),
    breakerSdkErrorPercent: num(draft.breakerSdkErrorPercent),
  };
}

const numericFields: {
  key: keyof Omit<SettingsDraft, "requireCleanParity" | "cohortPercents" | "sourceLoadQuery">;
  label: string;
  hint: string;
}[] = [
  {
    key: "backfillRowsPerSecond",
    label: "Backfill rate limit (rows/s)",
    hint: "Token-bucket limit for the historical copy; changeable while it runs.",
  },
  {
    key: "parityRowsPerSecond",
    label: "Parity check rate limit (rows/s)",
    hint: "Rows hashed per second by parity checks on each server (legacy and every shard), so they do not starve production.",
  },
  {
    key: "cdcLagThresholdMs",
    label: "CDC lag threshold (ms)",
    hint: "Above this, backfill backs off and cohort gates stay closed.",
  },
  {
    key: "gateSoakMinutes",
    label: "Cohort soak (min)",
    hint: "How long a cohort runs on its shard before the next may be promoted.",
  },
  {
    key: "freezeBudgetMs",
    label: "Freeze budget (ms)",
    hint: "Longest a cutover or rollback may block a tenant's writes; over it, the step aborts.",
  },
  {
    key: "soakDays",
    label: "Soak before clean-up (days)",
    hint: "At least 7. Replication is kept for rollback until then.",
  },
  {
    key: "slotRetainedWarnMb",
    label: "Slot WAL warning (MB)",
    hint: "Warn when legacy's replication slot holds more WAL than this while nothing streams it.",
  },
  {
    key: "gateWindowMinutes",
    label: "Gate window (min)",
    hint: "Cohort gates judge lag and stray writes over this many minutes before a promotion.",
  },
  {
    key: "promotionConcurrency",
    label: "Promotion: cutovers at once",
    hint: "How many tenants a cohort's promotion cuts over at the same time (1–64).",
  },
];

/** The breaker's automatic trip rules: each judges the plan's measured facts continuously. */
const breakerFields: typeof numericFields = [
  {
    key: "breakerParityDriftRows",
    label: "Breaker: parity drift above (rows)",
    hint: "Trip when more confirmed differing rows than this are open for tenants on shards (0: any).",
  },
  {
    key: "breakerLagThresholdMs",
    label: "Breaker: lag above (ms)",
    hint: "Trip when forward or reverse CDC lag stays above this for the whole breaker window.",
  },
  {
    key: "breakerWindowSeconds",
    label: "Breaker window (s)",
    hint: "How long lag must stay high, and the span stray writes and SDK errors are counted over.",
  },
  {
    key: "breakerShardDownSeconds",
    label: "Breaker: shard unreachable for (s)",
    hint: "Trip when a shard has not answered for longer than this.",
  },
  {
    key: "breakerStrayWrites",
    label: "Breaker: stray writes above",
    hint: "Trip when the fences refused more writes than this within the breaker window (0: any).",
  },
  {
    key: "breakerSdkErrorPercent",
    label: "Breaker: SDK error rate above (%)",
    hint: "Trip when more than this share of a shard's queries through the router SDK fail in the window.",
  },
];

/** After the cohort steps: when legacy counts as busy, with the load query below them. */
const busyFields: typeof numericFields = [
  {
    key: "sourceBusyConnections",
    label: "Busy legacy: active connections",
    hint: "Above this many active client connections on legacy, the backfill backs off.",
  },
  {
    key: "sourceLoadThreshold",
    label: "Busy legacy: load query above",
    hint: "The backfill backs off while the load query below returns more than this.",
  },
];

export function SettingsFields({
  draft,
  onChange,
  errors,
  prefix = "settings.",
}: {
  draft: SettingsDraft;
  onChange: (draft: SettingsDraft) => void;
  errors: FieldErrors;
  prefix?: string;
}) {
  const err = (key: string) => errors[`${prefix}${key}`];
  // The load query runs as legacy's registered user: only admins, who hold its credentials, set it.
  const queryBlock = useRoleBlock("admin");
  const numeric = (f: (typeof numericFields)[number]) => (
    <Field key={f.key} id={f.key} label={f.label} hint={f.hint} errors={err(f.key)}>
      <TextInput
        id={f.key}
        inputMode="numeric"
        value={draft[f.key]}
        invalid={Boolean(err(f.key))}
        onChange={(e) => onChange({ ...draft, [f.key]: e.target.value })}
      />
    </Field>
  );
  return (
    <div className="grid grid-cols-2 gap-4 lg:grid-cols-3">
      {numericFields.map(numeric)}
      <Field
        id="cohortPercents"
        label="Cohort steps (% of tenants)"
        hint="Increasing, ending at 100, e.g. 1, 5, 25, 100."
        errors={err("cohortPercents")}
      >
        <TextInput
          id="cohortPercents"
          value={draft.cohortPercents}
          invalid={Boolean(err("cohortPercents"))}
          onChange={(e) => onChange({ ...draft, cohortPercents: e.target.value })}
        />
      </Field>
      {busyFields.map(numeric)}
      {breakerFields.map(numeric)}
      <div className="col-span-full">
        <Field
          id="sourceLoadQuery"
          label="Busy legacy: load query (optional)"
          hint={
            queryBlock
              ? `Admins only: it runs as legacy's registered user. ${queryBlock}`
              : "One SELECT returning one number, run on legacy every second while copying (read-only, 2 s limit). It runs as legacy's registered database user and can read what that user can; only the number it returns, or its error's class, is ever shown. E.g. select count(*) from pg_locks where not granted"
          }
          errors={err("sourceLoadQuery")}
        >
          <TextArea
            id="sourceLoadQuery"
            rows={2}
            spellCheck={false}
            className="font-mono"
            value={draft.sourceLoadQuery}
            disabled={Boolean(queryBlock)}
            invalid={Boolean(err("sourceLoadQuery"))}
            onChange={(e) => onChange({ ...draft, sourceLoadQuery: e.target.value })}
          />
        </Field>
      </div>
      <div className="col-span-full">
        <label className="flex items-center gap-2 text-sm">
          <input
            type="checkbox"
            checked={draft.requireCleanParity}
            onChange={(e) => onChange({ ...draft, requireCleanParity: e.target.checked })}
          />
          Promote a cohort only when parity is clean
        </label>
      </div>
    </div>
  );
}

// Settings that change how a value is written as text. Two sessions that exchange values as text —
// a COPY out of legacy into a shard, a key compared as text, a row hashed on both sides — pin them
// to the same values, or the same value can be read back as another (DateStyle DMY vs MDY) or
// compare unequal.
import pg from "pg";

export const RENDERING_SETTINGS: Readonly<Record<string, string>> = {
  // timestamptz, timetz and the time part of tstzrange render in the session's zone.
  TimeZone: "UTC",
  // date and timestamp order and separators.
  DateStyle: "ISO, MDY",
  // interval rendering ('1 day 02:00:00' vs 'P1DT2H').
  IntervalStyle: "postgres",
  // float4/float8: any positive value gives the shortest exact rendering (PostgreSQL ≥ 12);
  // 0 or less rounds, and two sides with different values render the same number differently.
  extra_float_digits: "3",
  // bytea: hex vs escape.
  bytea_output: "hex",
  // money: currency symbol, separators and decimal point come from lc_monetary.
  lc_monetary: "C",
};

/** `set [local] name = value; …` for `settings`: local lasts the transaction, session the connection. */
export function settingsSql(settings: Readonly<Record<string, string>>, scope: "local" | "session"): string {
  return Object.entries(settings)
    .map(([name, value]) => `set ${scope === "local" ? "local " : ""}${name} = ${pg.escapeLiteral(value)}`)
    .join("; ");
}

/** The rendering settings for the current transaction only. */
export const setLocalRenderingSql = (): string => settingsSql(RENDERING_SETTINGS, "local");

/** The rendering settings for the rest of the session. */
export const setSessionRenderingSql = (): string => settingsSql(RENDERING_SETTINGS, "session");

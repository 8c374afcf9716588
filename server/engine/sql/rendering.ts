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

/** `set local …` for every rendering setting: for the current transaction only. */
export function setLocalRenderingSql(): string {
  return Object.entries(RENDERING_SETTINGS)
    .map(([name, value]) => `set local ${name} = ${pg.escapeLiteral(value)}`)
    .join("; ");
}

/** `set …` for every rendering setting: for the rest of the session. */
export function setSessionRenderingSql(): string {
  return Object.entries(RENDERING_SETTINGS)
    .map(([name, value]) => `set ${name} = ${pg.escapeLiteral(value)}`)
    .join("; ");
}

// Bounds that keep numbers inside what the control plane stores: a value past a PostgreSQL column's
// range passed zod and then failed in the database as a 500. Browser-safe (zod only).
import { z } from "zod";

/** PostgreSQL `integer`. */
export const PG_INT_MAX = 2_147_483_647;
/** PostgreSQL `bigint`, for ids and cursors sent as decimal strings. */
const PG_BIGINT_MAX = 9_223_372_036_854_775_807n;

/** A bigserial id or cursor, as a decimal string (JSON numbers cannot carry 64 bits). */
export function ZBigintId(what: string) {
  return z
    .string()
    .max(19, `${what} must be a whole number of at most 19 digits`)
    .regex(/^\d{1,19}$/, `${what} must be a whole number of at most 19 digits`)
    .refine((v) => BigInt(v) <= PG_BIGINT_MAX, {
      message: `${what} is out of range (at most ${PG_BIGINT_MAX})`,
    });
}

/** A row version the form was filled from (an `integer` column). */
export const ZRowVersion = z
  .number({ error: "Send the version the form was filled from" })
  .int("A version is a whole number")
  .min(1, "A version is at least 1")
  .max(PG_INT_MAX, "Not a version this server has handed out");

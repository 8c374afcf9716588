// A promotion's "done" means its cutover flipped the tenant to its shard — true when it was
// recorded, not forever: the breaker (or a person's "Back to legacy") may since have given the
// tenant back to legacy. The promotion keeps its record; what it reports is judged against the
// routing map now, so a rolled-back tenant is shown as back on legacy, with the trip that moved it,
// and counted apart from the tenants on their shards (and may be retried once the breaker is
// re-armed: retryTenant).
//
// Read, not written: the promotion's driver has ended long before most trips, and a tenant cut
// over again later (by another promotion, or by hand) is on its shard again without anyone having
// to update this promotion.
import { db } from "../../db";

export interface BackOnLegacy {
  promotionId: string;
  tenant: string;
  /** Why it is on legacy, in words: the trip that rolled it back, or the routing change. */
  reason: string;
  tripId: string | null;
}

const key = (promotionId: string, tenant: string) => `${promotionId}\u0000${tenant}`;

/**
 * The tenants these promotions recorded as done that are on legacy now (no owner on the map),
 * keyed by promotion id and tenant (`backOnLegacyKey`).
 */
export async function backOnLegacy(promotionIds: string[]): Promise<Map<string, BackOnLegacy>> {
  if (promotionIds.length === 0) return new Map();
  const rows = await db().$queryRaw<
    {
      promotion_id: string;
      tenant_key: string;
      version: string | null;
      trip_id: string | null;
      trip_trigger: string | null;
      trip_by: string | null;
      trip_reason: string | null;
      trip_at: Date | null;
      change_by: string | null;
      change_reason: string | null;
      change_at: Date | null;
    }[]
  >`
    select p.promotion_id::text, p.tenant_key, r.version::text,
           t.id::text as trip_id, t.trigger as trip_trigger, t.requested_by_email as trip_by,
           t.reason as trip_reason, t.created_at as trip_at,
           c.actor_email as change_by, c.reason as change_reason, c.at as change_at
    from promotion_tenant p
    join promotion pr on pr.id = p.promotion_id
    left join tenant_route r on r.plan_id = pr.plan_id and r.tenant_key = p.tenant_key
    -- The trip whose one flip gave every tenant of its set back to legacy at this map version.
    left join breaker_trip t on t.plan_id = pr.plan_id and t.flip_version = r.version
    left join lateral (
      select actor_email, reason, at from routing_change c
      where c.plan_id = pr.plan_id and c.tenant_key = p.tenant_key and c.version = r.version
      order by c.id desc limit 1) c on true
    where p.promotion_id = any(${promotionIds}::uuid[]) and p.status = 'done'
      and r.owner_database_id is null`;
  const out = new Map<string, BackOnLegacy>();
  for (const r of rows) {
    let reason: string;
    if (r.trip_id) {
      const who =
        r.trip_trigger === "manual" ? `tripped by ${r.trip_by}` : `tripped by rule ${r.trip_trigger}`;
      reason =
        `Rolled back to legacy by the breaker (${who} at ${r.trip_at?.toISOString()}: ${r.trip_reason}). ` +
        "Re-arm the breaker once the cause is fixed, then retry it or promote its cohort again.";
    } else if (r.version !== null) {
      reason =
        `Moved back to legacy at map version ${r.version} by ${r.change_by ?? "someone"}${r.change_reason ? ` (${r.change_reason})` : ""}${r.change_at ? ` at ${r.change_at.toISOString()}` : ""}. ` +
        "Retry it to cut it over again.";
    } else {
      reason = "The routing map has it on legacy (no route to a shard). Retry it to cut it over again.";
    }
    out.set(key(r.promotion_id, r.tenant_key), {
      promotionId: r.promotion_id,
      tenant: r.tenant_key,
      reason,
      tripId: r.trip_id,
    });
  }
  return out;
}

export const backOnLegacyKey = key;

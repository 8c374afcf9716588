-- The breaker's map changes (freeze and flip of a whole set of tenants) in ONE statement, with the
-- trip's step in the same transaction (server/engine/breaker/trip-map-change.ts).
--
-- Why not shardshift_routing_change (20261204200000): that one loops over its tenants, three
-- statements each, and writes a cutover attempt, not a trip. A rollback changes up to every tenant
-- of the plan at once (2,000 in the demo) while their writes wait on the freeze; here each part is
-- one set-based statement over the JSON array, and the map row's and the audit chain's locks are
-- held for the statement's own execution, not across a worker's round trips.
--
-- The caller (who decided the change on a read) passes:
--   p_changes: [{tenantKey, fromOwner, fromFrozen, toOwner, toFrozen}], each tenant once — a route
--     that is no longer what the caller read fails the call with SQLSTATE SS101 (nothing written:
--     decide again on a fresh read);
--   p_audit: the audit event drafted by the services' audit log with the two versions as the JSON
--     strings "@@shardshift:prev-version@@" and "@@shardshift:version@@", replaced here (as
--     shardshift_routing_change does), hashed here exactly as appendAuditEvent hashes;
--   p_trip: the trip's guarded step: {id, from (its status, the guard), steps (the whole array,
--     as noteTripStep writes it; @@shardshift:version@@ in a note becomes the new version), and optionally tenants, outcomes, freezeStartedAt, flippedAt,
--     freezeVersion / flipVersion (true: record the new map version there)}; a trip no longer in
--     `from` fails the call with SQLSTATE SS103 (nothing written).
-- Returns the new map version.
create or replace function shardshift_breaker_change(
  p_plan uuid,
  p_changes jsonb,
  p_actor_id text,
  p_actor_email text,
  p_reason text,
  p_at timestamptz,
  p_audit jsonb,
  p_trip jsonb
) returns bigint
language plpgsql
as $$
declare
  v_prev bigint;
  v_next bigint;
  v_stale text;
  v_prev_hash text;
  v_body text;
  v_before text;
  v_after text;
begin
  insert into routing_map (plan_id) values (p_plan) on conflict do nothing;
  select version into v_prev from routing_map where plan_id = p_plan for no key update;
  v_next := v_prev + 1;

  -- Every route still as the caller read it (a tenant without a row is on legacy, not frozen).
  select c.tenant_key into v_stale
    from jsonb_to_recordset(p_changes) as c(tenant_key text, from_owner uuid, from_frozen boolean)
    left join tenant_route r on r.plan_id = p_plan and r.tenant_key = c.tenant_key
   where r.owner_database_id is distinct from c.from_owner
      or coalesce(r.frozen, false) is distinct from c.from_frozen
   limit 1;
  if found then
    raise exception 'the route of tenant % changed since it was read', v_stale using errcode = 'SS101';
  end if;

  insert into tenant_route as r (plan_id, tenant_key, owner_database_id, frozen, frozen_at, version, updated_at)
  select p_plan, c.tenant_key, c.to_owner, c.to_frozen, case when c.to_frozen then p_at end, v_next, p_at
    from jsonb_to_recordset(p_changes) as c(tenant_key text, to_owner uuid, to_frozen boolean)
  on conflict (plan_id, tenant_key) do update set
    owner_database_id = excluded.owner_database_id,
    frozen = excluded.frozen,
    frozen_at = case when excluded.frozen then (case when r.frozen then r.frozen_at else p_at end) end,
    version = excluded.version,
    updated_at = excluded.updated_at;

  insert into routing_change (plan_id, version, tenant_key, from_owner_id, to_owner_id, from_frozen, to_frozen,
                              actor_id, actor_email, reason, at)
  select p_plan, v_next, c.tenant_key, c.from_owner, c.to_owner, c.from_frozen, c.to_frozen,
         p_actor_id, p_actor_email, nullif(p_reason, ''), p_at
    from jsonb_to_recordset(p_changes) as c(tenant_key text, from_owner uuid, to_owner uuid,
                                            from_frozen boolean, to_frozen boolean);

  update routing_map set version = v_next, updated_at = p_at where plan_id = p_plan;

  -- The audit event, chained as appendAuditEvent chains it (same lock, same hash).
  perform pg_advisory_xact_lock(7363002);
  select hash into v_prev_hash from audit_event order by seq desc limit 1;
  v_prev_hash := coalesce(v_prev_hash, repeat('0', 64));
  v_body := replace(replace(p_audit->>'body', '"@@shardshift:prev-version@@"', v_prev::text),
                    '"@@shardshift:version@@"', v_next::text);
  v_before := replace(replace(p_audit->>'before', '"@@shardshift:prev-version@@"', v_prev::text),
                      '"@@shardshift:version@@"', v_next::text);
  v_after := replace(replace(p_audit->>'after', '"@@shardshift:prev-version@@"', v_prev::text),
                     '"@@shardshift:version@@"', v_next::text);
  insert into audit_event (at, actor_id, actor_email, role, action, target_type, target_id, plan_id,
                           before, after, reason, request_id, client_request_id, prev_hash, hash)
  values ((p_audit->>'at')::timestamptz, p_audit->>'actorId', p_audit->>'actorEmail', p_audit->>'role',
          p_audit->>'action', p_audit->>'targetType', p_audit->>'targetId', (p_audit->>'planId')::uuid,
          v_before::jsonb, v_after::jsonb, p_audit->>'reason', p_audit->>'requestId',
          p_audit->>'clientRequestId', v_prev_hash,
          encode(sha256(convert_to(v_prev_hash || E'\n' || v_body, 'UTF8')), 'hex'));

  update breaker_trip set
    steps = replace((p_trip->'steps')::text, '@@shardshift:version@@', v_next::text)::jsonb,
    tenants = coalesce(p_trip->'tenants', tenants),
    outcomes = coalesce(p_trip->'outcomes', outcomes),
    freeze_started_at = coalesce((p_trip->>'freezeStartedAt')::timestamptz, freeze_started_at),
    flipped_at = coalesce((p_trip->>'flippedAt')::timestamptz, flipped_at),
    freeze_version = case when (p_trip->>'freezeVersion')::boolean then v_next else freeze_version end,
    flip_version = case when (p_trip->>'flipVersion')::boolean then v_next else flip_version end,
    updated_at = p_at
  where id = (p_trip->>'id')::uuid and status = p_trip->>'from';
  if not found then
    raise exception 'breaker trip % is no longer %', p_trip->>'id', p_trip->>'from' using errcode = 'SS103';
  end if;

  -- Delivered on commit only, as writeRoutingChange's.
  perform pg_notify('shardshift_routing_map', p_plan::text || ':' || v_next::text);
  return v_next;
end;
$$;

-- One place for the audit chain's SQL side, and the breaker's map change with its set as arrays.
--
-- shardshift_append_audit: the audit event a map change writes in its own statement, chained as
-- appendAuditEvent (server/services/audit/audit-log.ts) chains every other event: the chain's
-- advisory lock, the previous hash, sha256(prev_hash || "\n" || body). The drafted event (p_audit)
-- carries the two map versions as the JSON strings "@@shardshift:prev-version@@" and
-- "@@shardshift:version@@", known only under the map's row lock: replaced here by the numbers, in
-- the body and in before/after. shardshift_routing_change (20261204200000) and
-- shardshift_breaker_change (20261205300000) each held a copy of this block; both call it now.
--
-- shardshift_breaker_change takes the set as parallel arrays instead of a JSON array of objects:
-- a rollback of 2,000 tenants sent 300 KB of JSON keys, parsed three times (jsonb_to_recordset per
-- statement) while every tenant's writes waited on the freeze. Same checks, same writes, same
-- SQLSTATEs (SS101 a route moved since it was read, SS103 the trip moved); the trip's flipped_at is
-- now the time the flip is written (clock_timestamp), not the time the worker began the call.
create or replace function shardshift_append_audit(p_audit jsonb, p_prev bigint, p_next bigint)
returns void
language plpgsql
as $$
declare
  v_prev_hash text;
  v_body text;
  v_before text;
  v_after text;
begin
  perform pg_advisory_xact_lock(7363002);
  select hash into v_prev_hash from audit_event order by seq desc limit 1;
  v_prev_hash := coalesce(v_prev_hash, repeat('0', 64));
  v_body := replace(replace(p_audit->>'body', '"@@shardshift:prev-version@@"', p_prev::text),
                    '"@@shardshift:version@@"', p_next::text);
  v_before := replace(replace(p_audit->>'before', '"@@shardshift:prev-version@@"', p_prev::text),
                      '"@@shardshift:version@@"', p_next::text);
  v_after := replace(replace(p_audit->>'after', '"@@shardshift:prev-version@@"', p_prev::text),
                     '"@@shardshift:version@@"', p_next::text);
  insert into audit_event (at, actor_id, actor_email, role, action, target_type, target_id, plan_id,
                           before, after, reason, request_id, client_request_id, prev_hash, hash)
  values ((p_audit->>'at')::timestamptz, p_audit->>'actorId', p_audit->>'actorEmail', p_audit->>'role',
          p_audit->>'action', p_audit->>'targetType', p_audit->>'targetId', (p_audit->>'planId')::uuid,
          v_before::jsonb, v_after::jsonb, p_audit->>'reason', p_audit->>'requestId',
          p_audit->>'clientRequestId', v_prev_hash,
          encode(sha256(convert_to(v_prev_hash || E'\n' || v_body, 'UTF8')), 'hex'));
end;
$$;

-- The cutover's map change (20261204200000), its audit block replaced by the call.
create or replace function shardshift_routing_change(
  p_plan uuid,
  p_changes jsonb,
  p_actor_id text,
  p_actor_email text,
  p_reason text,
  p_at timestamptz,
  p_audit jsonb,
  p_cutover jsonb
) returns bigint
language plpgsql
as $$
declare
  v_prev bigint;
  v_next bigint;
  v_change jsonb;
  v_owner uuid;
  v_frozen boolean;
  v_found boolean;
begin
  insert into routing_map (plan_id) values (p_plan) on conflict do nothing;
  select version into v_prev from routing_map where plan_id = p_plan for no key update;
  v_next := v_prev + 1;
  for v_change in select * from jsonb_array_elements(p_changes) loop
    select owner_database_id, frozen into v_owner, v_frozen
      from tenant_route where plan_id = p_plan and tenant_key = v_change->>'tenantKey';
    v_found := found;
    if not v_found then
      v_owner := null;
      v_frozen := false;
    end if;
    if v_owner is distinct from (v_change->>'fromOwner')::uuid
       or v_frozen is distinct from (v_change->>'fromFrozen')::boolean then
      raise exception 'the route of tenant % changed since it was read', v_change->>'tenantKey'
        using errcode = 'SS101';
    end if;
    insert into tenant_route as r (plan_id, tenant_key, owner_database_id, frozen, frozen_at, version, updated_at)
    values (
      p_plan, v_change->>'tenantKey', (v_change->>'toOwner')::uuid, (v_change->>'toFrozen')::boolean,
      case when (v_change->>'toFrozen')::boolean then p_at end, v_next, p_at)
    on conflict (plan_id, tenant_key) do update set
      owner_database_id = excluded.owner_database_id,
      frozen = excluded.frozen,
      frozen_at = case when excluded.frozen then (case when r.frozen then r.frozen_at else p_at end) end,
      version = excluded.version,
      updated_at = excluded.updated_at;
    insert into routing_change (plan_id, version, tenant_key, from_owner_id, to_owner_id, from_frozen, to_frozen,
                                actor_id, actor_email, reason, at)
    values (p_plan, v_next, v_change->>'tenantKey', (v_change->>'fromOwner')::uuid, (v_change->>'toOwner')::uuid,
            (v_change->>'fromFrozen')::boolean, (v_change->>'toFrozen')::boolean,
            p_actor_id, p_actor_email, nullif(p_reason, ''), p_at);
  end loop;
  update routing_map set version = v_next, updated_at = p_at where plan_id = p_plan;

  perform shardshift_append_audit(p_audit, v_prev, v_next);

  if p_cutover is not null then
    update tenant_cutover set
      status = p_cutover->>'to',
      steps = case when p_cutover ? 'step' then steps || jsonb_build_array(p_cutover->'step') else steps end,
      freeze_started_at = coalesce((p_cutover->>'freezeStartedAt')::timestamptz, freeze_started_at),
      freeze_ended_at = coalesce((p_cutover->>'freezeEndedAt')::timestamptz, freeze_ended_at),
      flip_version = case when (p_cutover->>'flipVersion')::boolean then v_next else flip_version end,
      updated_at = p_at
    where id = (p_cutover->>'id')::uuid and status = p_cutover->>'from';
    if not found then
      raise exception 'cutover % is no longer %', p_cutover->>'id', p_cutover->>'from' using errcode = 'SS102';
    end if;
  end if;

  -- Delivered on commit only, as writeRoutingChange's.
  perform pg_notify('shardshift_routing_map', p_plan::text || ':' || v_next::text);
  return v_next;
end;
$$;

drop function if exists shardshift_breaker_change(uuid, jsonb, text, text, text, timestamptz, jsonb, jsonb);

-- p_keys, p_from_owners, p_from_frozen, p_to_owners, p_to_frozen: one element per tenant, each
-- tenant once (legacy is a null owner). p_audit and p_trip as in 20261205300000.
create or replace function shardshift_breaker_change(
  p_plan uuid,
  p_keys text[],
  p_from_owners uuid[],
  p_from_frozen boolean[],
  p_to_owners uuid[],
  p_to_frozen boolean[],
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
begin
  insert into routing_map (plan_id) values (p_plan) on conflict do nothing;
  select version into v_prev from routing_map where plan_id = p_plan for no key update;
  v_next := v_prev + 1;

  -- Every route still as the caller read it (a tenant without a row is on legacy, not frozen).
  select c.k into v_stale
    from unnest(p_keys, p_from_owners, p_from_frozen) as c(k, from_owner, from_frozen)
    left join tenant_route r on r.plan_id = p_plan and r.tenant_key = c.k
   where r.owner_database_id is distinct from c.from_owner
      or coalesce(r.frozen, false) is distinct from c.from_frozen
   limit 1;
  if found then
    raise exception 'the route of tenant % changed since it was read', v_stale using errcode = 'SS101';
  end if;

  insert into tenant_route as r (plan_id, tenant_key, owner_database_id, frozen, frozen_at, version, updated_at)
  select p_plan, c.k, c.to_owner, c.to_frozen, case when c.to_frozen then p_at end, v_next, p_at
    from unnest(p_keys, p_to_owners, p_to_frozen) as c(k, to_owner, to_frozen)
  on conflict (plan_id, tenant_key) do update set
    owner_database_id = excluded.owner_database_id,
    frozen = excluded.frozen,
    frozen_at = case when excluded.frozen then (case when r.frozen then r.frozen_at else p_at end) end,
    version = excluded.version,
    updated_at = excluded.updated_at;

  insert into routing_change (plan_id, version, tenant_key, from_owner_id, to_owner_id, from_frozen, to_frozen,
                              actor_id, actor_email, reason, at)
  select p_plan, v_next, c.k, c.from_owner, c.to_owner, c.from_frozen, c.to_frozen,
         p_actor_id, p_actor_email, nullif(p_reason, ''), p_at
    from unnest(p_keys, p_from_owners, p_to_owners, p_from_frozen, p_to_frozen)
      as c(k, from_owner, to_owner, from_frozen, to_frozen);

  update routing_map set version = v_next, updated_at = p_at where plan_id = p_plan;

  perform shardshift_append_audit(p_audit, v_prev, v_next);

  update breaker_trip set
    steps = replace((p_trip->'steps')::text, '@@shardshift:version@@', v_next::text)::jsonb,
    tenants = coalesce(p_trip->'tenants', tenants),
    outcomes = coalesce(p_trip->'outcomes', outcomes),
    freeze_started_at = coalesce((p_trip->>'freezeStartedAt')::timestamptz, freeze_started_at),
    flipped_at = case when (p_trip->>'flipVersion')::boolean then clock_timestamp() else flipped_at end,
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

-- One routing-map change (and, for a cutover, its attempt's status) in ONE statement
-- (server/engine/routing/atomic-change.ts). The map's row lock and the audit chain's advisory lock
-- are then held for the statement's own microseconds, not across round trips from a worker that
-- shares two cores with everything else: under eight cutovers at once those round trips were most
-- of the freeze window.
--
-- The caller (who decided the change on a read without locks) passes:
--   p_changes: [{tenantKey, fromOwner, fromFrozen, toOwner, toFrozen}] — each tenant's route as the
--     caller read it and as it must become; a route that is no longer what the caller read fails
--     the call with SQLSTATE SS101 (nothing written: decide again on a fresh read).
--   p_audit: the audit event's fields and its canonical body (the text the chain hashes), with the
--     two versions, known only under the lock, as the JSON strings "@@shardshift:prev-version@@" and
--     "@@shardshift:version@@": replaced here by the numbers, in the body and in before/after.
--   p_cutover (optional): the attempt's guarded status change (id, from, to, the step entry to
--     append if any, timestamps); an attempt no longer in `from` fails the call with SQLSTATE SS102
--     (nothing written).
-- Returns the new map version.
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
  v_prev_hash text;
  v_body text;
  v_before text;
  v_after text;
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

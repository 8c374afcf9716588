-- The rollback circuit breaker (docs/breaker.md): one row per trip, its status the persisted
-- state machine (server/engine/state/breaker.ts). At most one trip per plan is in flight.

-- CreateTable
CREATE TABLE "breaker_trip" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "plan_id" UUID NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'tripped',
    "scope" JSONB NOT NULL,
    "trigger" TEXT NOT NULL DEFAULT 'manual',
    "evidence" JSONB,
    "requested_by_id" TEXT,
    "requested_by_email" TEXT NOT NULL,
    "reason" TEXT NOT NULL,
    "budget_ms" INTEGER NOT NULL DEFAULT 2000,
    "tenants" JSONB NOT NULL DEFAULT '[]',
    "outcomes" JSONB NOT NULL DEFAULT '{}',
    "freeze_lsns" JSONB NOT NULL DEFAULT '{}',
    "freeze_version" BIGINT,
    "flip_version" BIGINT,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "worker" TEXT,
    "error" TEXT,
    "steps" JSONB NOT NULL DEFAULT '[]',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "freeze_started_at" TIMESTAMPTZ(3),
    "flipped_at" TIMESTAMPTZ(3),
    "freeze_ended_at" TIMESTAMPTZ(3),
    "ended_at" TIMESTAMPTZ(3),
    "rearmed_by_id" TEXT,
    "rearmed_by_email" TEXT,
    "rearmed_at" TIMESTAMPTZ(3),
    "rearm_reason" TEXT,

    CONSTRAINT "breaker_trip_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "breaker_trip_status_check" CHECK ("status" IN ('tripped', 'rolling_back', 'rolled_back', 'failed', 'armed'))
);

-- CreateIndex
CREATE INDEX "breaker_trip_plan_id_created_at_idx" ON "breaker_trip"("plan_id", "created_at" DESC);

-- At most one trip per plan in flight (not expressible in the Prisma schema).
CREATE UNIQUE INDEX "breaker_trip_one_in_flight" ON "breaker_trip"("plan_id") WHERE "status" IN ('tripped', 'rolling_back');

-- AddForeignKey
ALTER TABLE "breaker_trip" ADD CONSTRAINT "breaker_trip_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

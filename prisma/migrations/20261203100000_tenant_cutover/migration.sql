-- One attempt to move one tenant's writes to a new owner (docs/cutover.md). The row is the
-- cutover's persisted state machine (server/engine/state/cutover.ts): a worker claims a
-- 'requested' attempt and drives it; a restarted worker aborts it before the flip and finishes it
-- after. At most one attempt per tenant is in flight.

-- CreateTable
CREATE TABLE "tenant_cutover" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "plan_id" UUID NOT NULL,
    "tenant_key" TEXT NOT NULL,
    "direction" TEXT NOT NULL,
    "from_database_id" UUID,
    "to_database_id" UUID,
    "status" TEXT NOT NULL DEFAULT 'requested',
    "requested_by_id" TEXT,
    "requested_by_email" TEXT NOT NULL,
    "reason" TEXT NOT NULL,
    "budget_ms" INTEGER NOT NULL DEFAULT 2000,
    "freeze_lsn" TEXT,
    "flip_version" BIGINT,
    "freeze_started_at" TIMESTAMPTZ(3),
    "freeze_ended_at" TIMESTAMPTZ(3),
    "worker" TEXT,
    "error" TEXT,
    "steps" JSONB NOT NULL DEFAULT '[]',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "ended_at" TIMESTAMPTZ(3),

    CONSTRAINT "tenant_cutover_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "tenant_cutover_direction_check" CHECK ("direction" IN ('to-shard', 'to-legacy')),
    CONSTRAINT "tenant_cutover_status_check" CHECK ("status" IN ('requested', 'prechecking', 'fencing', 'draining', 'flipped', 'done', 'aborting', 'aborted'))
);

-- CreateIndex
CREATE INDEX "tenant_cutover_plan_id_created_at_idx" ON "tenant_cutover"("plan_id", "created_at" DESC);

-- CreateIndex
CREATE INDEX "tenant_cutover_plan_id_tenant_key_idx" ON "tenant_cutover"("plan_id", "tenant_key");

-- At most one attempt per tenant in flight (not expressible in the Prisma schema).
CREATE UNIQUE INDEX "tenant_cutover_one_in_flight" ON "tenant_cutover"("plan_id", "tenant_key") WHERE "status" NOT IN ('done', 'aborted');

-- AddForeignKey
ALTER TABLE "tenant_cutover" ADD CONSTRAINT "tenant_cutover_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- A cohort's promotion as a durable job (docs/cohorts.md, "Promotion"): the record is the job's
-- persisted state machine (server/engine/state/promotion.ts). A worker drives it while it holds
-- the promotion's advisory lock; a killed worker's promotion is taken over from these rows alone.
-- promotion_tenant is the work list (its order) and each tenant's outcome; the cutover itself is
-- a tenant_cutover attempt, requested through the service like an operator's.

-- CreateTable
CREATE TABLE "promotion" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "plan_id" UUID NOT NULL,
    "ordinal" INTEGER NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'requested',
    "requested_by_id" TEXT,
    "requested_by_email" TEXT NOT NULL,
    "reason" TEXT NOT NULL,
    "override_reason" TEXT,
    "overridden_gates" JSONB NOT NULL DEFAULT '[]',
    "concurrency" INTEGER NOT NULL DEFAULT 8,
    "tenants_total" INTEGER NOT NULL DEFAULT 0,
    "tenants_done" INTEGER NOT NULL DEFAULT 0,
    "tenants_aborted" INTEGER NOT NULL DEFAULT 0,
    "stopped_by" TEXT,
    "stop_judgement" JSONB,
    "worker" TEXT,
    "error" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(3),
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "ended_at" TIMESTAMPTZ(3),

    CONSTRAINT "promotion_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "promotion_status_check" CHECK ("status" IN ('requested', 'running', 'paused', 'stopping', 'done', 'stopped', 'failed')),
    CONSTRAINT "promotion_concurrency_check" CHECK ("concurrency" BETWEEN 1 AND 64)
);

-- CreateTable
CREATE TABLE "promotion_tenant" (
    "promotion_id" UUID NOT NULL,
    "tenant_key" TEXT NOT NULL,
    "position" INTEGER NOT NULL,
    "rows" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "status" TEXT NOT NULL DEFAULT 'pending',
    "cutover_id" UUID,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "error" TEXT,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "promotion_tenant_pkey" PRIMARY KEY ("promotion_id","tenant_key"),
    CONSTRAINT "promotion_tenant_status_check" CHECK ("status" IN ('pending', 'requested', 'done', 'aborted'))
);

-- CreateIndex
CREATE INDEX "promotion_plan_id_created_at_idx" ON "promotion"("plan_id", "created_at" DESC);

-- CreateIndex
CREATE INDEX "promotion_tenant_promotion_id_status_position_idx" ON "promotion_tenant"("promotion_id", "status", "position");

-- At most one promotion per plan not yet ended (not expressible in the Prisma schema).
CREATE UNIQUE INDEX "promotion_one_in_flight" ON "promotion"("plan_id") WHERE "status" NOT IN ('done', 'stopped', 'failed');

-- AddForeignKey
ALTER TABLE "promotion" ADD CONSTRAINT "promotion_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "promotion_tenant" ADD CONSTRAINT "promotion_tenant_promotion_id_fkey" FOREIGN KEY ("promotion_id") REFERENCES "promotion"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Tenant cohorts that are drawn once and never re-drawn by themselves (server/engine/cohorts/assign.ts,
-- server/services/cohorts/cohorts.ts), and operators' tenant tags (vip, do-not-move, …).
--
-- No tenant_state table: a tenant's migration state is derived (server/engine/state/tenant-state.ts)
-- from the rows that already ARE its truth — tenant_route (the owner, written in the flip's
-- transaction), tenant_cutover (the attempt in flight, its step and error) and the census with the
-- backfill's checkpoints (copied or not). A third copy, written in another transaction, could only
-- disagree with them after a crash.

-- CreateTable
CREATE TABLE "tenant_tag" (
    "plan_id" UUID NOT NULL,
    "tenant_key" TEXT NOT NULL,
    "tag" TEXT NOT NULL,
    "tagged_by_id" TEXT,
    "tagged_by_email" TEXT NOT NULL,
    "tagged_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "tenant_tag_pkey" PRIMARY KEY ("plan_id","tenant_key","tag")
);

-- CreateTable
CREATE TABLE "cohort" (
    "plan_id" UUID NOT NULL,
    "ordinal" INTEGER NOT NULL,
    "label" TEXT NOT NULL,
    "policy" JSONB NOT NULL,
    "assigned_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "assigned_by_id" TEXT,
    "assigned_by_email" TEXT NOT NULL,

    CONSTRAINT "cohort_pkey" PRIMARY KEY ("plan_id","ordinal"),
    CONSTRAINT "cohort_ordinal_check" CHECK ("ordinal" >= 1)
);

-- CreateTable
CREATE TABLE "cohort_member" (
    "plan_id" UUID NOT NULL,
    "tenant_key" TEXT NOT NULL,
    "ordinal" INTEGER,
    "source" TEXT NOT NULL,
    "assigned_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "assigned_by_email" TEXT NOT NULL,

    CONSTRAINT "cohort_member_pkey" PRIMARY KEY ("plan_id","tenant_key"),
    CONSTRAINT "cohort_member_source_check" CHECK ("source" IN ('drawn', 'pinned', 'listed', 'held', 'new-tenant', 'moved'))
);

-- CreateIndex
CREATE INDEX "tenant_tag_plan_id_tag_idx" ON "tenant_tag"("plan_id", "tag");

-- CreateIndex
CREATE INDEX "cohort_member_plan_id_ordinal_idx" ON "cohort_member"("plan_id", "ordinal");

-- AddForeignKey
ALTER TABLE "tenant_tag" ADD CONSTRAINT "tenant_tag_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "cohort" ADD CONSTRAINT "cohort_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "cohort_member" ADD CONSTRAINT "cohort_member_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "cohort_member" ADD CONSTRAINT "cohort_member_plan_id_ordinal_fkey" FOREIGN KEY ("plan_id", "ordinal") REFERENCES "cohort"("plan_id", "ordinal") ON DELETE CASCADE ON UPDATE CASCADE;

-- AlterTable
ALTER TABLE "data_movement" ADD COLUMN "census_at" TIMESTAMPTZ(3);

-- CreateTable
CREATE TABLE "tenant_census" (
    "plan_id" UUID NOT NULL,
    "table_name" TEXT NOT NULL,
    "tenant_key" TEXT NOT NULL,
    "position" INTEGER NOT NULL,
    "rows" BIGINT NOT NULL,
    "rows_before" BIGINT NOT NULL,

    CONSTRAINT "tenant_census_pkey" PRIMARY KEY ("plan_id","table_name","tenant_key")
);

-- CreateIndex
CREATE INDEX "tenant_census_plan_id_tenant_key_idx" ON "tenant_census"("plan_id", "tenant_key");

-- AddForeignKey
ALTER TABLE "tenant_census" ADD CONSTRAINT "tenant_census_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

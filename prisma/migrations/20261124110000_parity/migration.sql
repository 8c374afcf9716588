-- CreateEnum
CREATE TYPE "ParityRunStatus" AS ENUM ('running', 'complete', 'failed');

-- CreateEnum
CREATE TYPE "MismatchStatus" AS ENUM ('open', 'repaired', 'resolved');

-- CreateTable
CREATE TABLE "parity_run" (
    "id" BIGSERIAL NOT NULL,
    "plan_id" UUID NOT NULL,
    "kind" TEXT NOT NULL,
    "status" "ParityRunStatus" NOT NULL DEFAULT 'running',
    "rows_verified" BIGINT NOT NULL DEFAULT 0,
    "chunks_checked" INTEGER NOT NULL DEFAULT 0,
    "chunks_mismatched" INTEGER NOT NULL DEFAULT 0,
    "mismatches_confirmed" INTEGER NOT NULL DEFAULT 0,
    "tables" JSONB NOT NULL DEFAULT '[]',
    "error" TEXT,
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" TIMESTAMPTZ(3),

    CONSTRAINT "parity_run_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "parity_mismatch" (
    "id" BIGSERIAL NOT NULL,
    "plan_id" UUID NOT NULL,
    "run_id" BIGINT NOT NULL,
    "table_name" TEXT NOT NULL,
    "tenant_key" TEXT,
    "shard_ordinal" INTEGER NOT NULL,
    "row_key" JSONB NOT NULL,
    "kind" TEXT NOT NULL,
    "columns" JSONB NOT NULL DEFAULT '[]',
    "legacy_values" JSONB,
    "shard_values" JSONB,
    "status" "MismatchStatus" NOT NULL DEFAULT 'open',
    "detected_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "closed_at" TIMESTAMPTZ(3),

    CONSTRAINT "parity_mismatch_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "parity_run_plan_id_started_at_idx" ON "parity_run"("plan_id", "started_at");

-- CreateIndex
CREATE INDEX "parity_mismatch_plan_id_status_idx" ON "parity_mismatch"("plan_id", "status");

-- CreateIndex
CREATE INDEX "parity_mismatch_run_id_idx" ON "parity_mismatch"("run_id");

-- AddForeignKey
ALTER TABLE "parity_run" ADD CONSTRAINT "parity_run_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "parity_mismatch" ADD CONSTRAINT "parity_mismatch_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "parity_mismatch" ADD CONSTRAINT "parity_mismatch_run_id_fkey" FOREIGN KEY ("run_id") REFERENCES "parity_run"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- CreateTable
CREATE TABLE "parity_touched" (
    "plan_id" UUID NOT NULL,
    "table_name" TEXT NOT NULL,
    "tenant_key" TEXT NOT NULL,
    "touched_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "parity_touched_pkey" PRIMARY KEY ("plan_id","table_name","tenant_key")
);

-- CreateIndex
CREATE INDEX "parity_touched_plan_id_touched_at_idx" ON "parity_touched"("plan_id", "touched_at");

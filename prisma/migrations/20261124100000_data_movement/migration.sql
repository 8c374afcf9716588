-- CreateEnum
CREATE TYPE "MovementStatus" AS ENUM ('preparing', 'running', 'paused', 'cancelling', 'cancelled', 'failed');

-- CreateEnum
CREATE TYPE "BackfillTaskStatus" AS ENUM ('pending', 'running', 'done', 'cancelled');

-- CreateTable
CREATE TABLE "data_movement" (
    "plan_id" UUID NOT NULL,
    "status" "MovementStatus" NOT NULL,
    "publication_name" TEXT NOT NULL,
    "slot_name" TEXT NOT NULL,
    "slot_lsn" TEXT,
    "confirmed_lsn" TEXT,
    "last_error" TEXT,
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,
    "source_schema" JSONB NOT NULL,

    CONSTRAINT "data_movement_pkey" PRIMARY KEY ("plan_id")
);

-- CreateTable
CREATE TABLE "backfill_task" (
    "id" BIGSERIAL NOT NULL,
    "plan_id" UUID NOT NULL,
    "table_name" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "status" "BackfillTaskStatus" NOT NULL DEFAULT 'pending',
    "last_key" JSONB,
    "rows_copied" BIGINT NOT NULL DEFAULT 0,
    "rows_total" BIGINT NOT NULL DEFAULT 0,
    "chunks" INTEGER NOT NULL DEFAULT 0,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "backfill_task_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "metric_sample" (
    "id" BIGSERIAL NOT NULL,
    "plan_id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "value" DOUBLE PRECISION NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "metric_sample_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "engine_event" (
    "id" BIGSERIAL NOT NULL,
    "plan_id" UUID NOT NULL,
    "level" TEXT NOT NULL,
    "source" TEXT NOT NULL,
    "message" TEXT NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "engine_event_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "backfill_task_plan_id_table_name_key" ON "backfill_task"("plan_id", "table_name");

-- CreateIndex
CREATE INDEX "metric_sample_plan_id_name_at_idx" ON "metric_sample"("plan_id", "name", "at");

-- CreateIndex
CREATE INDEX "engine_event_plan_id_at_idx" ON "engine_event"("plan_id", "at");

-- AddForeignKey
ALTER TABLE "data_movement" ADD CONSTRAINT "data_movement_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "backfill_task" ADD CONSTRAINT "backfill_task_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "metric_sample" ADD CONSTRAINT "metric_sample_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "engine_event" ADD CONSTRAINT "engine_event_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- "Clean" means every row was verified: a run records the rows in its scope and the tenants it
-- could not verify (with why), beside the rows it verified.
ALTER TABLE "parity_run" ADD COLUMN "rows_total" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "parity_run" ADD COLUMN "unverified" JSONB NOT NULL DEFAULT '[]';
-- A check's worker writes this every few seconds; a running check whose heartbeat stopped is
-- marked failed instead of showing "running" for ever.
ALTER TABLE "parity_run" ADD COLUMN "heartbeat_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP;

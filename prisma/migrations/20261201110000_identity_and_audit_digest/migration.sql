-- Database identity (issue 10, finding 4): what a registered server really is.
ALTER TABLE "database" ADD COLUMN "system_identifier" TEXT,
ADD COLUMN "database_oid" TEXT,
ADD COLUMN "server_address" TEXT,
ADD COLUMN "identified_at" TIMESTAMPTZ(3);

-- CreateIndex
CREATE UNIQUE INDEX "database_system_identifier_database_oid_key" ON "database"("system_identifier", "database_oid");

-- The client's request id, kept apart from the server's (finding 9).
ALTER TABLE "audit_event" ADD COLUMN "client_request_id" TEXT;

-- Signed digests of the audit chain's head (finding 12).
CREATE TABLE "audit_digest" (
    "id" BIGSERIAL NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL,
    "last_seq" BIGINT NOT NULL,
    "last_hash" TEXT NOT NULL,
    "event_count" BIGINT NOT NULL,
    "prev_signature" TEXT NOT NULL,
    "key_id" TEXT NOT NULL,
    "algorithm" TEXT NOT NULL,
    "signature" TEXT NOT NULL,
    "reason" TEXT NOT NULL,

    CONSTRAINT "audit_digest_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "audit_digest_signature_key" ON "audit_digest"("signature");

-- CreateIndex
CREATE INDEX "audit_digest_last_seq_idx" ON "audit_digest"("last_seq");

-- Digests are append-only like the events they anchor.
CREATE FUNCTION "audit_digest_refuse_change"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_digest is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit digests cannot be edited; a new digest is signed instead.';
END;
$$;

CREATE TRIGGER "audit_digest_append_only_row" BEFORE UPDATE OR DELETE ON "audit_digest"
    FOR EACH ROW EXECUTE FUNCTION "audit_digest_refuse_change"();

CREATE TRIGGER "audit_digest_append_only_truncate" BEFORE TRUNCATE ON "audit_digest"
    FOR EACH STATEMENT EXECUTE FUNCTION "audit_digest_refuse_change"();

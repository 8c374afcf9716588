-- CreateTable
CREATE TABLE "routing_map" (
    "plan_id" UUID NOT NULL,
    "version" BIGINT NOT NULL DEFAULT 0,
    "fence_installed_at" TIMESTAMPTZ(3),
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "routing_map_pkey" PRIMARY KEY ("plan_id")
);

-- CreateTable
CREATE TABLE "tenant_route" (
    "plan_id" UUID NOT NULL,
    "tenant_key" TEXT NOT NULL,
    "owner_database_id" UUID,
    "frozen" BOOLEAN NOT NULL DEFAULT false,
    "frozen_at" TIMESTAMPTZ(3),
    "version" BIGINT NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "tenant_route_pkey" PRIMARY KEY ("plan_id","tenant_key")
);

-- CreateTable
CREATE TABLE "routing_change" (
    "id" BIGSERIAL NOT NULL,
    "plan_id" UUID NOT NULL,
    "version" BIGINT NOT NULL,
    "tenant_key" TEXT NOT NULL,
    "from_owner_id" UUID,
    "to_owner_id" UUID,
    "from_frozen" BOOLEAN NOT NULL,
    "to_frozen" BOOLEAN NOT NULL,
    "actor_id" TEXT,
    "actor_email" TEXT NOT NULL,
    "reason" TEXT,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "routing_change_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_token" (
    "id" UUID NOT NULL,
    "plan_id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "token_hash" TEXT NOT NULL,
    "token_prefix" TEXT NOT NULL,
    "scope" TEXT NOT NULL DEFAULT 'routing:read',
    "created_by_id" TEXT,
    "created_by_email" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_used_at" TIMESTAMPTZ(3),
    "revoked_at" TIMESTAMPTZ(3),
    "revoked_by_email" TEXT,

    CONSTRAINT "api_token_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "stray_write" (
    "id" BIGSERIAL NOT NULL,
    "plan_id" UUID NOT NULL,
    "database_id" UUID NOT NULL,
    "database_name" TEXT NOT NULL,
    "tenant_key" TEXT,
    "reason" TEXT NOT NULL,
    "ticket" BIGINT NOT NULL,
    "count" INTEGER NOT NULL DEFAULT 1,
    "observed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "stray_write_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "tenant_route_plan_id_version_idx" ON "tenant_route"("plan_id", "version");

-- CreateIndex
CREATE INDEX "tenant_route_owner_database_id_idx" ON "tenant_route"("owner_database_id");

-- CreateIndex
CREATE INDEX "routing_change_plan_id_tenant_key_version_idx" ON "routing_change"("plan_id", "tenant_key", "version");

-- CreateIndex
CREATE INDEX "routing_change_plan_id_version_idx" ON "routing_change"("plan_id", "version");

-- CreateIndex
CREATE UNIQUE INDEX "api_token_token_hash_key" ON "api_token"("token_hash");

-- CreateIndex
CREATE INDEX "api_token_plan_id_created_at_idx" ON "api_token"("plan_id", "created_at");

-- CreateIndex
CREATE INDEX "stray_write_plan_id_observed_at_idx" ON "stray_write"("plan_id", "observed_at");

-- CreateIndex
CREATE UNIQUE INDEX "stray_write_plan_id_database_id_ticket_key" ON "stray_write"("plan_id", "database_id", "ticket");

-- AddForeignKey
ALTER TABLE "routing_map" ADD CONSTRAINT "routing_map_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "tenant_route" ADD CONSTRAINT "tenant_route_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "tenant_route" ADD CONSTRAINT "tenant_route_owner_database_id_fkey" FOREIGN KEY ("owner_database_id") REFERENCES "database"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "routing_change" ADD CONSTRAINT "routing_change_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "api_token" ADD CONSTRAINT "api_token_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "stray_write" ADD CONSTRAINT "stray_write_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

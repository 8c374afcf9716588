// `npm run db:migrate`: applies the committed migrations to DATABASE_URL.
import { migrateControlPlane } from "../server/store/migrate";

const url = process.env.DATABASE_URL;
if (!url) {
  console.error("DATABASE_URL is not set: point it at the control-plane PostgreSQL database.");
  process.exit(2);
}
const result = await migrateControlPlane(url);
console.log(
  result.applied.length
    ? `Applied ${result.applied.length} migration(s): ${result.applied.join(", ")}`
    : `Up to date (${result.alreadyApplied.length} migration(s) applied earlier).`,
);

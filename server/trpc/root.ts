import { createCallerFactory, router } from "./init";
import { auditRouter } from "./routers/audit";
import { databasesRouter } from "./routers/databases";
import { movementRouter } from "./routers/movement";
import { parityRouter } from "./routers/parity";
import { plansRouter } from "./routers/plans";
import { usersRouter } from "./routers/users";

export const appRouter = router({
  plans: plansRouter,
  databases: databasesRouter,
  movement: movementRouter,
  parity: parityRouter,
  audit: auditRouter,
  users: usersRouter,
});

export type AppRouter = typeof appRouter;
export const createCaller = createCallerFactory(appRouter);

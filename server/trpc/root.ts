import { createCallerFactory, router } from "./init";
import { auditRouter } from "./routers/audit";
import { breakerRouter } from "./routers/breaker";
import { cohortsRouter } from "./routers/cohorts";
import { databasesRouter } from "./routers/databases";
import { figuresRouter } from "./routers/figures";
import { movementRouter } from "./routers/movement";
import { parityRouter } from "./routers/parity";
import { plansRouter } from "./routers/plans";
import { routingRouter } from "./routers/routing";
import { usersRouter } from "./routers/users";

export const appRouter = router({
  plans: plansRouter,
  databases: databasesRouter,
  movement: movementRouter,
  parity: parityRouter,
  audit: auditRouter,
  users: usersRouter,
  figures: figuresRouter,
  routing: routingRouter,
  cohorts: cohortsRouter,
  breaker: breakerRouter,
});

export type AppRouter = typeof appRouter;
export const createCaller = createCallerFactory(appRouter);

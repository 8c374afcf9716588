// The engine's one door to the control-plane store (plans, movements, tasks, events, metrics,
// parity runs): nothing else under server/engine imports server/db. What the engine records there —
// its movement context, events, metrics and bookkeeping — lives in this folder beside it.
export { db } from "../../db";

// A data movement's start in a process of its own (`node --import tsx server/testing/start-process.ts
// <planId>`), environment inherited: tests kill it at a chosen step, as a crash or a deploy would.
import { systemActor } from "../services/actor";
import { startDataMovement } from "../services/movement/movement";

const planId = process.argv[2];
if (!planId) throw new Error("usage: start-process.ts <planId>");
console.log("starting");
await startDataMovement(systemActor("start-process", "engineer@test"), {
  planId,
  reason: "started by a process of its own",
  resetShards: true,
});
console.log("started");
process.exit(0);

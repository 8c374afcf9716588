// The garbage collector's young-generation pauses (scavenges) run on the thread that needs them,
// not shared out to V8's helper threads.
//
// Why: the CDC thread runs at nice -10 (thread-priority.ts), V8's helper threads at the worker's
// priority. A parallel scavenge hands its work to the helpers and waits for them, so on two cores
// full of other work the CDC thread, first in line for a core, stood waiting for helpers last in
// line. The bench's quiet lag test (`BENCH_WORKER_NODE_ARGS=--trace-gc`), the forward CDC thread's
// scavenges over its 30 s:
//   - beside another test run on the machine: parallel p50 8.2 ms, mean 15.3 ms, 37 of 55 over
//     5 ms (one of 97.6 ms, each a stop of the stream); alone p50 2.3 ms, mean 2.8 ms, 8 of 87;
//   - on a quiet machine: parallel p50 2.4 ms, mean 3.3 ms, 14 of 91 over 5 ms; alone p50 1.9 and
//     2.0 ms, 3 of 93 and 9 of 89 over 5 ms (two runs).
// A young generation holds a few MB that survive, which one thread copies in a millisecond or two;
// helpers pay off on many idle cores, not on two busy ones. (A young generation twice the size
// halved the scavenges but lengthened each: p50 3.4 ms, 12 of 47 over 5 ms. Not kept.)
//
// V8's flags are the process's: this holds for every thread of the worker (its main thread
// included). It is read at each scavenge, so setting it before the first CDC thread starts is
// enough; a process that never runs a CDC thread keeps V8's default.
import v8 from "node:v8";

let set = false;

export function scavengeOnCallingThread(): void {
  if (set) return;
  set = true;
  v8.setFlagsFromString("--no-parallel-scavenge");
}

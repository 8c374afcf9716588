// A counting gate: at most `slots` holders at once, the rest served in arrival order. The cutover
// scheduler puts its attempts' freezes behind one (cutover-scheduler.ts says why).

export interface Gate {
  /** Resolves once a slot is free, with the function that frees it (idempotent). */
  acquire(): Promise<() => void>;
  /** Holders now. */
  readonly held: number;
}

export function createGate(slots: number): Gate {
  if (!Number.isInteger(slots) || slots < 1) throw new Error(`a gate needs at least one slot (got ${slots})`);
  let held = 0;
  const waiting: (() => void)[] = [];
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else held -= 1;
  };
  return {
    get held() {
      return held;
    },
    async acquire() {
      if (held < slots) held += 1;
      // A freed slot passes straight to the next waiter (held stays as it is).
      else await new Promise<void>((resolve) => waiting.push(resolve));
      let freed = false;
      return () => {
        if (freed) return;
        freed = true;
        release();
      };
    },
  };
}

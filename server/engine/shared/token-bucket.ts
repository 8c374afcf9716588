// A token bucket in rows/s whose rate can change while it runs. take(n) waits until n tokens are
// there; a chunk bigger than the bucket is let through in debt, paid off before the next one, so
// the long-run rate holds for any chunk size.
// A debt is a wait in time, not in rows: when the rate drops (an operator throttles from 20,000 to
// 1,000 rows/s), the rows already let through at the old rate cost the time they cost at it, not
// twenty times more — otherwise a throttled copier sat out tens of seconds of debt before its next
// chunk, and the throttle looked like a stall.
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private rate: number,
    private readonly burstSeconds = 1,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = 0;
    this.last = now();
  }

  get ratePerSecond(): number {
    return this.rate;
  }

  setRate(rate: number): void {
    this.refill();
    const next = Math.max(1, rate);
    if (this.tokens < 0) this.tokens *= next / this.rate;
    this.rate = next;
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.rate * this.burstSeconds, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
  }

  /** Milliseconds to wait before `n` more rows may go (0 = go now); takes the tokens. */
  reserve(n: number): number {
    this.refill();
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.rate) * 1000;
  }

  async take(n: number, signal?: AbortSignal): Promise<void> {
    const wait = this.reserve(n);
    if (wait <= 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, wait);
      signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

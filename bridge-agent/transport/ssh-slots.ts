/**
 * A first-come first-served cap on SSH channels open at once. Beyond the cap callers wait in line;
 * they never fail for lack of a slot (only when their own AbortSignal fires, or on close()).
 */
type Waiter = { grant: (release: () => void) => void; fail: (err: unknown) => void };

export class ChannelSlots {
  private active = 0;
  private peakActive = 0;
  private readonly queue: Waiter[] = [];

  readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  get inUse(): number {
    return this.active;
  }
  get waiting(): number {
    return this.queue.length;
  }
  /** Most slots ever held at once. */
  get peak(): number {
    return this.peakActive;
  }

  /** Resolves with a release function (idempotent) once a slot is free. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.active < this.max) return Promise.resolve(this.take());
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(release);
        },
        fail: (err) => {
          signal?.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      this.queue.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Fails every waiter with `err` (the runner is closing). */
  failAll(err: unknown): void {
    for (const w of this.queue.splice(0)) w.fail(err);
  }

  private take(): () => void {
    this.active++;
    this.peakActive = Math.max(this.peakActive, this.active);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      // Hand the slot straight to the next in line, so a newcomer cannot overtake it.
      const next = this.queue.shift();
      if (next) next.grant(this.take());
    };
  }
}

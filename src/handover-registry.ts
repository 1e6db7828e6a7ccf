/**
 * What a stopped node leaves running for its next instance. A deploy stops a node and
 * starts a new instance with the same id; what the old one parks here (an embedded
 * broker, unsent events) the new one takes, instead of the old one tearing it down and
 * the new one starting over. What nobody takes within the grace period, or by the time
 * the flows have started (nodes/common/startup.ts watchHandovers), is released.
 */
export interface Handovers<T> {
  /**
   * Keeps `value` for the owner's next instance, for `graceMs` (else the registry's);
   * an earlier value of the same owner is released.
   */
  park(owner: string, value: T, graceMs?: number): void;
  /** What the owner's predecessor parked, if anything: the caller owns it from now on. */
  take(owner: string): T | undefined;
  /** Takes everything parked, for a caller that ends it its own way (a process exiting). */
  takeAll(): T[];
  /** Releases everything parked; resolves when every release has finished. */
  releaseAll(): Promise<void>;
}

interface Entry<T> {
  readonly value: T;
  readonly timer: NodeJS.Timeout;
}

/**
 * The registry of one kind, once per process (on globalThis, so every copy of this code
 * shares it). `release` ends a value nobody took; it must not throw or reject.
 */
export function handovers<T>(kind: string, release: (value: T) => void | Promise<void>, graceMs = 10_000): Handovers<T> {
  const key = Symbol.for(`traffic-policy.handovers.${kind}`);
  const g = globalThis as { [key: symbol]: Handovers<T> | undefined };
  const existing = g[key];
  if (existing !== undefined) return existing;
  const parked = new Map<string, Entry<T>>();
  const take = (owner: string): T | undefined => {
    const entry = parked.get(owner);
    if (entry === undefined) return undefined;
    parked.delete(owner);
    clearTimeout(entry.timer);
    return entry.value;
  };
  const takeAll = (): T[] => {
    const values: T[] = [];
    for (const owner of [...parked.keys()]) {
      const value = take(owner);
      if (value !== undefined) values.push(value);
    }
    return values;
  };
  const registry: Handovers<T> = {
    park(owner, value, ms = graceMs) {
      const earlier = take(owner);
      if (earlier !== undefined) void release(earlier);
      const timer = setTimeout(() => {
        const left = take(owner);
        if (left !== undefined) void release(left);
      }, ms);
      timer.unref();
      parked.set(owner, { value, timer });
    },
    take,
    takeAll,
    async releaseAll() {
      await Promise.all(takeAll().map((value) => release(value)));
    },
  };
  g[key] = registry;
  return registry;
}

/**
 * What a stopped node leaves running for its next instance. A deploy stops a node and
 * starts a new instance with the same id; what the old one parks here (an embedded
 * broker, unsent events) the new one takes, instead of the old one tearing it down and
 * the new one starting over. What nobody takes within the grace period, or by the time
 * the flows have started (see watchHandovers in ./startup), is released.
 */
export interface Handovers<T> {
  /** Keeps `value` for the owner's next instance; an earlier value of the same owner is released. */
  park(owner: string, value: T): void;
  /** What the owner's predecessor parked, if anything: the caller owns it from now on. */
  take(owner: string): T | undefined;
  /** Releases everything parked. */
  releaseAll(): void;
}

interface Entry<T> {
  readonly value: T;
  readonly timer: NodeJS.Timeout;
}

/**
 * The registry of one kind, once per process (on globalThis, so every copy of this code
 * shares it). `release` ends a value nobody took; it must not throw.
 */
export function handovers<T>(kind: string, release: (value: T) => void, graceMs = 10_000): Handovers<T> {
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
  const registry: Handovers<T> = {
    park(owner, value) {
      const earlier = take(owner);
      if (earlier !== undefined) release(earlier);
      const timer = setTimeout(() => {
        const left = take(owner);
        if (left !== undefined) release(left);
      }, graceMs);
      timer.unref();
      parked.set(owner, { value, timer });
    },
    take,
    releaseAll() {
      for (const owner of [...parked.keys()]) {
        const left = take(owner);
        if (left !== undefined) release(left);
      }
    },
  };
  g[key] = registry;
  return registry;
}

// Per-key admission of new connections: a token bucket (rate and burst) and a cap on
// connections open at once, over a bounded table of keys. The anchors: HAProxy stick
// tables (conn_rate, conn_cur) fail open when full, silently; Envoy's connection_limit
// has no per-key state at all. Here the table is an LRU of at most `maxKeys` keys and
// every eviction is counted, so an operator sees when it is too small.

import { TrafficError } from "../errors";

/** Why a connection was turned away. */
export type LimitReason = "rate" | "concurrency";

/** The limits of one limiter; every key gets its own bucket and count. */
export interface LimitSpec {
  /** New connections per second per key; 0: no rate limit. */
  readonly rate: number;
  /** Bucket size: connections a key may open at once after being quiet; at least 1 when `rate` > 0. */
  readonly burst: number;
  /** Connections one key may hold open at once; 0: no cap. */
  readonly maxConcurrent: number;
  /** Keys kept; the least recently seen is evicted beyond this. */
  readonly maxKeys: number;
  /** A burst of refusals ends after this long without one, in ms. */
  readonly quietMs: number;
  /** While a burst goes on, an update is reported this often, in ms. */
  readonly updateMs: number;
}

/** Defaults of everything but the limits themselves. */
export const LIMIT_DEFAULTS = { maxKeys: 100_000, quietMs: 1000, updateMs: 10_000 } as const;

/** The decision on one new connection. */
export type Admission =
  | {
      readonly allowed: true;
      readonly key: string;
      /** Call once when the connection ends: it stops counting toward the key's cap. Idempotent. */
      readonly release: () => void;
    }
  | { readonly allowed: false; readonly key: string; readonly reason: LimitReason };

/** A run of refusals of one key, reported at its start, every `updateMs` while it lasts, and at its end. */
export interface LimitBurst {
  readonly phase: "start" | "update" | "end";
  readonly key: string;
  /** Why the first refusal of the burst happened. */
  readonly reason: LimitReason;
  /** Refusals in this burst so far, per reason. */
  readonly rejected: { readonly rate: number; readonly concurrency: number };
  /** Connections of this key allowed while the burst lasted. */
  readonly allowed: number;
  /** How long ago (ms, at the report) the first refusal was. */
  readonly startedAgoMs: number;
  /** From the first refusal to the last one seen. */
  readonly durationMs: number;
  /** Set on `end` when the key was evicted from the table rather than going quiet. */
  readonly evicted?: true;
}

/** Counters of one limiter. */
export interface LimiterStats {
  readonly keys: number;
  readonly allowed: number;
  readonly rejected: number;
  readonly rejectedRate: number;
  readonly rejectedConcurrency: number;
  /** Keys dropped from the table to stay within `maxKeys`. */
  readonly evictions: number;
  /** Of those, keys that still had open connections: their count started again at 0. */
  readonly evictedBusy: number;
  /** Connections counted open now, over all keys in the table. */
  readonly open: number;
  /** Bursts going on now. */
  readonly bursts: number;
}

interface Burst {
  readonly reason: LimitReason;
  readonly startedAt: number;
  last: number;
  lastReport: number;
  rate: number;
  concurrency: number;
  allowed: number;
}

interface Entry {
  readonly key: string;
  tokens: number;
  at: number;
  open: number;
  burst: Burst | null;
  /** Neighbours in recency order (older, newer); null at the ends. */
  older: Entry | null;
  newer: Entry | null;
}

/** How many of the oldest keys eviction looks at for one with no open connection. */
const EVICTION_SCAN = 16;

/** Checks a limit spec, throwing ERR_LIMIT_CONFIG for the first bad value. */
export function checkLimitSpec(spec: LimitSpec): LimitSpec {
  const bad = (field: string, why: string): never => {
    throw new TrafficError("ERR_LIMIT_CONFIG", why, field);
  };
  if (!Number.isFinite(spec.rate) || spec.rate < 0) bad("rate", `must be a number ≥ 0, got ${String(spec.rate)}`);
  if (!Number.isFinite(spec.burst) || spec.burst < 0) bad("burst", `must be a number ≥ 0, got ${String(spec.burst)}`);
  if (spec.rate > 0 && spec.burst < 1) bad("burst", "must be at least 1 when a rate is set (a bucket smaller than one connection admits none)");
  if (!Number.isInteger(spec.maxConcurrent) || spec.maxConcurrent < 0) bad("maxConcurrent", `must be an integer ≥ 0, got ${String(spec.maxConcurrent)}`);
  if (spec.rate === 0 && spec.maxConcurrent === 0) bad("rate", "set a rate, a concurrency cap, or both");
  if (!Number.isInteger(spec.maxKeys) || spec.maxKeys < 1) bad("maxKeys", `must be an integer ≥ 1, got ${String(spec.maxKeys)}`);
  if (!Number.isFinite(spec.quietMs) || spec.quietMs <= 0) bad("quietMs", `must be a number > 0, got ${String(spec.quietMs)}`);
  if (!Number.isFinite(spec.updateMs) || spec.updateMs <= 0) bad("updateMs", `must be a number > 0, got ${String(spec.updateMs)}`);
  return spec;
}

/** Milliseconds from a monotonic clock: wall-clock steps must not refill or drain buckets. */
export function monotonicMs(): number {
  return performance.now();
}

/**
 * Admits or refuses new connections per key. Call `admit` for each new connection,
 * `release` (from the admission) when it ends, and `sweep` now and then (a few times a
 * second) so bursts that went quiet are reported as ended.
 */
export class Limiter {
  private readonly entries = new Map<string, Entry>();
  // Recency as a linked list rather than Map re-insertion: a Map that loses and gains a
  // key on every decision fills with deleted slots, and walking from its oldest key then
  // crosses all of them (measured 16× slower with 100,000 sources and 10,000 kept).
  private oldest: Entry | null = null;
  private newest: Entry | null = null;
  private readonly inBurst = new Set<Entry>();
  private readonly perMs: number;
  private allowedCount = 0;
  private rejectedRate = 0;
  private rejectedConcurrency = 0;
  private evictions = 0;
  private evictedBusy = 0;
  private openCount = 0;

  constructor(
    readonly spec: LimitSpec,
    private readonly onBurst: (burst: LimitBurst) => void = () => undefined,
    private readonly clock: () => number = monotonicMs,
  ) {
    checkLimitSpec(spec);
    this.perMs = spec.rate / 1000;
  }

  /** Decides on one new connection of `key`. */
  admit(key: string): Admission {
    const now = this.clock();
    const entry = this.entry(key, now);
    const { rate, burst, maxConcurrent } = this.spec;
    let reason: LimitReason | null = null;
    if (maxConcurrent > 0 && entry.open >= maxConcurrent) {
      reason = "concurrency";
    } else if (rate > 0) {
      entry.tokens = Math.min(burst, entry.tokens + (now - entry.at) * this.perMs);
      entry.at = now;
      // A refused connection costs no token: a flood at any speed still gets `rate` through.
      if (entry.tokens >= 1) entry.tokens -= 1;
      else reason = "rate";
    }
    if (reason !== null) {
      this.refuse(entry, reason, now);
      return { allowed: false, key, reason };
    }
    this.allowedCount++;
    if (entry.burst !== null) entry.burst.allowed++;
    if (maxConcurrent === 0) return { allowed: true, key, release: () => undefined };
    entry.open++;
    this.openCount++;
    let released = false;
    return {
      allowed: true,
      key,
      release: () => {
        if (released) return;
        released = true;
        // An evicted entry is no longer in the table: its count no longer matters.
        if (this.entries.get(key) === entry) {
          entry.open--;
          this.openCount--;
        }
      },
    };
  }

  /** Reports bursts that went quiet (`end`) and long ones (`update`); returns how many were reported. */
  sweep(): number {
    const now = this.clock();
    let reported = 0;
    for (const entry of this.inBurst) {
      const b = entry.burst!;
      if (now - b.last >= this.spec.quietMs) {
        this.endBurst(entry, false);
        reported++;
      } else if (now - b.lastReport >= this.spec.updateMs) {
        b.lastReport = now;
        this.report(entry, "update");
        reported++;
      }
    }
    return reported;
  }

  /** Ends every burst going on (a node closing), reporting each. */
  endAll(): void {
    for (const entry of [...this.inBurst]) this.endBurst(entry, false);
  }

  stats(): LimiterStats {
    return {
      keys: this.entries.size,
      allowed: this.allowedCount,
      rejected: this.rejectedRate + this.rejectedConcurrency,
      rejectedRate: this.rejectedRate,
      rejectedConcurrency: this.rejectedConcurrency,
      evictions: this.evictions,
      evictedBusy: this.evictedBusy,
      open: this.openCount,
      bursts: this.inBurst.size,
    };
  }

  /** Open connections counted for one key (0 for a key not in the table). */
  openOf(key: string): number {
    return this.entries.get(key)?.open ?? 0;
  }

  private entry(key: string, now: number): Entry {
    let entry = this.entries.get(key);
    if (entry !== undefined) {
      if (entry !== this.newest) {
        this.unlink(entry);
        this.append(entry);
      }
      return entry;
    }
    if (this.entries.size >= this.spec.maxKeys) this.evict();
    entry = { key, tokens: this.spec.burst, at: now, open: 0, burst: null, older: null, newer: null };
    this.entries.set(key, entry);
    this.append(entry);
    return entry;
  }

  private evict(): void {
    // Prefer an old key with nothing open: evicting a busy one forgets its open count,
    // which lets that key past its cap (counted in evictedBusy).
    let victim = this.oldest;
    if (victim === null) return;
    for (let entry: Entry | null = victim, seen = 0; entry !== null && seen < EVICTION_SCAN; entry = entry.newer, seen++) {
      if (entry.open === 0 && entry.burst === null) {
        victim = entry;
        break;
      }
    }
    this.entries.delete(victim.key);
    this.unlink(victim);
    this.evictions++;
    if (victim.open > 0) {
      this.evictedBusy++;
      this.openCount -= victim.open;
    }
    if (victim.burst !== null) this.endBurst(victim, true);
  }

  private append(entry: Entry): void {
    entry.older = this.newest;
    entry.newer = null;
    if (this.newest !== null) this.newest.newer = entry;
    else this.oldest = entry;
    this.newest = entry;
  }

  private unlink(entry: Entry): void {
    if (entry.older !== null) entry.older.newer = entry.newer;
    else this.oldest = entry.newer;
    if (entry.newer !== null) entry.newer.older = entry.older;
    else this.newest = entry.older;
    entry.older = null;
    entry.newer = null;
  }

  private refuse(entry: Entry, reason: LimitReason, now: number): void {
    if (reason === "rate") this.rejectedRate++;
    else this.rejectedConcurrency++;
    let b = entry.burst;
    if (b === null) {
      b = { reason, startedAt: now, last: now, lastReport: now, rate: 0, concurrency: 0, allowed: 0 };
      entry.burst = b;
      this.inBurst.add(entry);
      b[reason]++;
      this.report(entry, "start");
      return;
    }
    b.last = now;
    b[reason]++;
  }

  private endBurst(entry: Entry, evicted: boolean): void {
    this.report(entry, "end", evicted);
    entry.burst = null;
    this.inBurst.delete(entry);
  }

  private report(entry: Entry, phase: LimitBurst["phase"], evicted = false): void {
    const b = entry.burst!;
    this.onBurst({
      phase,
      key: entry.key,
      reason: b.reason,
      rejected: { rate: b.rate, concurrency: b.concurrency },
      allowed: b.allowed,
      startedAgoMs: Math.max(0, this.clock() - b.startedAt),
      durationMs: Math.round(b.last - b.startedAt),
      ...(evicted ? { evicted: true as const } : {}),
    });
  }
}

import { addressKey, Limiter, LIMIT_DEFAULTS } from "../src/limit";
import { BenchReport, BenchRow, compareOps, ratioRow } from "./harness";

/**
 * The anchor: a plain per-key token bucket in an unbounded Map, what a first version of
 * a limiter looks like. Ours adds the LRU order, the eviction scan, open counts and burst
 * tracking; this measures what that costs per decision.
 */
function plainBuckets(rate: number, burst: number): (key: string, now: number) => boolean {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return (key, now) => {
    let b = buckets.get(key);
    if (b === undefined) buckets.set(key, (b = { tokens: burst, at: now }));
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) * rate) / 1000);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  };
}

export async function run(): Promise<BenchReport> {
  const rows: BenchRow[] = [];
  const grouping = { v4Prefix: 32, v6Prefix: 64 };
  for (const sources of [100, 100_000]) {
    const keys = Array.from({ length: sources }, (_, i) => addressKey(`198.51.${(i >> 8) & 0xff}.${i & 0xff}`, grouping) ?? `k${i}`);
    let now = 0;
    const clock = (): number => now;
    // A table smaller than the sources where there are many: the eviction path runs.
    const ours = new Limiter({ ...LIMIT_DEFAULTS, rate: 100, burst: 100, maxConcurrent: 0, maxKeys: Math.min(sources, 10_000) }, () => undefined, clock);
    const plain = plainBuckets(100, 100);
    const r = compareOps({
      ours: (i) => {
        now += 0.001;
        return ours.admit(keys[i % sources]!).allowed;
      },
      "plain Map of buckets": (i) => {
        now += 0.001;
        return plain(keys[i % sources]!, now);
      },
    });
    rows.push(ratioRow(`admit, ${sources} sources${sources > 10_000 ? " (10k kept)" : ""}`, "decisions/s", r["ours"]!, "plain Map of buckets", r["plain Map of buckets"]!));
  }
  return { name: "limit: per-key admission", rows, notes: ["the anchor keeps every key forever; ours stays within maxKeys and counts evictions"] };
}

/** One measured line: ours against an anchor measured in the same run. */
export interface BenchRow {
  readonly case: string;
  readonly unit: string;
  readonly ours: number;
  readonly anchorName?: string;
  readonly anchor?: number;
  /** ours / anchor (higher is better), when an anchor ran. */
  readonly ratio?: number;
  /** The bar this row must reach, as a ratio or an absolute figure, when the issue sets one. */
  readonly bar?: string;
  readonly pass?: boolean;
}

export interface BenchReport {
  readonly name: string;
  readonly rows: readonly BenchRow[];
  readonly notes?: readonly string[];
}

/** A bench module: dist/bench/<name>.bench.js exporting run(). */
export interface BenchModule {
  run(): Promise<BenchReport>;
}

let sink: unknown;

/** Keeps results alive so the optimiser cannot drop the measured work. */
export function consume(value: unknown): void {
  sink = value;
}
export function sinkValue(): unknown {
  return sink;
}

/** Calls `fn` `n` times and returns the elapsed nanoseconds. */
function timeBatch(fn: (i: number) => unknown, n: number): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink = fn(i);
  return Number(process.hrtime.bigint() - start);
}

/**
 * Measures synchronous functions in alternating rounds (A B A B …), so that noise from
 * other processes on a shared machine hits every contender alike; reports the median
 * ops/s of each over `rounds` rounds of about `roundMs` each.
 */
export function compareOps(
  contenders: Record<string, (i: number) => unknown>,
  { rounds = 7, roundMs = 150 }: { rounds?: number; roundMs?: number } = {},
): Record<string, number> {
  const names = Object.keys(contenders);
  const batch: Record<string, number> = {};
  for (const name of names) {
    // Warm up and size a batch to roughly roundMs.
    let n = 1000;
    for (;;) {
      const ns = timeBatch(contenders[name]!, n);
      if (ns > 20e6 || n >= 1 << 26) {
        batch[name] = Math.max(1000, Math.round((n * roundMs * 1e6) / ns));
        break;
      }
      n *= 4;
    }
  }
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    for (const name of names) {
      const n = batch[name]!;
      samples[name]!.push((n * 1e9) / timeBatch(contenders[name]!, n));
    }
  }
  return Object.fromEntries(names.map((n) => [n, median(samples[n]!)]));
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** A row comparing ours with an anchor; `barRatio` is the ratio the issue demands, if any. */
export function ratioRow(caseName: string, unit: string, ours: number, anchorName: string, anchor: number, barRatio?: number): BenchRow {
  const ratio = ours / anchor;
  return { case: caseName, unit, ours, anchorName, anchor, ratio, ...(barRatio === undefined ? {} : { bar: `≥ ${barRatio}× ${anchorName}`, pass: ratio >= barRatio }) };
}

/**
 * A row where lower is better (CPU per connection, added latency): `ratio` is ours /
 * anchor and `barRatio` the most the issue allows. An anchor at or below zero (HAProxy
 * adding no latency within the noise) leaves no room: ours must not be above zero either.
 */
export function ceilingRow(caseName: string, unit: string, ours: number, anchorName: string, anchor: number, barRatio?: number): BenchRow {
  const within = ours <= Math.max(anchor, 0) * (barRatio ?? 1);
  return { case: caseName, unit, ours, anchorName, anchor, ratio: ours / anchor, ...(barRatio === undefined ? {} : { bar: `≤ ${barRatio}× ${anchorName}`, pass: within }) };
}

/** Formats a number of operations per second (or a small figure such as µs) compactly. */
export function formatRate(n: number): string {
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (Math.abs(n) >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(1);
}

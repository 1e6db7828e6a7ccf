import { Counter, Registry } from "prom-client";
import type { ForwardEnd } from "../src/events/types";
import { TrafficMetrics } from "../src/observe/metrics";
import { BenchReport, median } from "./harness";

const SERIES = 10_000;
/** The scrape must take under 50 ms at this size. */
const BAR_MS = 50;
const ENDS: ForwardEnd[] = ["closed", "rejected", "client-reset", "upstream-reset", "idle-timeout", "connect-failed", "loop", "no-target", "stopped", "error"];

/** Sample lines (not comments) of an exposition. */
const sampleLines = (text: string): number => text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).length;

/**
 * Our registry with at least SERIES sample lines, spread as a large flow would, each metric
 * under its label-set cap: 300 forward nodes (every end, bytes both ways, the duration
 * histogram), 20 classify nodes with 50 protocol and rule pairs each, and ip filter
 * verdicts up to the count.
 */
async function fedRegistry(): Promise<TrafficMetrics> {
  const m = new TrafficMetrics();
  for (let n = 0; n < 300; n++) {
    for (const end of ENDS) m.forwardSummary(`fw${n}`, { end, bytesToUpstream: 100 + n, bytesToClient: 1000 + n, durationMs: n * 37 });
  }
  for (let n = 0; n < 20; n++) {
    for (let r = 0; r < 50; r++) m.classification(`cls${n}`, ["tls", "http1", "http2", "ssh", "unknown"][r % 5]!, `rule-${r}`);
  }
  let have = sampleLines(await m.text());
  for (let i = 0; have < SERIES; i++, have++) m.ipFilterVerdict(`ipf${i % 20}`, `rule-${Math.floor(i / 20)}`, i % 2 === 0 ? "allow" : "deny");
  return m;
}

/**
 * Median milliseconds of `scrape` over `runs` runs, after warm-up: CPU time of this process
 * (what the scrape costs; on a shared 2-core machine wall time also counts other
 * processes' turns) and wall time.
 */
async function timeScrape(scrape: () => Promise<string>, runs = 30): Promise<{ ms: number; wallMs: number; lines: number }> {
  let lines = 0;
  for (let i = 0; i < 3; i++) lines = sampleLines(await scrape());
  const cpu: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await scrape();
    wall.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { ms: median(cpu), wallMs: median(wall), lines };
}

export async function run(): Promise<BenchReport> {
  const ours = await fedRegistry();
  // Anchor: prom-client itself, one counter holding the same number of series.
  const plain = new Registry();
  const counter = new Counter({ name: "anchor_total", help: "anchor", labelNames: ["node", "rule"], registers: [plain] });
  for (let i = 0; i < SERIES; i++) counter.inc({ node: `n${i % 50}`, rule: `r${i}` });
  const a = await timeScrape(() => ours.text());
  const b = await timeScrape(() => plain.metrics());
  return {
    name: "Prometheus scrape (text format)",
    rows: [
      {
        case: `scrape of ${a.lines.toLocaleString("en-US")} series`,
        unit: "scrapes/s",
        ours: 1000 / a.ms,
        anchorName: "prom-client, one counter",
        anchor: 1000 / b.ms,
        ratio: b.ms / a.ms,
        bar: `< ${BAR_MS} ms`,
        pass: a.ms < BAR_MS,
      },
    ],
    notes: [
      `median scrape ${a.ms.toFixed(1)} ms CPU, ${a.wallMs.toFixed(1)} ms wall (bar ${BAR_MS} ms on CPU time); prom-client with ${b.lines.toLocaleString("en-US")} series of one counter ${b.ms.toFixed(1)} ms CPU, ${b.wallMs.toFixed(1)} ms wall`,
    ],
  };
}

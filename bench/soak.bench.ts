// `npm run bench soak`: a real Node-RED gateway (test/rigs/load-rig.ts: transparent in with
// managed TPROXY rules → classify → forward, a flow source in eBPF mode, mqtt events into
// the embedded traffic broker, a subscriber counting what arrives) under a fixed
// connection rate for TRAFFIC_SOAK_SECONDS (default 600). Node-RED's fds, BPF objects,
// threads, RSS and heap (after a full collection) are sampled every TRAFFIC_SOAK_SAMPLE_SECONDS (default 10) and the
// growth between the idle state after the warm-up and the idle state after the soak is
// held against stated bounds; events published, dropped, received and lost are counted.
// Only run when named (bench/index.ts): it takes minutes and needs root.
import { loadFlowAddon } from "../src/flow/native";
import type { BenchReport, BenchRow } from "./harness";
import { LoadRig, settle, type LoadResult } from "../test/rigs/load-rig";
import { describeSample, type ProcessSample } from "../test/rigs/process-stats";

/** RSS growth allowed after the warm-up (MiB): allocator and code caches settle within it. */
const RSS_BOUND_MIB = 64;
/** Heap growth allowed after a full collection (MiB): 1 KiB kept per connection would pass it within ten minutes at the default rate. */
const HEAP_BOUND_MIB = 16;
const mib = (bytes: number): number => bytes / 1048576;

function envNumber(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

interface Sample {
  t: number;
  proc: ProcessSample;
  heapUsed: number;
  connections: number;
  eventsReceived: number;
}

/** Events of the flow (not the publisher's own stats, not the agent's retained status). */
function flowEvents(byType: Record<string, number>): number {
  return Object.entries(byType)
    .filter(([type]) => type !== "mqtt-stats" && type !== "agent-status")
    .reduce((n, [, count]) => n + count, 0);
}

interface PublisherReading {
  /** Messages the broker acknowledged, by the newest stats event. */
  sent: number;
  dropped: number;
  /** Stats events and flow events the subscriber had received when that stats event came. */
  statsEvents: number;
  flowEvents: number;
}

/**
 * Waits for the publisher's next stats event and reads the subscriber's counts at once:
 * everything the broker acknowledged before that event reached the subscriber before it.
 * Two readings bracket the soak; the flow source sees other namespaces' port-80
 * connections too, so absolute counts would include events from before the subscription.
 */
async function publisherReading(rig: LoadRig): Promise<PublisherReading> {
  const before = (await rig.mqttCounts()).byType["mqtt-stats"] ?? 0;
  const end = Date.now() + 20_000;
  for (;;) {
    const counts = await rig.mqttCounts();
    const statsEvents = counts.byType["mqtt-stats"] ?? 0;
    const stats = Object.values(counts.stats)[0];
    if (statsEvents > before && stats !== undefined) return { sent: stats.sent, dropped: stats.dropped, statsEvents, flowEvents: flowEvents(counts.byType) };
    if (Date.now() > end) throw new Error("no mqtt-stats event from the publisher within 20 s");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  const num = points.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0);
  const den = points.reduce((s, p) => s + (p[0] - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

function row(caseName: string, unit: string, ours: number, bar?: string, pass?: boolean): BenchRow {
  return { case: caseName, unit, ours, ...(bar === undefined ? {} : { bar, pass: pass! }) };
}

export async function run(): Promise<BenchReport> {
  const seconds = envNumber("TRAFFIC_SOAK_SECONDS", 600);
  const rate = envNumber("TRAFFIC_SOAK_RATE", 50);
  const every = envNumber("TRAFFIC_SOAK_SAMPLE_SECONDS", 10);
  const warmSeconds = Math.min(60, Math.max(10, Math.round(seconds / 10)));
  if (process.getuid?.() !== 0) return { name: "soak", rows: [], notes: ["not run: the soak needs root (namespaces, TPROXY rules, eBPF)"] };
  let ebpf = false;
  try {
    ebpf = loadFlowAddon().ebpfBuilt;
  } catch {
    ebpf = false;
  }
  const flow = { mode: "tproxy" as const, events: true, statsInterval: 5, flowSourceMode: ebpf ? ("ebpf" as const) : ("auto" as const) };
  const rig = new LoadRig({ flow: { version: "a", ...flow }, nofile: 20_000, bodyBytes: 4096 });
  const onSignal = (): void => {
    void rig.close().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await rig.start();
    await rig.subscribe();
    console.log(`soak: ${seconds} s at ${rate} connections/s (warm-up ${warmSeconds} s), sampling every ${every} s; flow source ${flow.flowSourceMode}`);

    // Warm-up, then the idle baseline.
    const warm = await rig.runClient({ mode: "rate", rate, durationMs: warmSeconds * 1000, timeoutMs: 15_000 }, (warmSeconds + 60) * 1000);
    await new Promise((r) => setTimeout(r, 3000));
    const first = await publisherReading(rig);
    const baseHeap = (await rig.memory()).heapUsed;
    const baseline = rig.sample();
    const baseState = rig.gatewayState();
    console.log(`soak: baseline ${describeSample(baseline)} heap ${mib(baseHeap).toFixed(1)} MiB after gc`);

    // The soak: fixed rate, samples every `every` seconds.
    const soakMs = Math.max(1, seconds - warmSeconds) * 1000;
    const client = rig.startClient({ mode: "rate", rate, durationMs: soakMs, timeoutMs: 15_000, maxInFlight: 2000 });
    const samples: Sample[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < soakMs) {
      await new Promise((r) => setTimeout(r, Math.min(every * 1000, soakMs - (Date.now() - t0) + 10)));
      const { heapUsed } = await rig.memory();
      const proc = rig.sample();
      const progress = client.lines.filter((l) => l["event"] === "progress").pop() as unknown as LoadResult | undefined;
      client.lines.splice(0, client.lines.length - 1);
      const counts = await rig.mqttCounts();
      const s: Sample = { t: Math.round((Date.now() - t0) / 1000), proc, heapUsed, connections: progress?.started ?? 0, eventsReceived: flowEvents(counts.byType) };
      samples.push(s);
      console.log(`soak: t=${s.t}s ${describeSample(proc)} heap ${mib(heapUsed).toFixed(1)} MiB, ${s.connections} connections, ${s.eventsReceived} events received`);
    }
    const load = (await client.event("done", 60_000)) as unknown as LoadResult;
    await client.stop();

    // Idle again: what is held now against the baseline.
    let after = rig.sample();
    await settle(() => {
      after = rig.sample();
      return after.fds <= baseline.fds && after.threads <= baseline.threads;
    }, 15_000);
    const afterHeap = (await rig.memory()).heapUsed;
    after = rig.sample();
    const afterState = rig.gatewayState();
    const last = await publisherReading(rig);
    // Stats events are published too: the ones acknowledged between the two readings are not flow events.
    const published = last.sent - first.sent - (last.statsEvents - first.statsEvents);
    const received = last.flowEvents - first.flowEvents;
    const lost = published - received;
    const dropped = last.dropped - first.dropped;
    const counts = await rig.mqttCounts();

    const ok = (load.outcomes["ok"] ?? 0) + (warm.outcomes["ok"] ?? 0);
    const total = load.started + warm.started;
    const grow = (a: number, b: number): number => a - b;
    const rssPoints = samples.map((s) => [s.t / 60, s.proc.rssKiB / 1024] as [number, number]);
    const rssGrowth = (after.rssKiB - baseline.rssKiB) / 1024;
    const heapGrowth = mib(afterHeap - baseHeap);
    const heapPoints = samples.map((s) => [s.t / 60, mib(s.heapUsed)] as [number, number]);
    const rows: BenchRow[] = [
      row("connections at a fixed rate", "conn/s", load.started / (load.ms / 1000)),
      row("connections with every byte right", "conns", ok, `all ${total}`, ok === total),
      row("fd growth (idle after vs idle before)", "fds", grow(after.fds, baseline.fds), "+0", after.fds <= baseline.fds),
      row("thread growth", "threads", grow(after.threads, baseline.threads), "+0", after.threads <= baseline.threads),
      row("BPF programs growth (own fds)", "progs", grow(after.bpfProgs.length, baseline.bpfProgs.length), "+0", after.bpfProgs.length <= baseline.bpfProgs.length),
      row("BPF links growth (own fds)", "links", grow(after.bpfLinks.length, baseline.bpfLinks.length), "+0", after.bpfLinks.length <= baseline.bpfLinks.length),
      row("BPF maps growth (own fds)", "maps", grow(after.bpfMaps.length, baseline.bpfMaps.length), "+0", after.bpfMaps.length <= baseline.bpfMaps.length),
      row("RSS growth after warm-up", "MiB", rssGrowth, `< ${RSS_BOUND_MIB} MiB`, rssGrowth < RSS_BOUND_MIB),
      row("RSS trend during the soak", "MiB/min", slope(rssPoints)),
      row("heap growth after gc", "MiB", heapGrowth, `< ${HEAP_BOUND_MIB} MiB`, heapGrowth < HEAP_BOUND_MIB),
      row("heap trend after gc during the soak", "MiB/min", slope(heapPoints)),
      row("events published (acknowledged by the broker)", "events", published),
      row("events dropped by the publisher", "events", dropped, "0", dropped === 0),
      row("events received by the subscriber", "events", received),
      row("events lost (published, not received)", "events", lost, "0", lost <= 0),
    ];
    const notes = [
      `${seconds} s: warm-up ${warmSeconds} s at ${rate}/s, then ${Math.round(soakMs / 1000)} s; ${total} connections; the soak's: ${JSON.stringify(load.outcomes)} (${load.proxied} through the proxy)`,
      `growth: fds ${after.fds - baseline.fds}, threads ${after.threads - baseline.threads}, rss ${rssGrowth.toFixed(1)} MiB, heap after gc ${heapGrowth.toFixed(2)} MiB`,
      `baseline ${describeSample(baseline)} heap ${mib(baseHeap).toFixed(1)} MiB after gc`,
      `after    ${describeSample(after)} heap ${mib(afterHeap).toFixed(1)} MiB after gc`,
      `gateway kernel state unchanged: ${JSON.stringify(afterState) === JSON.stringify(baseState)} (ports ${afterState.listening.join(" ")}; nft ${afterState.nftTables.length} table)`,
      `events by type: ${JSON.stringify(counts.byType)}; the flow source sees every port-80 connection on the host, other namespaces' too`,
      `samples (t s: fds/threads/rss MiB/heap MiB): ${samples.map((s) => `${s.t}: ${s.proc.fds}/${s.proc.threads}/${(s.proc.rssKiB / 1024).toFixed(0)}/${mib(s.heapUsed).toFixed(0)}`).join(", ")}`,
    ];
    return { name: "soak", rows, notes };
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await rig.close();
  }
}

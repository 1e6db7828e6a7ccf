import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { FlowSource } from "../src/flow/source";
import type { FlowEvent } from "../src/events/types";
import { BenchReport, BenchRow, median, ratioRow } from "./harness";
import { loadgenBinary, runLoadClient, startLoadServer, type LoadResult } from "../test/rigs/loadgen";
import { startCountingRed, type CountingRed, type FlowDelivery, type FlowTally } from "../test/rigs/flow-red";
import { sampleProcess } from "../test/rigs/process-stats";
import { attachFloor, floorBuild, type FloorParts } from "./flow-floor";
import { cgroupV2Root } from "../src/flow/features";
import { udpCaptureRows } from "./flow-udp";

// Bounded load from the native generator (test/rigs/loadgen.c): short connections on
// loopback, each phase PHASE_S seconds, unpaced (as fast as CONCURRENCY in flight allow).
const PHASE_S = 3;
const ROUNDS = 3;
const CONCURRENCY = 256;
// The bar: 20,000 connections/s for 10 s with zero lost events.
const BAR_RATE = 20_000;
const BAR_S = 10;

interface Phase {
  readonly load: LoadResult;
  /** CPU of the generator's client and server processes (ms). */
  readonly loadCpuMs: number;
}

/** What one phase's load did: every client socket closes once, every accepted one too. */
interface PhaseCounts {
  readonly attempted: number;
  readonly accepted: number;
}

/** Something attached for one phase; `detach` gets the phase's counts, to wait for its closes. */
type Detach = (counts: PhaseCounts) => Promise<void>;
type Attach = (port: number) => Detach | Promise<Detach>;

/** One phase against a fresh accept-and-close server (so its CPU time is this phase's). */
async function phase(rate: number, seconds: number, attach?: Attach): Promise<Phase & { accepted: number }> {
  const server = await startLoadServer();
  let detach: Detach | undefined;
  let counts: PhaseCounts = { attempted: 0, accepted: 0 };
  try {
    detach = await attach?.(server.port);
    const load = await runLoadClient(server.port, rate, seconds, CONCURRENCY);
    const accepted = await server.stop();
    counts = { attempted: load.attempted, accepted };
    return { load, accepted, loadCpuMs: load.cpuMs + server.cpuMs() };
  } finally {
    await detach?.(counts);
    await server.stop().catch(() => 0);
  }
}

interface Counted {
  closes: number;
  kernelLost: number;
  jsLost: number;
  skipped: number;
  closeAtDestroy: number;
  nodeCpuMs: number;
}

/**
 * Attaches a flow source (close events of the phase's server port) and counts what it
 * delivers: both ends of every connection, or only the server's (what `tcplife -L` reports).
 */
function counting(into: Counted, side?: "server"): (port: number) => Detach {
  return (port) => {
    let closes = 0;
    const source = new FlowSource({ mode: "ebpf", ports: [port], ...(side !== undefined ? { side } : {}), open: false, close: true, reportExisting: false, lostCheckMs: 250 }, (events: FlowEvent[]) => {
      for (const e of events) if (e.type === "flow-close") closes++;
    });
    source.start();
    const cpu = process.cpuUsage();
    return async ({ attempted, accepted }) => {
      // Each client socket closes once (connected, refused or cut at exit); each accepted one too.
      const expected = side === "server" ? accepted : attempted + accepted;
      // The last closes are still on their way (the reader polls every 50 ms): up to 3 s.
      const end = Date.now() + 3000;
      while (closes < expected && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      into.closes += closes;
      const used = process.cpuUsage(cpu);
      into.nodeCpuMs += (used.user + used.system) / 1000;
      const s = source.stats();
      into.kernelLost += s.kernelLost;
      into.jsLost += s.jsLost;
      into.skipped += s.kernelSkipped;
      into.closeAtDestroy += s.closeAtDestroy;
      source.stop();
    };
  };
}

/** CPU time (user + system, ms) a process used so far, from /proc (USER_HZ is 100 on Linux). */
function processCpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

interface RedPhase {
  readonly load: LoadResult;
  readonly accepted: number;
  readonly tally: FlowTally;
  /** CPU Node-RED used during the load and the delivery of its closes (ms). */
  readonly nodeRedCpuMs: number;
}

/**
 * One run into the Node-RED flow (test/rigs/flow-red.ts: flow source, eBPF, closes of the
 * generator's port → a function node counting closes per side) with the generator paced
 * against its own server, which is stopped by pid also on failure.
 */
async function nodeRedPhase(red: CountingRed, rate: number, seconds: number, delivery: FlowDelivery): Promise<RedPhase> {
  const server = await startLoadServer();
  try {
    await red.deploy(server.port, delivery);
    const cpu = processCpuMs(red.pid);
    const load = await runLoadClient(server.port, rate, seconds, CONCURRENCY);
    const accepted = await server.stop();
    // Each client socket closes once (connected, refused or cut at exit); each accepted one too.
    const tally = await red.settledTally(load.attempted, accepted);
    const nodeRedCpuMs = processCpuMs(red.pid) - cpu;
    await red.clear();
    return { load, accepted, tally, nodeRedCpuMs };
  } finally {
    await server.stop().catch(() => 0);
  }
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGINT");
  });
}

/** tcplife (libbpf-tools) attached to a port; null when it cannot run here. */
function tcplifeAttach(): Attach | null {
  const tool = "/usr/sbin/tcplife";
  if (!fs.existsSync(tool) || process.getuid?.() !== 0) return null;
  return (port) => {
    const tracing = "/sys/kernel/tracing";
    const mounted = fs.readFileSync("/proc/self/mounts", "utf8").includes(` ${tracing} tracefs`);
    if (!mounted) spawnSync("mount", ["-t", "tracefs", "nodev", tracing]);
    // Output goes to /dev/null: tcplife prints every connection, as it would for a user.
    const child = spawn(tool, ["-L", String(port)], { stdio: ["ignore", "ignore", "ignore"] });
    spawnSync("sleep", ["1"]); // attach time
    return async () => {
      await stop(child);
      if (!mounted) spawnSync("umount", [tracing]);
    };
  };
}

/** Ids of the BPF programs this process holds open (the running flow source's). */
function ownProgramIds(): Set<number> {
  return new Set(sampleProcess(process.pid).bpfProgs);
}

/** Run time (ns) of this process's BPF programs, from the kernel's per-program stats. */
function bpfRunTimeNs(ids: ReadonlySet<number>): number {
  const r = spawnSync("bpftool", ["-j", "prog", "show"], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) return NaN;
  const progs = JSON.parse(r.stdout) as Array<{ id: number; run_time_ns?: number }>;
  return progs.filter((p) => ids.has(p.id)).reduce((sum, p) => sum + (p.run_time_ns ?? 0), 0);
}

/** A row with the bar "every close delivered, none lost" for what a source counted. */
function deliveredRow(caseName: string, c: Counted, anchorName: string, expected: number): BenchRow {
  return {
    case: caseName,
    unit: "events",
    ours: c.closes,
    anchorName,
    anchor: expected,
    ratio: expected === 0 ? 0 : c.closes / expected,
    bar: "all delivered, 0 lost",
    pass: c.closes === expected && c.kernelLost === 0 && c.jsLost === 0,
  };
}

/** Microseconds per connection for `ms` of CPU over `connections`. */
function perConnUs(ms: number, connections: number): number {
  return connections > 0 ? (ms * 1000) / connections : NaN;
}

export async function run(): Promise<BenchReport> {
  loadgenBinary();
  const rates: Record<"detached" | "attached" | "server" | "tcplife" | "floorTracepoints" | "floor" | "floorStorage" | "floorHash", number[]> = {
    detached: [],
    attached: [],
    server: [],
    tcplife: [],
    floorTracepoints: [],
    floor: [],
    floorStorage: [],
    floorHash: [],
  };
  // The floor: the design's hooks with empty programs, then with the per-socket storage.
  const cgroupRoot = cgroupV2Root();
  let floorFailure = "";
  try {
    if (cgroupRoot === null) throw new Error("cgroup v2 is not mounted");
    floorBuild();
  } catch (err) {
    floorFailure = (err as Error).message.split("\n")[0]!;
  }
  const floorAttach =
    (parts: FloorParts): Attach =>
    () =>
      attachFloor(parts, cgroupRoot!);
  const serverSide: Counted = { closes: 0, kernelLost: 0, jsLost: 0, skipped: 0, closeAtDestroy: 0, nodeCpuMs: 0 };
  let serverExpected = 0;
  const counted: Counted = { closes: 0, kernelLost: 0, jsLost: 0, skipped: 0, closeAtDestroy: 0, nodeCpuMs: 0 };
  let expectedCloses = 0;
  let attachedConnections = 0;
  let attachedLoadCpuMs = 0;
  const tcplife = tcplifeAttach();
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the phases so noise from other processes hits each alike.
    rates.detached.push((await phase(0, PHASE_S)).load.rate);
    const a = await phase(0, PHASE_S, counting(counted));
    rates.attached.push(a.load.rate);
    expectedCloses += a.load.attempted + a.accepted;
    attachedConnections += a.load.connected;
    attachedLoadCpuMs += a.loadCpuMs;
    const srv = await phase(0, PHASE_S, counting(serverSide, "server"));
    rates.server.push(srv.load.rate);
    serverExpected += srv.accepted;
    if (tcplife !== null) rates.tcplife.push((await phase(0, PHASE_S, tcplife)).load.rate);
    if (floorFailure === "") {
      rates.floorTracepoints.push((await phase(0, PHASE_S, floorAttach({ sockops: false, storage: "none" }))).load.rate);
      rates.floor.push((await phase(0, PHASE_S, floorAttach({ sockops: true, storage: "none" }))).load.rate);
      rates.floorStorage.push((await phase(0, PHASE_S, floorAttach({ sockops: true, storage: "sk_storage" }))).load.rate);
      rates.floorHash.push((await phase(0, PHASE_S, floorAttach({ sockops: true, storage: "hash" }))).load.rate);
    }
  }

  // Per-connection CPU: this package's BPF programs (kernel run-time stats switched on for
  // one phase only) and the Node side (reader thread, decode, delivery), against the load's
  // own CPU (client and server processes, the kernel's TCP work they do included).
  const sysctl = "/proc/sys/kernel/bpf_stats_enabled";
  const statsWas = fs.readFileSync(sysctl, "utf8").trim();
  const cost: Counted = { closes: 0, kernelLost: 0, jsLost: 0, skipped: 0, closeAtDestroy: 0, nodeCpuMs: 0 };
  let bpfNs = NaN;
  let costPhase: Phase | null = null;
  try {
    fs.writeFileSync(sysctl, "1");
    costPhase = await phase(0, PHASE_S, (port) => {
      const detach = counting(cost)(port);
      const ids = ownProgramIds();
      const start = bpfRunTimeNs(ids);
      return async (counts) => {
        bpfNs = bpfRunTimeNs(ids) - start;
        await detach(counts);
      };
    });
  } finally {
    fs.writeFileSync(sysctl, statsWas);
  }

  // The bar: 20,000 connections/s paced, for 10 s, every close of both ends delivered.
  const bar: Counted = { closes: 0, kernelLost: 0, jsLost: 0, skipped: 0, closeAtDestroy: 0, nodeCpuMs: 0 };
  const b = await phase(BAR_RATE, BAR_S, counting(bar));
  const barExpected = b.load.attempted + b.accepted;

  // The same bar with the closes delivered into a Node-RED flow, batched (the node's
  // setting for high rates); then, for comparison, a short run with one message per event.
  let red: RedPhase | null = null;
  let perEvent: RedPhase | null = null;
  let redFailure = "";
  try {
    const runtime = await startCountingRed();
    try {
      red = await nodeRedPhase(runtime, BAR_RATE, BAR_S, { delivery: "batch", batchMs: 100 });
      perEvent = await nodeRedPhase(runtime, BAR_RATE, PHASE_S, { delivery: "event" });
    } finally {
      await runtime.stop();
    }
  } catch (err) {
    redFailure = (err as Error).message.split("\n")[0]!;
  }

  const detached = median(rates.detached);
  const attached = median(rates.attached);
  const conns = costPhase?.load.connected ?? 0;
  const perConn = (ms: number): number => perConnUs(ms, conns);
  const bpfUs = perConn(bpfNs / 1e6);
  const nodeUs = perConn(cost.nodeCpuMs);
  const loadUs = perConn(costPhase?.loadCpuMs ?? NaN);
  const server = median(rates.server);
  const rows: BenchRow[] = [
    { case: "short connections, no capture", unit: "conn/s", ours: detached },
    { ...ratioRow("short connections, flow source attached (closes of both ends)", "conn/s", attached, "detached", detached, 0.95), bar: "≥ 0.95× detached (slowdown ≤ 5%)" },
    { ...ratioRow("short connections, flow source attached (server closes, as tcplife -L)", "conn/s", server, "detached", detached, 0.95), bar: "≥ 0.95× detached (slowdown ≤ 5%)" },
  ];
  if (rates.tcplife.length > 0) {
    const tl = median(rates.tcplife);
    rows.push(
      { case: "tcplife -L attached (server closes)", unit: "conn/s", ours: tl, anchorName: "detached", anchor: detached, ratio: tl / detached },
      { ...ratioRow("flow source vs tcplife, same events (server closes)", "conn/s", server, "tcplife", tl, 1), bar: "≥ 1.0× tcplife" },
      // Twice the events of tcplife's: for reference, not a bar.
      ratioRow("flow source (both ends) vs tcplife (server side)", "conn/s", attached, "tcplife", tl),
    );
  }
  rows.push(deliveredRow("server-side phases: server closes delivered / accepted", serverSide, "accepted", serverExpected));
  if (rates.floor.length > 0) {
    rows.push(
      ratioRow("floor: empty tracepoint programs (2 × inet_sock_set_state, tcp_destroy_sock)", "conn/s", median(rates.floorTracepoints), "detached", detached),
      ratioRow("floor: the same + an empty sock_ops program on the cgroup v2 root", "conn/s", median(rates.floor), "detached", detached),
      ratioRow("floor: the same + per-socket sk_storage created and freed", "conn/s", median(rates.floorStorage), "detached", detached),
      ratioRow("floor: the same + per-socket state in a preallocated hash by socket cookie", "conn/s", median(rates.floorHash), "detached", detached),
    );
  }
  rows.push(
    { case: "capture CPU per connection: BPF programs", unit: "µs", ours: bpfUs },
    { case: "capture CPU per connection: Node (reader, decode, delivery)", unit: "µs", ours: nodeUs },
    { case: "load CPU per connection (client + server processes)", unit: "µs", ours: loadUs, anchorName: "capture/load", anchor: bpfUs + nodeUs, ratio: (bpfUs + nodeUs) / loadUs },
    deliveredRow("close events delivered / expected (unpaced phases)", counted, "expected", expectedCloses),
    { case: `paced ${BAR_RATE} conn/s for ${BAR_S} s: achieved`, unit: "conn/s", ours: b.load.rate, bar: `≥ ${BAR_RATE} conn/s`, pass: b.load.rate >= BAR_RATE * 0.99 },
    deliveredRow(`paced ${BAR_RATE} conn/s for ${BAR_S} s: closes delivered / expected`, bar, "expected", barExpected),
  );
  const notes: string[] = [];
  if (red !== null) {
    const t = red.tally;
    const expected = red.load.attempted + red.accepted;
    const delivered = t.client + t.server;
    const lost = t.lostKernel + t.lostJs;
    const rateMet = red.load.rate >= BAR_RATE * 0.99;
    const allDelivered = delivered === expected && t.mismatched === 0;
    rows.push(
      { case: `Node-RED flow, paced ${BAR_RATE} conn/s for ${BAR_S} s: achieved`, unit: "conn/s", ours: red.load.rate, bar: `≥ ${BAR_RATE} conn/s`, pass: rateMet },
      {
        case: "Node-RED flow: closes delivered into the flow / expected (client + server)",
        unit: "events",
        ours: delivered,
        anchorName: "expected",
        anchor: expected,
        ratio: expected === 0 ? 0 : delivered / expected,
        bar: "all delivered",
        pass: allDelivered,
      },
      { case: "Node-RED flow: lost events (kernel + JS)", unit: "events", ours: lost, bar: "0", pass: lost === 0 },
      {
        case: `bar: zero lost at ≥ ${BAR_RATE} conn/s for ${BAR_S} s, closes delivered into a Node-RED flow`,
        unit: "conn/s",
        ours: red.load.rate,
        bar: `≥ ${BAR_RATE} conn/s, every close in the flow, 0 lost`,
        pass: rateMet && allDelivered && lost === 0,
      },
    );
    if (perEvent !== null) {
      const p = perEvent.tally;
      const pExpected = perEvent.load.attempted + perEvent.accepted;
      rows.push({
        case: `Node-RED flow, one message per event, paced ${BAR_RATE} conn/s for ${PHASE_S} s: closes delivered / expected`,
        unit: "events",
        ours: p.client + p.server,
        anchorName: "expected",
        anchor: pExpected,
        ratio: pExpected === 0 ? 0 : (p.client + p.server) / pExpected,
      });
      notes.push(
        `Node-RED flow, one message per event: ${perEvent.load.rate.toFixed(0)} conn/s achieved; ${p.client} client + ${p.server} server closes of ${pExpected} in ${p.messages} messages; ` +
          `lost kernel ${p.lostKernel}, JS ${p.lostJs}; Node-RED CPU ${perConnUs(perEvent.nodeRedCpuMs, perEvent.load.connected).toFixed(1)} µs per connection`,
      );
    }
    notes.push(
      `Node-RED flow run: ${red.load.attempted} connections attempted, ${red.load.connected} connected, ${red.load.failed} failed, ${red.load.unfinished} unfinished; ` +
        `closes expected ${red.load.attempted} client + ${red.accepted} server = ${expected}; delivered into the flow ${t.client} client + ${t.server} server = ${delivered} ` +
        `in ${t.messages} messages (${t.mismatched} with the wrong side, ${t.foreign} of other sockets on the port); lost kernel ${t.lostKernel}, JS ${t.lostJs}; state changes the kernel skipped ${t.skipped}; ` +
        `Node-RED CPU ${(red.nodeRedCpuMs / 1000).toFixed(1)} s (${perConnUs(red.nodeRedCpuMs, red.load.connected).toFixed(1)} µs per connection)`,
      "Node-RED flow: a full Node-RED (scripts/node-red-env.js) loading the built package; flow source (mode ebpf, close events, port filter = the generator's server port, batched every 100 ms) → a function node counting closes per side, read over the flow's HTTP endpoint after the source's last lost-count check",
    );
  } else {
    rows.push({ case: `bar: zero lost at ≥ ${BAR_RATE} conn/s for ${BAR_S} s, closes delivered into a Node-RED flow`, unit: "conn/s", ours: NaN, bar: "the Node-RED case ran", pass: false });
  }
  if (redFailure !== "") notes.push(`Node-RED flow case failed: ${redFailure}`);
  const udp = await udpCaptureRows();
  rows.push(...udp.rows);
  notes.push(...udp.notes);
  notes.push(
    floorFailure === ""
      ? "floor (bench/flow-floor.bpf.c): the hooks the flow source needs, attached with programs that do nothing (the tracepoints, then also sock_ops), then also creating the per-socket storage the source keeps: what any capture on this design costs before it records anything"
      : `floor not measured: ${floorFailure}`,
  );

  return {
    name: "flow source: short connections on loopback from a native generator, attached vs detached (and vs tcplife)",
    rows,
    notes: [
      `${CONCURRENCY} connections in flight, ${PHASE_S} s per phase, ${ROUNDS} alternating rounds, medians; attached ${attachedConnections} connections, load CPU ${(attachedLoadCpuMs / 1000).toFixed(1)} s`,
      `unpaced phases: kernel lost ${counted.kernelLost}, JS lost ${counted.jsLost}, state changes the kernel skipped ${counted.skipped}, closes recovered at socket destruction ${counted.closeAtDestroy}`,
      `paced bar run: ${b.load.attempted} attempted, ${b.load.connected} connected, ${b.load.failed} failed; kernel lost ${bar.kernelLost}, JS lost ${bar.jsLost}, skipped ${bar.skipped}`,
      rates.tcplife.length > 0 ? "tcplife ran with tracefs mounted for its phases only" : "tcplife not run (not installed, or not root)",
      "BPF CPU from the kernel's run-time stats of this process's programs (kernel.bpf_stats_enabled on for one phase, then restored; the stats add two clock reads per run); it counts every TCP state change on the host, not only the load's; load CPU is the generator's user+system time",
      ...notes,
    ],
  };
}

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { cachedCProgram } from "../test/rigs/build-cache";
import { LISTENER_PORT, LoadRig, SERVER_IP, type JsonChild } from "../test/rigs/load-rig";
import { until } from "../test/rigs/wait";
import { BenchReport, BenchRow, ceilingRow, median, ratioRow } from "./harness";

/**
 * forward against HAProxy as it is deployed, measured in the same run on the load rig's
 * three namespaces (client → gateway → server, test/rigs/load-rig.ts):
 * - in the gateway a real Node-RED runs `transparent in` (managed REDIRECT rules) →
 *   `classify` (a rule on the destination port) → `forward` to the original destination;
 * - beside it HAProxy 2.6 with its default thread count (one per core) and `option
 *   splice-auto`, and the same HAProxy with `nbthread 1`, each behind an nft REDIRECT and
 *   sending to the original destination (`server 0.0.0.0`, SO_ORIGINAL_DST), so both
 *   pay the same NAT lookup;
 * - short connections from a native generator (bench/rrgen.c): connect, a 1-byte or
 *   2 KiB request, as large an answer, the server's FIN, 32 and 256 in flight; per
 *   contender connections/s, CPU per connection of the proxy process (all its threads,
 *   from /proc) and the time from connect to FIN at p50/p99, the added latency being
 *   that time over a connection routed through the gateway without a proxy;
 * - one iperf3 stream through each, five runs;
 * - beside them a floor (bench/proxyfloor.c): a bare C proxy with one SO_REUSEPORT
 *   listener and epoll loop per core that only accepts, reads SO_ORIGINAL_DST, connects
 *   and copies, the least a transparent proxy spends per connection here.
 */

const ROUNDS = 3;
const ROUND_MS = 2000;
const STREAM_RUNS = 5;
const STREAM_SECONDS = 3;
const LARGE = 2048;

/** Ports on the server; each is a contender's way there. */
const PORT = {
  ours: 8080,
  oursJs: 8084,
  haproxy: 8081,
  haproxyOne: 8083,
  direct: 8082,
  floor: 8085,
  streamOurs: 8090,
  streamHaproxy: 8091,
} as const;
/** Where each HAProxy listens in the gateway (the nft REDIRECT target). */
const HAPROXY_PORT = 18081;
const HAPROXY_ONE_PORT = 18083;
/** Where the floor proxy listens in the gateway. */
const FLOOR_PORT = 18085;

interface Contender {
  readonly name: string;
  readonly port: number;
  /** Process whose CPU is charged to the contender (none for the direct path). */
  readonly pid: () => number | undefined;
}

interface Sample {
  completed: number;
  failed: number;
  p50: number;
  p99: number;
  cpuUsPerConn: number;
}

/** The bench flow: transparent in → classify (by destination port) → forward (pump auto, or js) to the original destination. */
function benchFlow(): object[] {
  return [
    { id: "tab", type: "tab", label: "forward bench" },
    {
      id: "tin", z: "tab", type: "transparent in", name: "capture", port: LISTENER_PORT, address: "", family: "ipv4", mode: "redirect",
      maxConnections: 0, sniffBytes: 1, sniffTimeout: 1, proxyProtocol: "off", proxyFrom: "",
      unclaimedTimeout: 30, unclaimedAction: "close", onClose: "keep",
      manageRules: true, ruleDestinations: `${SERVER_IP}/32`, rulePorts: `${PORT.ours},${PORT.oursJs},${PORT.streamOurs}`, ruleMark: "",
      x: 120, y: 80, wires: [["cls"]],
    },
    {
      id: "cls", z: "tab", type: "classify", name: "", input: "auto", property: "payload", maxBytes: 1, timeoutMs: 2000, serverFirstMs: 300,
      rules: [{ name: "service", ports: `${PORT.ours},${PORT.streamOurs}` }, { name: "service (js pump)", ports: String(PORT.oursJs) }],
      outputs: 3, x: 300, y: 80, wires: [["fwd"], ["fwdjs"], ["rej"]],
    },
    ...[["fwd", "auto"], ["fwdjs", "js"]].map(([id, pump], i) => ({
      id, z: "tab", type: "forward", name: "", action: "forward", rejectMode: "fin", targetType: "original", host: "", port: "",
      targetProp: "target", identity: "none", keepClientPort: false, mark: "", connectTimeout: 10, idleTimeout: 60, noDelay: true, pump,
      x: 480, y: 60 + 40 * i, wires: [[]],
    })),
    {
      id: "rej", z: "tab", type: "forward", name: "", action: "reject", rejectMode: "rst", targetType: "original", host: "", port: "",
      targetProp: "target", identity: "none", keepClientPort: false, mark: "", connectTimeout: 10, idleTimeout: 0, noDelay: true, pump: "auto",
      x: 480, y: 140, wires: [[]],
    },
  ];
}

function which(command: string): string | null {
  for (const dir of [...(process.env["PATH"] ?? "").split(":"), "/usr/sbin", "/usr/bin"]) {
    if (dir !== "" && fs.existsSync(path.join(dir, command))) return path.join(dir, command);
  }
  return null;
}

/** CPU seconds (user + system, every thread) a process has used, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime (fields 14 and 15) in clock ticks of 1/100 s.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function haproxyConfig(dir: string, name: string, port: number, oneThread: boolean): string {
  const cfg = path.join(dir, `${name}.cfg`);
  const lines = [
    "global",
    // Fits the fd limit the rig may grant (20,000 here without CAP_SYS_RESOURCE): two per
    // connection and a pipe pair per four for splicing.
    "  maxconn 7000",
    ...(oneThread ? ["  nbthread 1"] : []),
    "defaults",
    "  mode tcp",
    "  option splice-auto",
    "  timeout connect 5s",
    "  timeout client 30s",
    "  timeout server 30s",
    "listen gateway",
    `  bind 0.0.0.0:${port}`,
    // 0.0.0.0: the destination the client dialled (SO_ORIGINAL_DST after the REDIRECT), its port too.
    "  server original 0.0.0.0",
  ];
  fs.writeFileSync(cfg, `${lines.join("\n")}\n`);
  return cfg;
}

/** Runs the benchmark; every ratio compares contenders measured in this run. */
export async function run(): Promise<BenchReport> {
  const haproxy = which("haproxy");
  const missing = ["haproxy", "iperf3", "cc", "nft"].filter((c) => which(c) === null);
  if (process.getuid?.() !== 0 || missing.length > 0 || haproxy === null) {
    return { name: "forward", rows: [], notes: [`skipped: needs root (for the namespaces) and ${missing.join(", ") || "nothing else"} (Debian: apt-get install haproxy iperf3 gcc nftables)`] };
  }
  const rrgen = cachedCProgram("bench/rrgen.c");
  const proxyFloor = cachedCProgram("bench/proxyfloor.c", ["-pthread"]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forward-bench-"));
  const rig = new LoadRig({ flow: { version: "a", mode: "redirect", events: false }, flows: benchFlow(), nofile: 20_000, bodyBytes: 16 });
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  try {
    await rig.start();
    const server = rig.spawnIn(rig.nsServer, [rrgen, "server", SERVER_IP, [PORT.ours, PORT.oursJs, PORT.haproxy, PORT.haproxyOne, PORT.direct, PORT.floor].join(","), String(LARGE)]);
    await server.next((l) => l["ready"] === true);
    for (const port of [PORT.streamOurs, PORT.streamHaproxy]) rig.spawnIn(rig.nsServer, ["iperf3", "-s", "-B", SERVER_IP, "-p", String(port)]);
    rig.inNs(rig.nsGateway, "nft", ["-f", "-"], `table ip forward_bench {
  chain pre { type nat hook prerouting priority dstnat; policy accept;
    ip daddr ${SERVER_IP} tcp dport { ${PORT.haproxy}, ${PORT.streamHaproxy} } redirect to :${HAPROXY_PORT}
    ip daddr ${SERVER_IP} tcp dport ${PORT.haproxyOne} redirect to :${HAPROXY_ONE_PORT}
    ip daddr ${SERVER_IP} tcp dport ${PORT.floor} redirect to :${FLOOR_PORT}
  }
}
`);
    // Every proxied connection leaves two conntrack entries in the gateway (the REDIRECTed
    // one and the upstream one), kept 120 s after the close by default: at 10k+ connections/s
    // the namespace's table (nf_conntrack_max) fills within a run and new SYNs are dropped,
    // which stalls whichever contender runs then. Closed connections are forgotten after 1 s
    // in this namespace only, the same for every contender.
    rig.inNs(rig.nsGateway, "sysctl", ["-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1", "net.netfilter.nf_conntrack_tcp_timeout_close=1"]);
    const haproxyDefault = rig.spawnIn(rig.nsGateway, [haproxy, "-db", "-f", haproxyConfig(dir, "default", HAPROXY_PORT, false)]);
    const haproxyOne = rig.spawnIn(rig.nsGateway, [haproxy, "-db", "-f", haproxyConfig(dir, "one", HAPROXY_ONE_PORT, true)]);
    const listening = (port: number): boolean => rig.gatewayState().listening.some((l) => l.endsWith(`:${port}`));
    const exited = (c: JsonChild): boolean => c.child.exitCode !== null || c.child.signalCode !== null;
    await until(() => {
      if (exited(haproxyDefault) || exited(haproxyOne)) throw new Error(`HAProxy exited: ${haproxyDefault.stderr}${haproxyOne.stderr}`);
      return listening(HAPROXY_PORT) && listening(HAPROXY_ONE_PORT);
    }, "HAProxy to listen", 15_000, 100);
    const haproxyThreads = fs.readdirSync(`/proc/${haproxyDefault.child.pid!}/task`).length;
    // One thread per core, as HAProxy runs by default.
    const floor = rig.spawnIn(rig.nsGateway, [proxyFloor, String(FLOOR_PORT), String(os.cpus().length)]);
    await floor.next((l) => l["ready"] === true);

    const contenders: Contender[] = [
      { name: "forward", port: PORT.ours, pid: () => rig.pid },
      { name: "forward (JS pump)", port: PORT.oursJs, pid: () => rig.pid },
      { name: "HAProxy", port: PORT.haproxy, pid: () => haproxyDefault.child.pid },
      { name: "HAProxy nbthread 1", port: PORT.haproxyOne, pid: () => haproxyOne.child.pid },
      { name: "direct", port: PORT.direct, pid: () => undefined },
      { name: "floor", port: PORT.floor, pid: () => floor.child.pid },
    ];
    const load = async (c: Contender, inFlight: number, bytes: number, ms: number): Promise<Sample> => {
      const before = cpuSeconds(c.pid());
      const client = rig.spawnIn(rig.nsClient, [rrgen, "client", SERVER_IP, String(c.port), String(ms), String(inFlight), String(bytes)]);
      const r = (await client.next((l) => typeof l["completed"] === "number", ms + 30_000).catch((err: Error) => {
        throw new Error(`${c.name}, ${inFlight} in flight, ${bytes} B: ${err.message}`);
      })) as unknown as Omit<Sample, "cpuUsPerConn">;
      const cpu = cpuSeconds(c.pid()) - before;
      return { ...r, cpuUsPerConn: r.completed > 0 ? (cpu * 1e6) / r.completed : 0 };
    };
    for (const c of contenders) await load(c, 32, 1, 1000); // warm-up

    for (const bytes of [1, LARGE]) {
      for (const inFlight of [32, 256]) {
        const samples = new Map<string, Sample[]>(contenders.map((c) => [c.name, []]));
        // Contenders alternate round by round, so the neighbours' load hits all alike.
        for (let r = 0; r < ROUNDS; r++) for (const c of contenders) samples.get(c.name)!.push(await load(c, inFlight, bytes, ROUND_MS));
        const m = (name: string, key: keyof Sample): number => median(samples.get(name)!.map((s) => s[key]));
        const rate = (name: string): number => (m(name, "completed") * 1000) / ROUND_MS;
        const label = `${bytes === 1 ? "1 B" : "2 KiB"}, ${inFlight} in flight`;
        const added = (name: string, q: "p50" | "p99"): number => m(name, q) - m("direct", q);
        for (const ours of ["forward", "forward (JS pump)"]) {
          const barred = ours === "forward";
          rows.push(ratioRow(`${ours}, ${label}`, "conn/s", rate(ours), "HAProxy", rate("HAProxy"), barred ? 1.0 : undefined));
          rows.push(ceilingRow(`${ours} CPU/conn, ${label}`, "µs", m(ours, "cpuUsPerConn"), "HAProxy", m("HAProxy", "cpuUsPerConn"), barred ? 1.2 : undefined));
          for (const q of ["p50", "p99"] as const) {
            rows.push(ceilingRow(`${ours} added ${q}, ${label}`, "µs", added(ours, q), "HAProxy", added("HAProxy", q), barred ? 1.2 : undefined));
          }
        }
        rows.push(ratioRow(`forward, ${label}`, "conn/s", rate("forward"), "HAProxy nbthread 1", rate("HAProxy nbthread 1")));
        rows.push(ratioRow(`floor (bare C proxy), ${label}`, "conn/s", rate("floor"), "HAProxy", rate("HAProxy")));
        rows.push(ceilingRow(`floor (bare C proxy) CPU/conn, ${label}`, "µs", m("floor", "cpuUsPerConn"), "HAProxy", m("HAProxy", "cpuUsPerConn")));
        rows.push(ceilingRow(`forward CPU/conn, ${label}`, "µs", m("forward", "cpuUsPerConn"), "HAProxy nbthread 1", m("HAProxy nbthread 1", "cpuUsPerConn")));
        const failed = contenders.map((c) => `${c.name} ${samples.get(c.name)!.reduce((n, s) => n + s.failed, 0)}`).join(", ");
        notes.push(`${label}: direct ${(rate("direct") / 1000).toFixed(1)}k conn/s, connect→FIN p50 ${m("direct", "p50").toFixed(0)} µs, p99 ${m("direct", "p99").toFixed(0)} µs; failed connections: ${failed}`);
      }
    }

    // One stream, ours and HAProxy alternating; the bar holds in every run.
    const iperf = (port: number): number => {
      const out = JSON.parse(rig.inNs(rig.nsClient, "iperf3", ["-c", SERVER_IP, "-p", String(port), "-t", String(STREAM_SECONDS), "-J"])) as { end: { sum_received: { bits_per_second: number } } };
      return out.end.sum_received.bits_per_second / 1e9;
    };
    const streamRatios: number[] = [];
    const gbps: Array<[number, number]> = [];
    for (let r = 0; r < STREAM_RUNS; r++) {
      const ours = iperf(PORT.streamOurs);
      const theirs = iperf(PORT.streamHaproxy);
      gbps.push([ours, theirs]);
      streamRatios.push(ours / theirs);
    }
    const sorted = [...streamRatios].sort((a, b) => a - b);
    const worst = sorted[0]!;
    rows.push({ case: "one stream, forward vs HAProxy splice, worst run", unit: "×", ours: worst, bar: "≥ 1.2× HAProxy in each run", pass: worst >= 1.2 });
    notes.push(
      `one stream over ${STREAM_RUNS} runs, forward/HAProxy: min ${sorted[0]!.toFixed(2)}×, median ${median(sorted).toFixed(2)}×, max ${sorted[sorted.length - 1]!.toFixed(2)}× (Gbit/s ${gbps.map(([o, t]) => `${o.toFixed(1)}/${t.toFixed(1)}`).join(", ")})`,
      `HAProxy as deployed: default thread count (${haproxyThreads} threads here, ${os.cpus().length} cores), option splice-auto; "HAProxy nbthread 1" is the same with one thread. CPU/conn is the proxy process's own (every thread), per completed connection`,
      "lower is better for CPU/conn and added latency: their ratio is ours/HAProxy and the bar a ceiling; added latency is connect→FIN over the same path without a proxy",
      `floor: bench/proxyfloor.c, a bare C transparent proxy (${os.cpus().length} threads, each with its own SO_REUSEPORT listener and epoll loop: accept, SO_ORIGINAL_DST, connect, copy, pass each FIN on), what any proxy in this gateway spends at least per connection; a flow per connection comes on top of it`,
      "the gateway namespace forgets closed connections' conntrack entries after 1 s: with the default 120 s, two entries per proxied connection fill its table within a run and the dropped SYNs stall whichever contender runs then",
    );
  } finally {
    await rig.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { name: "forward: Node-RED transparent in → classify → forward vs HAProxy", rows, notes };
}

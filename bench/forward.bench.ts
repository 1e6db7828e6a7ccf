import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { BenchReport, BenchRow, median, ratioRow } from "./harness";

/**
 * forward against the anchors, measured in the same run, all on one loopback (in a
 * private network namespace as root, so nothing else shares it):
 * - one-stream throughput: iperf3 through each proxy to one iperf3 server, against
 *   HAProxy 2.6 (tcp mode, `option splice-auto`, one thread), socat, a plain Node `net`
 *   pipe and iperf3 straight to the server;
 * - short-connection rate (connect, 4 bytes, answer, close) through `transparent in` →
 *   forward against HAProxy;
 * - added latency of a small request/response on one connection (p50, p99).
 */

const NS = `tpfbench${process.pid}`;
const IPERF_SECONDS = 3;
const ROUNDS = 3;
const RATE_MS = 1500;
const CONCURRENCY = 16;
const PINGS = 2000;

const PORTS = {
  iperf: 5201,
  backendOk: 16000,
  backendEcho: 16001,
  // Each proxy listens on base + target index: 0 → iperf, 1 → backendOk, 2 → backendEcho.
  forwardNative: 16100,
  forwardJs: 16110,
  nodePipe: 16120,
  haproxy: 16130,
  socat: 16140,
} as const;
const TARGETS = [PORTS.iperf, PORTS.backendOk, PORTS.backendEcho];

function which(command: string): string | null {
  for (const dir of [...(process.env["PATH"] ?? "").split(":"), "/usr/sbin", "/usr/bin"]) {
    if (dir !== "" && fs.existsSync(path.join(dir, command))) return path.join(dir, command);
  }
  return null;
}

let prefix: string[] = [];
const children: ChildProcess[] = [];

function spawnIn(cmd: string, args: string[]): ChildProcess {
  const child = spawn(prefix[0] ?? cmd, [...prefix.slice(1), ...(prefix.length > 0 ? [cmd] : []), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.on("data", () => undefined);
  child.stderr!.on("data", () => undefined);
  children.push(child);
  return child;
}

function runIn(cmd: string, args: string[]): string {
  return prefix.length > 0 ? execFileSync(prefix[0]!, [...prefix.slice(1), cmd, ...args], { encoding: "utf8", maxBuffer: 64 << 20 }) : execFileSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20 });
}

function probe(port: number): boolean {
  const script = `const s=require("net").connect(${port},"127.0.0.1",()=>{s.destroy();process.exit(0)});s.on("error",()=>process.exit(1))`;
  try {
    runIn(process.execPath, ["-e", script]);
    return true;
  } catch {
    return false;
  }
}

async function waitPort(port: number, child: ChildProcess): Promise<void> {
  const end = Date.now() + 15_000;
  while (!probe(port)) {
    if (Date.now() > end || child.exitCode !== null) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startNode(kind: string, port: number, upstream?: number): Promise<void> {
  const child = spawnIn(process.execPath, [path.join(__dirname, "forward-server.js"), kind, String(port), ...(upstream === undefined ? [] : [String(upstream)])]);
  await waitPort(port, child);
}

async function startHaproxy(dir: string, bin: string): Promise<void> {
  const cfg = path.join(dir, "haproxy.cfg");
  const lines = ["global", "  maxconn 4096", "  nbthread 1", "defaults", "  mode tcp", "  option splice-auto", "  timeout connect 5s", "  timeout client 30s", "  timeout server 30s"];
  for (const [i, target] of TARGETS.entries()) lines.push(`listen p${i}`, `  bind 127.0.0.1:${PORTS.haproxy + i}`, `  server s 127.0.0.1:${target}`);
  fs.writeFileSync(cfg, `${lines.join("\n")}\n`);
  const child = spawnIn(bin, ["-db", "-f", cfg]);
  await waitPort(PORTS.haproxy, child);
}

function iperf(port: number): number {
  const out = JSON.parse(runIn("iperf3", ["-c", "127.0.0.1", "-p", String(port), "-t", String(IPERF_SECONDS), "-J"])) as { end: { sum_received: { bits_per_second: number } } };
  return out.end.sum_received.bits_per_second / 1e9;
}

function rate(port: number): number {
  const out = JSON.parse(runIn(process.execPath, [path.join(__dirname, "listener-load.js"), "127.0.0.1", String(port), String(RATE_MS), String(CONCURRENCY)])) as { completed: number };
  return out.completed / (RATE_MS / 1000);
}

/** p50/p99 round-trip microseconds of PINGS 64-byte request/responses on one connection. */
function latency(port: number): { p50: number; p99: number } {
  const script = `
const net=require("net");const s=net.connect(${port},"127.0.0.1");s.setNoDelay(true);
const msg=Buffer.alloc(64,1);const times=[];let t=0,got=0;
s.on("connect",()=>{t=process.hrtime.bigint();s.write(msg)});
s.on("data",(d)=>{got+=d.length;if(got<64)return;got-=64;times.push(Number(process.hrtime.bigint()-t)/1000);
if(times.length>=${PINGS}){times.sort((a,b)=>a-b);console.log(JSON.stringify({p50:times[times.length>>1],p99:times[Math.floor(times.length*0.99)]}));s.destroy();return}
t=process.hrtime.bigint();s.write(msg)});`;
  return JSON.parse(runIn(process.execPath, ["-e", script])) as { p50: number; p99: number };
}

function setupNamespace(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync("ip", ["netns", "add", NS]);
    execFileSync("ip", ["-n", NS, "link", "set", "lo", "up"]);
    return true;
  } catch {
    teardown();
    return false;
  }
}

function teardown(): void {
  for (const c of children.splice(0)) if (c.exitCode === null && c.pid !== undefined) c.kill("SIGKILL");
  try {
    execFileSync("ip", ["netns", "del", NS], { stdio: "ignore" });
  } catch {
    // not there
  }
}

/** Runs the benchmark; every ratio compares contenders measured in this run. */
export async function run(): Promise<BenchReport> {
  const notes: string[] = [];
  const haproxy = which("haproxy");
  if (which("iperf3") === null || haproxy === null || which("socat") === null) {
    return { name: "forward", rows: [], notes: ["skipped: iperf3, haproxy and socat are needed (Debian: apt-get install iperf3 haproxy socat)"] };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forward-bench-"));
  const inNs = setupNamespace();
  prefix = inNs ? ["ip", "netns", "exec", NS] : [];
  if (!inNs) notes.push("not root: measured on the host's loopback, shared with whatever else runs");
  const rows: BenchRow[] = [];
  try {
    const iperfServer = spawnIn("iperf3", ["-s", "-p", String(PORTS.iperf)]);
    await waitPort(PORTS.iperf, iperfServer);
    await startNode("backend-ok", PORTS.backendOk);
    await startNode("backend-echo", PORTS.backendEcho);
    for (const [i, target] of TARGETS.entries()) {
      await startNode("forward-native", PORTS.forwardNative + i, target);
      await startNode("forward-js", PORTS.forwardJs + i, target);
      await startNode("node-pipe", PORTS.nodePipe + i, target);
      const socat = spawnIn("socat", [`TCP-LISTEN:${PORTS.socat + i},bind=127.0.0.1,reuseaddr,fork,backlog=4096`, `TCP:127.0.0.1:${target}`]);
      await waitPort(PORTS.socat + i, socat);
    }
    await startHaproxy(dir, haproxy);

    // Throughput, contenders alternating round by round.
    const streams: Array<[string, number]> = [
      ["forward (native splice)", PORTS.forwardNative],
      ["forward (JS streams)", PORTS.forwardJs],
      ["HAProxy 2.6 splice", PORTS.haproxy],
      ["socat", PORTS.socat],
      ["Node net pipe", PORTS.nodePipe],
      ["direct loopback", PORTS.iperf],
    ];
    const gbps = new Map<string, number[]>(streams.map(([n]) => [n, []]));
    for (let r = 0; r < ROUNDS; r++) for (const [name, port] of streams) gbps.get(name)!.push(iperf(port));
    const g = (name: string): number => median(gbps.get(name)!);
    // The bars apply to what forward does by default (pump auto = native); the JS pump is
    // the fallback and is reported beside it.
    for (const ours of ["forward (native splice)", "forward (JS streams)"]) {
      rows.push(ratioRow(`one stream, ${ours}`, "Gbit/s", g(ours), "HAProxy 2.6 splice", g("HAProxy 2.6 splice"), ours.includes("native") ? 1.0 : undefined));
      for (const anchor of ["socat", "Node net pipe", "direct loopback"]) rows.push(ratioRow(`one stream, ${ours}`, "Gbit/s", g(ours), anchor, g(anchor)));
    }

    // Short connections.
    const conns: Array<[string, number]> = [
      ["transparent in → forward (native)", PORTS.forwardNative + 1],
      ["transparent in → forward (JS)", PORTS.forwardJs + 1],
      ["HAProxy 2.6", PORTS.haproxy + 1],
    ];
    for (const [, port] of conns) rate(port); // warm-up
    const cps = new Map<string, number[]>(conns.map(([n]) => [n, []]));
    for (let r = 0; r < ROUNDS; r++) for (const [name, port] of conns) cps.get(name)!.push(rate(port));
    for (const ours of ["transparent in → forward (native)", "transparent in → forward (JS)"]) {
      rows.push(ratioRow(`short connections, ${ours}`, "conn/s", median(cps.get(ours)!), "HAProxy 2.6", median(cps.get("HAProxy 2.6")!), ours.includes("native") ? 0.7 : undefined));
    }

    // Round trip of a small request/response through each proxy, alternating rounds;
    // the added latency (over a direct connection) is in the notes.
    const lat: Array<[string, number]> = [
      ["direct", PORTS.backendEcho],
      ["forward (native)", PORTS.forwardNative + 2],
      ["forward (JS)", PORTS.forwardJs + 2],
      ["HAProxy 2.6", PORTS.haproxy + 2],
    ];
    const rtt = new Map<string, { p50: number[]; p99: number[] }>(lat.map(([n]) => [n, { p50: [], p99: [] }]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, port] of lat) {
        const l = latency(port);
        rtt.get(name)!.p50.push(l.p50);
        rtt.get(name)!.p99.push(l.p99);
      }
    }
    const q = (name: string, which: "p50" | "p99"): number => median(rtt.get(name)![which]);
    for (const which of ["p50", "p99"] as const) {
      for (const ours of ["forward (native)", "forward (JS)"]) {
        // Lower is better: the ratio is HAProxy's round trip over ours (≥ 1: we are faster).
        rows.push({ case: `round trip ${which}, 64 B request/response, ${ours}`, unit: "µs", ours: q(ours, which), anchorName: "HAProxy 2.6", anchor: q("HAProxy 2.6", which), ratio: q("HAProxy 2.6", which) / q(ours, which) });
      }
      const added = (name: string): string => (q(name, which) - q("direct", which)).toFixed(1);
      notes.push(`added ${which} over direct (${q("direct", which).toFixed(1)} µs): forward native ${added("forward (native)")} µs, forward JS ${added("forward (JS)")} µs, HAProxy ${added("HAProxy 2.6")} µs`);
    }
    notes.push("HAProxy runs one thread; forward runs one event loop, and the native pump splices on shared epoll threads (one per core, at most four)");
    const faster = g("forward (native splice)") >= g("forward (JS streams)") ? "native" : "js";
    notes.push(`pump auto chooses: ${faster} (one stream: native ${g("forward (native splice)").toFixed(2)} vs JS ${g("forward (JS streams)").toFixed(2)} Gbit/s)`);
  } finally {
    teardown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { name: "forward: throughput, connection rate and latency vs HAProxy", rows, notes };
}

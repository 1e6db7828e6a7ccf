import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { BenchReport, BenchRow, median, ratioRow } from "./harness";

/**
 * Accept rate of short connections (connect, 4 bytes, answer, close) through the
 * transparent listener — original-destination lookup, connection table, a message per
 * connection — against a plain Node `net` server doing the same work and against HAProxy
 * (tcp mode) accepting the same load. As root, every contender sits behind the same nft
 * REDIRECT rule in a private network namespace, so the lookup finds a real conntrack
 * entry and all pay the same NAT cost; otherwise loopback without rules (noted).
 */

const CONCURRENCY = 16;
const ROUND_MS = 1500;
const ROUNDS = 5;
const NS = `tpbench${process.pid}`;

interface Contender {
  readonly name: string;
  /** Port the server listens on, and the port clients dial (redirected to it). */
  readonly port: number;
  readonly dial: number;
  start(prefix: string[]): Promise<ChildProcess>;
}

/** "key value" lines the contenders report besides "ready" (plain-lookup: lookup-us). */
const reported = new Map<string, number>();

function waitLine(child: ChildProcess, want: string, timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let err = "";
    child.stderr?.on("data", (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => reject(new Error(`no "${want}" within ${timeoutMs} ms: ${err}`)), timeoutMs);
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      const [key, value] = line.trim().split(" ");
      if (key !== undefined && value !== undefined && Number.isFinite(Number(value))) reported.set(key, Number(value));
      if (line.trim() === want) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code}) before "${want}": ${err}`));
    });
  });
}

function nodeContender(name: string, kind: string, port: number, dial: number): Contender {
  return {
    name,
    port,
    dial,
    async start(prefix) {
      const child = spawn(prefix[0] ?? process.execPath, [...prefix.slice(1), ...(prefix.length > 0 ? [process.execPath] : []), path.join(__dirname, "listener-server.js"), kind, String(port)], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      await waitLine(child, "ready");
      return child;
    },
  };
}

function haproxyContender(port: number, dial: number, dir: string): Contender {
  return {
    name: "HAProxy (tcp mode)",
    port,
    dial,
    async start(prefix) {
      const cfg = path.join(dir, "haproxy.cfg");
      // Accept, read the first bytes, close: HAProxy's cheapest path to the same work.
      fs.writeFileSync(
        cfg,
        [
          "global",
          "  maxconn 4096",
          "  nbthread 1",
          "defaults",
          "  mode tcp",
          "  timeout connect 1s",
          "  timeout client 5s",
          "  timeout server 5s",
          "frontend bench",
          `  bind 127.0.0.1:${port}`,
          "  tcp-request inspect-delay 1s",
          "  tcp-request content reject if { req.len ge 4 }",
          "",
        ].join("\n"),
      );
      const bin = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].find((p) => fs.existsSync(p)) ?? "haproxy";
      const child = spawn(prefix[0] ?? bin, [...prefix.slice(1), ...(prefix.length > 0 ? [bin] : []), "-db", "-f", cfg], { stdio: ["ignore", "pipe", "pipe"] });
      // HAProxy prints nothing when it is up: wait until the port accepts.
      const end = Date.now() + 10_000;
      for (;;) {
        try {
          execFileSync(...connectProbe(prefix, port));
          break;
        } catch {
          if (Date.now() > end || child.exitCode !== null) throw new Error("HAProxy did not start");
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      return child;
    },
  };
}

function connectProbe(prefix: string[], port: number): [string, string[]] {
  const script = `const s=require("net").connect(${port},"127.0.0.1",()=>{s.destroy();process.exit(0)});s.on("error",()=>process.exit(1))`;
  return prefix.length > 0 ? [prefix[0]!, [...prefix.slice(1), process.execPath, "-e", script]] : [process.execPath, ["-e", script]];
}

function load(prefix: string[], dial: number): Promise<{ completed: number; failed: number }> {
  const args = [path.join(__dirname, "listener-load.js"), "127.0.0.1", String(dial), String(ROUND_MS), String(CONCURRENCY)];
  const [cmd, argv] = prefix.length > 0 ? [prefix[0]!, [...prefix.slice(1), process.execPath, ...args]] : [process.execPath, args];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as { completed: number; failed: number }) : reject(new Error(`load generator exited ${code}`))));
  });
}

/** CPU seconds (user + system) a process has used, from /proc (ip netns exec execs, so the pid is the server's). */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of stat (utime, stime) in clock ticks; 100 per second on Linux.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

function setupNamespace(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync("ip", ["netns", "add", NS]);
    execFileSync("ip", ["-n", NS, "link", "set", "lo", "up"]);
    execFileSync("ip", ["netns", "exec", NS, "nft", "-f", "-"], {
      input: `table ip bench {
  chain out { type nat hook output priority -100; policy accept;
    ip daddr 127.0.0.1 tcp dport 80 redirect to :15001
    ip daddr 127.0.0.1 tcp dport 81 redirect to :15002
    ip daddr 127.0.0.1 tcp dport 82 redirect to :15003
    ip daddr 127.0.0.1 tcp dport 83 redirect to :15004
    ip daddr 127.0.0.1 tcp dport 84 redirect to :15005
  }
}
`,
    });
    return true;
  } catch {
    teardownNamespace();
    return false;
  }
}

function teardownNamespace(): void {
  try {
    execFileSync("ip", ["netns", "del", NS], { stdio: "ignore" });
  } catch {
    // not there
  }
}

/** Runs the benchmark and reports connections per second with ratios to the anchors. */
export async function run(): Promise<BenchReport> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "listener-bench-"));
  const inNs = setupNamespace();
  const prefix = inNs ? ["ip", "netns", "exec", NS] : [];
  const dialOf = (port: number, redirected: number): number => (inNs ? redirected : port);
  const contenders: Contender[] = [
    nodeContender("plain Node net server", "plain", 15002, dialOf(15002, 81)),
    nodeContender("plain Node net + original-dst lookup", "plain-lookup", 15005, dialOf(15005, 84)),
    nodeContender("transparent listener (library)", "library", 15001, dialOf(15001, 80)),
    nodeContender("transparent in (Node-RED)", "node-red", 15004, dialOf(15004, 83)),
    haproxyContender(15003, dialOf(15003, 82), dir),
  ];
  const samples = new Map<string, number[]>(contenders.map((c) => [c.name, []]));
  const perCpu = new Map<string, number[]>(contenders.map((c) => [c.name, []]));
  const failures = new Map<string, number>(contenders.map((c) => [c.name, 0]));
  const notes: string[] = [];
  const children: ChildProcess[] = [];
  try {
    for (const c of contenders) children.push(await c.start(prefix));
    for (const c of contenders) await load(prefix, c.dial); // warm-up round
    // Alternate contenders round by round so noise from other processes hits all alike.
    for (let r = 0; r < ROUNDS; r++) {
      for (const [i, c] of contenders.entries()) {
        const pid = children[i]!.pid;
        const cpuBefore = cpuSeconds(pid);
        const result = await load(prefix, c.dial);
        const cpu = cpuSeconds(pid) - cpuBefore;
        if (cpu > 0) perCpu.get(c.name)!.push(result.completed / cpu);
        samples.get(c.name)!.push((result.completed * 1000) / ROUND_MS);
        failures.set(c.name, failures.get(c.name)! + result.failed);
      }
    }
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 200));
    if (inNs) teardownNamespace();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const rate = (name: string): number => median(samples.get(name)!);
  const plainRate = rate("plain Node net server");
  const haproxyRate = rate("HAProxy (tcp mode)");
  const rows: BenchRow[] = [];
  // The issue's bar (the lookup adds under 5% over the plain Node server) is checked on
  // CPU below: on two cores shared with other work, conn/s swings more than 5% between
  // rounds, because the load generator competes with the servers for the same cores.
  rows.push(ratioRow("plain Node net + lookup vs plain Node", "conn/s", rate("plain Node net + original-dst lookup"), "plain Node net", plainRate));
  for (const ours of ["transparent listener (library)", "transparent in (Node-RED)"]) {
    rows.push(ratioRow(`${ours} vs plain Node`, "conn/s", rate(ours), "plain Node net", plainRate));
    rows.push(ratioRow(`${ours} vs HAProxy`, "conn/s", rate(ours), "HAProxy tcp", haproxyRate));
  }
  rows.push(ratioRow("plain Node net vs HAProxy", "conn/s", plainRate, "HAProxy tcp", haproxyRate));
  // Throughput on two shared cores swings with the neighbours' load; the server's own CPU
  // per connection is the steadier measure of what the lookup and the message cost.
  const cpuRate = (name: string): number => median(perCpu.get(name)!.length > 0 ? perCpu.get(name)! : [0]);
  // The steadiest figure: the lookup call timed alone (same redirected socket, 200k calls)
  // as a share of the plain server's CPU per connection.
  const lookupUs = reported.get("lookup-us");
  const callUs = reported.get("call-us");
  const plainUsPerConn = 1e6 / cpuRate("plain Node net server");
  if (lookupUs !== undefined && callUs !== undefined && Number.isFinite(plainUsPerConn)) {
    const share = (100 * lookupUs) / plainUsPerConn;
    rows.push({ case: "SO_ORIGINAL_DST read, share of CPU/conn", unit: "%", ours: share, bar: "< 5%", pass: share < 5 });
    rows.push({ case: "whole native call, share of CPU/conn", unit: "%", ours: (100 * callUs) / plainUsPerConn });
    notes.push(
      `native call per connection: ${callUs.toFixed(2)} µs (local and peer address, original destination), of which the original-destination read is ${lookupUs.toFixed(2)} µs; the plain Node server spends ${plainUsPerConn.toFixed(1)} µs CPU per connection and reads the addresses through Node instead`,
    );
  }
  rows.push(ratioRow("plain Node net + lookup per server CPU-s", "conn/CPU-s", cpuRate("plain Node net + original-dst lookup"), "plain Node net", cpuRate("plain Node net server"), 0.95));
  // The whole listener (first-byte read, table, unclaimed timer, message) has no bar in
  // the issue: reported so its cost over the lookup is visible.
  for (const ours of ["transparent listener (library)", "transparent in (Node-RED)"]) {
    rows.push(ratioRow(`${ours} per server CPU-s`, "conn/CPU-s", cpuRate(ours), "plain Node net", cpuRate("plain Node net server")));
  }
  rows.push(ratioRow("HAProxy per server CPU-second", "conn/CPU-s", cpuRate("HAProxy (tcp mode)"), "plain Node net", cpuRate("plain Node net server")));
  notes.push(
    inNs
      ? "every contender behind the same nft REDIRECT rule in a private namespace (conntrack on); ours looks up SO_ORIGINAL_DST per connection"
      : "not root: loopback without rules, so SO_ORIGINAL_DST finds no redirected entry (the syscall still runs)",
    `${CONCURRENCY} concurrent clients in a separate process, ${ROUNDS} rounds of ${ROUND_MS} ms per contender, median; each connection: connect, 4 bytes, answer, close`,
    "HAProxy 'tcp-request content reject' once 4 bytes are in: it accepts, reads and closes, without the answer",
    "the bar (lookup adds < 5%) is checked on server CPU: the lookup call timed alone, and 'plain Node net + lookup' (the same server plus the one native call that reads addresses and SO_ORIGINAL_DST)",
    `failed connections: ${[...failures].map(([n, f]) => `${n} ${f}`).join(", ")}`,
  );
  return { name: "transparent listener: short-connection accept rate", rows, notes };
}

/**
 * UDP datagrams per second through `transparent in` → `forward` (the addon's relay:
 * recvmmsg/sendmmsg on the event loop) against socat's UDP relay (`UDP4-LISTEN,fork` →
 * `UDP4`) and against no relay at all, in the same run: a C echo server behind each, a C
 * client keeping 256 datagrams in flight, 64-byte and 1,200-byte datagrams (a DNS query,
 * a QUIC Initial). The bar: at least 1.5× socat. Runs in a network namespace of its own
 * when root (loopback only), so other traffic does not share the figures.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { cachedCProgram } from "../test/rigs/build-cache";
import { median, ratioRow, type BenchReport, type BenchRow } from "./harness";

const NS = `tpbench-udp-${process.pid % 100000}`;
const PORTS = { echo: 25001, socat: 25002, ours: 25003 };
const ROUNDS = 3;
const SECONDS = 2;
const WINDOW = 256;

const children: ChildProcess[] = [];
let prefix: string[] = [];

/** The UDP generator (bench/udpgen.c), built once per source version. */
export function binary(): string {
  return cachedCProgram("bench/udpgen.c");
}

function which(command: string): string | null {
  for (const dir of (process.env["PATH"] ?? "").split(":").concat(["/usr/sbin", "/usr/bin"])) {
    const file = path.join(dir, command);
    if (dir !== "" && fs.existsSync(file)) return file;
  }
  return null;
}

function spawnIn(command: string, args: string[], quiet = false): ChildProcess {
  const argv = [...prefix, command, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", quiet ? "ignore" : "inherit"] });
  children.push(child);
  return child;
}

/** Waits for the child's first line (`{"up":true}`). */
function up(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`exited (${code}) before it was up`)));
    child.stdout!.once("data", () => resolve());
  });
}

function clientRate(port: number, size: number): number {
  const argv = [...prefix, binary(), "client", "127.0.0.1", String(port), String(size), String(SECONDS), String(WINDOW)];
  const out = execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  return (JSON.parse(out) as { rate: number }).rate;
}

function teardown(): void {
  for (const c of children.splice(0)) if (c.exitCode === null && c.pid !== undefined) c.kill("SIGKILL");
  try {
    execFileSync("ip", ["netns", "del", NS], { stdio: "ignore" });
  } catch {
    // not there
  }
}

export async function run(): Promise<BenchReport> {
  if (which("socat") === null || which("cc") === null) return { name: "udp", rows: [], notes: ["skipped: socat and cc are needed (Debian: apt-get install socat gcc)"] };
  const notes: string[] = [];
  const rows: BenchRow[] = [];
  try {
    try {
      execFileSync("ip", ["netns", "add", NS], { stdio: "ignore" });
      execFileSync("ip", ["netns", "exec", NS, "ip", "link", "set", "lo", "up"], { stdio: "ignore" });
      prefix = ["ip", "netns", "exec", NS];
    } catch {
      prefix = [];
      notes.push("not root: measured on the host's loopback, shared with whatever else runs");
    }
    binary();
    await up(spawnIn(binary(), ["echo", String(PORTS.echo)]));
    const socat = spawnIn("socat", [`UDP4-LISTEN:${PORTS.socat},bind=127.0.0.1,reuseaddr,fork`, `UDP4:127.0.0.1:${PORTS.echo}`], true);
    await up(spawnIn(process.execPath, [path.join(__dirname, "udp-relay.js"), String(PORTS.ours), String(PORTS.echo)]));
    // socat prints nothing when it is up (and a refused read whenever a finished client's
    // port is gone, hence quiet): give it a moment to bind.
    await new Promise((r) => setTimeout(r, 300));
    if (socat.exitCode !== null) throw new Error("socat exited");
    for (const size of [64, 1200]) {
      const contenders: Array<[string, number]> = [
        ["transparent in → forward", PORTS.ours],
        ["socat UDP relay", PORTS.socat],
        ["direct", PORTS.echo],
      ];
      for (const [, port] of contenders) clientRate(port, size); // warm-up: sessions made, caches warm
      const rates = new Map<string, number[]>(contenders.map(([n]) => [n, []]));
      for (let r = 0; r < ROUNDS; r++) for (const [name, port] of contenders) rates.get(name)!.push(clientRate(port, size));
      const m = (name: string): number => median(rates.get(name)!);
      rows.push(ratioRow(`${size}-byte datagrams echoed, transparent in → forward`, "datagrams/s", m("transparent in → forward"), "socat UDP relay", m("socat UDP relay"), 1.5));
      rows.push(ratioRow(`${size}-byte datagrams echoed, transparent in → forward`, "datagrams/s", m("transparent in → forward"), "direct", m("direct")));
    }
    notes.push(`each echoed datagram crossed the relay twice (to the echo server and back); ${WINDOW} in flight from one client socket; median of ${ROUNDS} rounds of ${SECONDS} s`);
    notes.push("transparent in runs mode plain here (loopback, no TPROXY rules): the same relay, replies through the listener's socket instead of a destination socket");
  } finally {
    teardown();
  }
  return { name: "udp: datagrams through transparent in → forward vs socat", rows, notes };
}

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { assertValidEvent } from "../support/events";
import { stopProcess } from "../support/net";
import type { FlowCloseEvent, FlowConnectionEvent, FlowEvent } from "../../src/events/types";
import { describe } from "vitest";
import { sampleProcess } from "../rigs/process-stats";
import { loadFlowAddon } from "../../src/flow/native";
import { IN_CI, IS_ROOT } from "../support/system";
import { poll } from "../support/wait";

/**
 * `describe` for a suite that needs eBPF (root and the built BPF program), skipped
 * without them; under CI a missing one fails the file instead, naming `suite`.
 */
export function ebpfDescribe(suite: string): ReturnType<typeof describe.skipIf> {
  let built = false;
  try {
    built = loadFlowAddon().ebpfBuilt;
  } catch {
    built = false;
  }
  if (IN_CI && (!IS_ROOT || !built)) throw new Error(`the ${suite} suite must run as root with the BPF program built under CI`);
  return describe.skipIf(!(IS_ROOT && built));
}

export const FIXTURES = path.resolve(__dirname, "..", "fixtures", "flow");
export const ROOT = path.resolve(__dirname, "..", "..");

/** Server behaviours of test/fixtures/flow/server.js. */
export type ServerMode = "after-client" | "close-first" | "reset" | "idle-close";

export interface TestServer {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  /** Resolves after the server saw `n` connections close. */
  closed(n: number): Promise<void>;
}

/** Starts server.js in its own process (inside `netns` when given) and waits until it listens. */
export function startServer(host: string, mode: ServerMode, replyBytes: number, netns?: string): Promise<TestServer> {
  const args = [path.join(FIXTURES, "server.js"), host, "0", mode, String(replyBytes)];
  const child = netns === undefined ? spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] }) : spawn("ip", ["netns", "exec", netns, process.execPath, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let done = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 10_000);
    child.stderr!.on("data", (c) => (out += c.toString()));
    child.stdout!.on("data", (c) => {
      out += c.toString();
      done = (out.match(/^done$/gm) ?? []).length;
      for (const w of waiters.splice(0)) if (done >= w.n) w.resolve();
      else waiters.push(w);
      const m = /listening (\d+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve({
          child,
          // `ip netns exec` execs node in place: the same pid.
          pid: child.pid!,
          port: Number(m[1]),
          closed: (n) => (done >= n ? Promise.resolve() : new Promise((r) => waiters.push({ n, resolve: r }))),
        });
      }
    });
    child.once("exit", (code) => reject(new Error(`server exited (${code}): ${out}`)));
  });
}

export interface ClientResult {
  readonly pid: number;
  readonly localPort: number | null;
  readonly received: number;
  readonly error: string | null;
}

/** Runs client.js in its own process: connect, send `bytes`, read to the end, close. */
export function runClient(host: string, port: number, bytes: number, netns?: string, hold = false): Promise<ClientResult> {
  const args = [path.join(FIXTURES, "client.js"), host, String(port), String(bytes), ...(hold ? ["hold"] : [])];
  const child = netns === undefined ? spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] }) : spawn("ip", ["netns", "exec", netns, process.execPath, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (c) => (out += c.toString()));
  child.stderr!.on("data", (c) => (out += c.toString()));
  return new Promise((resolve, reject) => {
    child.once("exit", () => {
      try {
        const r = JSON.parse(out.trim().split("\n").pop()!) as Omit<ClientResult, "pid">;
        resolve({ ...r, pid: child.pid! });
      } catch {
        reject(new Error(`client output: ${out}`));
      }
    });
  });
}

export { stopProcess };

/** Collects events from a source callback; every event must be valid against its schema. */
export class EventLog {
  /** Every log made, for a check after each test that none saw an invalid event. */
  static readonly all: EventLog[] = [];
  readonly events: FlowEvent[] = [];
  /** Events that failed schema validation (the source must never emit one). */
  readonly invalid: string[] = [];
  constructor() {
    EventLog.all.push(this);
  }
  readonly push = (batch: FlowEvent[]): void => {
    for (const e of batch) {
      try {
        assertValidEvent(e);
      } catch (err) {
        // Thrown inside the source's callback it would only be reported; kept for afterEach.
        this.invalid.push((err as Error).message);
      }
    }
    this.events.push(...batch);
  };

  connections(): FlowConnectionEvent[] {
    return this.events.filter((e): e is FlowConnectionEvent => e.type !== "lost");
  }

  /** Events of the connection whose local port is `localPort` (and remote port `remotePort`). */
  of(localPort: number, remotePort?: number): FlowConnectionEvent[] {
    return this.connections().filter((e) => e.localPort === localPort && (remotePort === undefined || e.remotePort === remotePort));
  }

  closeOf(localPort: number, remotePort?: number): FlowCloseEvent | undefined {
    return this.of(localPort, remotePort).find((e): e is FlowCloseEvent => e.type === "flow-close");
  }

  async waitFor(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    if (!(await poll(check, timeoutMs, 20))) throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(this.events.slice(-10), null, 1)}`);
  }

}

/**
 * A network namespace with a veth pair: host 203.0.113.201/30 ⇄ namespace 203.0.113.202/30
 * (192.0.2.0/24 is this host's own uplink). Removed by `remove()`.
 */
export const NS_HOST_IP = "203.0.113.201";
export const NS_INNER_IP = "203.0.113.202";

export function createNetns(name: string): { readonly name: string; remove(): void } {
  const host = `${name.slice(0, 10)}h`;
  const inner = `${name.slice(0, 10)}n`;
  const ip = (...args: string[]): void => {
    const r = spawnSync("ip", args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
  };
  const remove = (): void => {
    spawnSync("ip", ["link", "del", host]);
    spawnSync("ip", ["netns", "del", name]);
  };
  remove();
  try {
    ip("netns", "add", name);
    ip("link", "add", host, "type", "veth", "peer", "name", inner);
    ip("link", "set", inner, "netns", name);
    ip("addr", "add", `${NS_HOST_IP}/30`, "dev", host);
    ip("link", "set", host, "up");
    ip("-n", name, "addr", "add", `${NS_INNER_IP}/30`, "dev", inner);
    ip("-n", name, "link", "set", inner, "up");
    ip("-n", name, "link", "set", "lo", "up");
  } catch (err) {
    remove();
    throw err;
  }
  return { name, remove };
}

/** Inode of a process's network namespace. */
export function netnsOf(pid: number | "self"): number {
  return fs.statSync(`/proc/${pid}/ns/net`).ino;
}

/** File descriptors of this process that hold BPF objects or epoll instances, by kind. */
export function bpfFds(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    let link: string;
    try {
      link = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    const m = /^anon_inode:\[?(bpf[-_a-z]*|eventpoll)\]?$/.exec(link);
    if (m !== null) counts[m[1]!] = (counts[m[1]!] ?? 0) + 1;
  }
  return counts;
}

/** Threads of this process. */
export function threadCount(): number {
  return fs.readdirSync("/proc/self/task").length;
}

/** Ids of the BPF programs this process holds open (from /proc/self/fdinfo). */
export function ownProgramIds(): Set<number> {
  return new Set(sampleProcess(process.pid).bpfProgs);
}

/**
 * Which of `ids` are still loaded in the kernel (bpftool), or null when bpftool is missing.
 * Asked by id, so programs other processes load meanwhile (another flow source) do not count.
 */
export function stillLoaded(ids: Iterable<number>): number[] | null {
  const r = spawnSync("bpftool", ["-j", "prog", "show"], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) return null;
  const loaded = new Set((JSON.parse(r.stdout) as Array<{ id: number }>).map((p) => p.id));
  return [...ids].filter((id) => loaded.has(id));
}

/** Calls `onLine` with each parsed line of an NDJSON stream (blank lines skipped). */
export function readJsonLines<T>(stream: NodeJS.ReadableStream, onLine: (line: T) => void): void {
  let buf = "";
  stream.on("data", (c: Buffer) => {
    buf += c.toString();
    const parts = buf.split("\n");
    buf = parts.pop()!;
    for (const p of parts) if (p.trim() !== "") onLine(JSON.parse(p) as T);
  });
}

/** One NDJSON line of fixtures/child-source.js: its start status, an event, or its error. */
export interface ChildLine {
  status?: { mode: string; ebpfUnavailable: string | null; degraded: string | null };
  event?: FlowEvent;
  error?: { message: string; code?: string };
}

/**
 * Runs fixtures/child-source.js (a flow source in `mode`, reporting the server `port`, for
 * `protocols` when given) with the `drop` capabilities taken from its bounding and
 * inheritable sets; every line it prints is collected, and every event schema-checked.
 */
export function childSource(setpriv: string, drop: string, mode: string, port: number, protocols?: string): { child: ChildProcess; lines: ChildLine[] } {
  const dist = path.join(ROOT, "dist");
  if (!fs.existsSync(path.join(dist, "src", "flow", "source.js"))) spawnSync(process.execPath, [path.join(ROOT, "scripts", "build.js")], { stdio: "ignore" });
  const args = [path.join(FIXTURES, "child-source.js"), dist, mode, String(port), ...(protocols !== undefined ? [protocols] : [])];
  const child = spawn(setpriv, ["--bounding-set", drop, "--inh-caps", drop, "--", process.execPath, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: ChildLine[] = [];
  readJsonLines<ChildLine>(child.stdout!, (line) => {
    if (line.event !== undefined) assertValidEvent(line.event);
    lines.push(line);
  });
  return { child, lines };
}

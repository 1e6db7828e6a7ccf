// A gateway to put load through, shared by the load and redeploy tests (test/kernel) and
// the soak benchmark: three network namespaces (documentation ranges only)
//
//   client 203.0.113.10 ──► gateway 203.0.113.1 | 198.51.100.1 ──► server 198.51.100.20:80
//   (load-client.js)         (a real Node-RED + ns-agent.js)        (load-server.js)
//
// The client dials the server; the gateway's `transparent in` captures the connection
// with its managed nft rules (REDIRECT or TPROXY), `classify` names it, `forward` takes it
// to its original destination. Node-RED, the server and the client run under prlimit with
// a raised fd limit, each in its own process so Node-RED's fds are counted alone. Admin
// API calls and MQTT subscriptions go through ns-agent.js, which lives in the gateway
// namespace. close() ends every process by pid and deletes the namespaces (with their
// veths, nft tables, rules and routes).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { sampleProcess, type ProcessSample } from "./process-stats";
import { ROOT } from "./root";

export { ROOT };
/** The compiled rig programs the load rig starts in its namespaces. */
const DIST_RIGS = path.join(ROOT, "dist", "test", "rigs");

export const CLIENT_IP = "203.0.113.10";
export const GATEWAY_CLIENT_SIDE = "203.0.113.1";
export const GATEWAY_SERVER_SIDE = "198.51.100.1";
export const SERVER_IP = "198.51.100.20";
export const SERVER_PORT = 80;
export const LISTENER_PORT = 15001;
export const ADMIN_PORT = 1880;
export const BROKER_PORT = 1883;

const require_ = createRequire(__filename);
const redEnv = require_(path.join(ROOT, "scripts", "node-red-env.js")) as {
  prepareUserDir(dir: string, o: { port: number; flows: object[]; settings?: object; logLevel?: string }): void;
  startNodeRed(dir: string, o: { port: number; timeoutMs?: number; wrap?: string[]; env?: NodeJS.ProcessEnv }): Promise<{ child: ChildProcess; log(): string }>;
  stopProcess(child: ChildProcess, timeoutMs?: number): Promise<void>;
};

/** This process's hard RLIMIT_NOFILE: without CAP_SYS_RESOURCE no child can have more. */
export function hardFdLimit(): number {
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(fs.readFileSync("/proc/self/limits", "utf8"));
  return m === null || m[1] === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

/** Whether this process may raise a hard limit (CAP_SYS_RESOURCE, bit 24, in its effective set). */
function canRaiseLimits(): boolean {
  const m = /^CapEff:\s+([0-9a-f]+)/m.exec(fs.readFileSync("/proc/self/status", "utf8"));
  return m !== null && (BigInt(`0x${m[1]}`) & (1n << 24n)) !== 0n;
}

/** The fd limit children get: `wanted`, or the hard limit when this process may not raise it. */
export function fdLimitFor(wanted: number): number {
  return canRaiseLimits() ? wanted : Math.min(wanted, hardFdLimit());
}

/**
 * The environment of programs that are not the code under test (ip, nft, ss, chromium):
 * without the sanitizer runtime and options that a sanitized test run preloads for the
 * addons. iproute2's `ip route` trips it (an overlapping strncpy of its own) and aborts;
 * chromium under a preloaded ASan never gets as far as loading a page.
 */
export function toolEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env["LD_PRELOAD"];
  delete env["ASAN_OPTIONS"];
  delete env["UBSAN_OPTIONS"];
  return env;
}

function run(cmd: string, args: readonly string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: "utf8", env: toolEnv(), stdio: ["pipe", "pipe", "pipe"], ...(input === undefined ? {} : { input }) });
}

/** A child speaking JSON lines on stdout; keeps them for `next`. */
export class JsonChild {
  readonly child: ChildProcess;
  readonly lines: Array<Record<string, unknown>> = [];
  stderr = "";
  private waiters: Array<() => void> = [];

  constructor(argv: readonly string[]) {
    this.child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
    readline.createInterface({ input: this.child.stdout! }).on("line", (line) => {
      try {
        this.lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        this.stderr += `${line}\n`;
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.child.stderr!.on("data", (c: Buffer) => {
      if (this.stderr.length < 1 << 20) this.stderr += c.toString();
    });
    this.child.on("exit", () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** The first kept line passing `match` (removed from the list), waiting up to `timeoutMs`. */
  async next(match: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex(match);
      if (i >= 0) return this.lines.splice(i, 1)[0]!;
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`child exited (${this.child.exitCode ?? this.child.signalCode}): ${this.stderr.slice(-2000)}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no expected line within ${timeoutMs} ms; stderr: ${this.stderr.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  event(name: string, timeoutMs?: number): Promise<Record<string, unknown>> {
    return this.next((l) => l["event"] === name, timeoutMs);
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Ends the child by its pid (SIGTERM, then SIGKILL) and waits for it. */
  async stop(timeoutMs = 5000): Promise<void> {
    await redEnv.stopProcess(this.child, timeoutMs);
  }
}

/** What the client's load run reports (test/rigs/load-client.ts). */
export interface LoadResult {
  started: number;
  connected: number;
  ended: number;
  maxOpen: number;
  outcomes: Record<string, number>;
  /** Answers the server gave to the gateway (proxied) or to the client itself (not captured). */
  proxied: number;
  direct: number;
  wrongSamples: string[];
  timeoutSamples: Array<{ id: string; localPort: number | undefined; startedMs: number; connectedMs: number | null; received: number }>;
  ms: number;
  allConnectedMs?: number | null;
  skipped?: number;
}

/** Kernel state of the gateway namespace that a Node-RED deploy may add to. */
export interface GatewayState {
  listening: string[];
  nftTables: string[];
  ipRules: string[];
  routes: string[];
}

export interface FlowOptions {
  /** `a` and `b` differ in names and settings, so each full deploy changes something. */
  version: "a" | "b";
  mode: "redirect" | "tproxy";
  /** Add a flow source (eBPF), an embedded traffic broker and mqtt events. */
  events: boolean;
  /** Seconds between the publisher's stats events (0: none). */
  statsInterval?: number;
  /** The flow source's mode (default ebpf). */
  flowSourceMode?: "ebpf" | "sockdiag" | "auto";
  /** The forward node's pump (default auto). */
  pump?: "auto" | "native" | "js";
  /** What transparent in's managed rules capture (default the server's address). */
  ruleDestinations?: string;
}

/** The gateway's flow: transparent in → classify → forward (→ mqtt events, with a flow source). */
export function gatewayFlow(o: FlowOptions): object[] {
  const v = o.version;
  const ev = o.events ? ["ev"] : [];
  const flow: object[] = [
    { id: "tab", type: "tab", label: `load ${v}` },
    {
      id: "tin", z: "tab", type: "transparent in", name: `capture ${v}`, port: LISTENER_PORT, address: "", family: "ipv4", mode: o.mode,
      maxConnections: 0,
      // a: no bytes read ahead (classify reads the live connection); b: the first 64 read before the message.
      sniffBytes: v === "a" ? 0 : 64, sniffTimeout: 1, proxyProtocol: "off", proxyFrom: "",
      unclaimedTimeout: 30, unclaimedAction: "close", onClose: "keep",
      manageRules: true, ruleDestinations: o.ruleDestinations ?? `${SERVER_IP}/32`, rulePorts: String(SERVER_PORT), ruleMark: "",
      x: 120, y: 80, wires: [["cls", ...ev]],
    },
    {
      id: "cls", z: "tab", type: "classify", name: "", input: "auto", property: "payload", maxBytes: 1024, timeoutMs: 2000, serverFirstMs: 300,
      rules: [{ name: `web-${v}`, protocols: "http1" }], outputs: 2, x: 300, y: 80, wires: [["fwd", ...ev], ["rej"]],
    },
    {
      id: "fwd", z: "tab", type: "forward", name: `upstream ${v}`, action: "forward", rejectMode: "fin", targetType: "original", host: "", port: "",
      targetProp: "target", identity: "none", keepClientPort: false, mark: "", connectTimeout: 10, idleTimeout: 60, noDelay: true, pump: o.pump ?? "auto",
      x: 480, y: 60, wires: [ev],
    },
    {
      id: "rej", z: "tab", type: "forward", name: "not http", action: "reject", rejectMode: "rst", targetType: "original", host: "", port: "",
      targetProp: "target", identity: "none", keepClientPort: false, mark: "", connectTimeout: 10, idleTimeout: 0, noDelay: true, pump: "auto",
      x: 480, y: 120, wires: [[]],
    },
  ];
  if (o.events) {
    flow.push(
      {
        id: "fs", z: "tab", type: "flow source", name: "", mode: o.flowSourceMode ?? "ebpf", eventOpen: false, eventClose: true, eventState: false,
        ports: String(SERVER_PORT), cidrs: "", side: "any", cgroupId: "", delivery: "event", batchMs: 1000, ringKiB: 1024, dumpMs: 1000, firstBytes: 0,
        x: 120, y: 200, wires: [["ev"]],
      },
      {
        id: "ev", z: "tab", type: "mqtt events", name: "", broker: "br", topic: "traffic/{host}/{type}", topicFromMsg: false, convert: true, qos: "1",
        retain: false, contentType: false, userProperties: "", expiry: "", maxQueued: 100_000, overflow: "drop-oldest", maxInFlight: 1000,
        spool: false, spoolDir: "", batchSize: 0, batchMs: 1000, statsInterval: o.statsInterval ?? 0, x: 700, y: 120, wires: [[]],
      },
      {
        id: "br", type: "traffic broker", name: `broker ${v}`, mode: "embedded", embeddedHost: "127.0.0.1", embeddedPort: BROKER_PORT,
        url: `mqtt://127.0.0.1:${BROKER_PORT}`, clientId: "", protocolVersion: "4", keepalive: 60, cleanSession: true, sessionExpiry: 3600,
        reconnectPeriod: 500, tls: "", agentHost: "load", statusTopic: "traffic/{host}/status",
      },
    );
  }
  return flow;
}

/** Builds dist/ (nodes and the rig's scripts) when a source is newer than its output. */
export function ensureBuilt(): void {
  const newest = (dir: string): number => {
    let t = 0;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      t = Math.max(t, entry.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
    }
    return t;
  };
  const sources = Math.max(...["src", "nodes", "bench", "test/rigs", "native"].map((d) => newest(path.join(ROOT, d))));
  let built = 0;
  try {
    built = Math.min(fs.statSync(path.join(DIST_RIGS, "load-client.js")).mtimeMs, fs.statSync(path.join(ROOT, "dist", "nodes", "index.js")).mtimeMs);
  } catch {
    built = 0;
  }
  if (built < sources) execFileSync(process.execPath, [path.join(ROOT, "scripts", "build.js")], { cwd: ROOT, stdio: "pipe" });
}

export interface RigOptions {
  /** The first flow deployed. */
  flow: FlowOptions;
  /** Deployed instead of gatewayFlow(flow) when given (its `transparent in` listens on LISTENER_PORT). */
  flows?: object[];
  /** RLIMIT_NOFILE wanted for Node-RED, the client and the server (see fdLimitFor). */
  nofile: number;
  /** Answer bytes per connection. */
  bodyBytes: number;
  /** The server holds every answer until this many connections are open at once (0: none). */
  barrier?: number;
  barrierTimeoutMs?: number;
}

export class LoadRig {
  readonly prefix = `tpl${process.pid % 100000}`;
  readonly nsClient = `${this.prefix}-c`;
  readonly nsGateway = `${this.prefix}-g`;
  readonly nsServer = `${this.prefix}-s`;
  private readonly made: string[] = [];
  private readonly children: JsonChild[] = [];
  private red: { child: ChildProcess; log(): string } | null = null;
  private agent: JsonChild | null = null;
  private server: JsonChild | null = null;
  private userDir = "";
  private requestId = 0;

  /** The RLIMIT_NOFILE the children really get. */
  readonly nofile: number;

  constructor(readonly options: RigOptions) {
    this.nofile = fdLimitFor(options.nofile);
  }

  /** Pid of the Node-RED process (`ip netns exec` and `prlimit` exec in place). */
  get pid(): number {
    return this.red!.child.pid!;
  }

  /** Whether the Node-RED process still runs. */
  get alive(): boolean {
    return this.red !== null && this.red.child.exitCode === null && this.red.child.signalCode === null;
  }

  get log(): string {
    return this.red?.log() ?? "";
  }

  async start(): Promise<void> {
    ensureBuilt();
    this.namespaces();
    this.userDir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-load-"));
    redEnv.prepareUserDir(this.userDir, {
      port: ADMIN_PORT,
      flows: this.options.flows ?? gatewayFlow(this.options.flow),
    });
    // Heap figures after a full collection, so garbage is not mistaken for growth: an
    // Admin API route (Node-RED's httpAdminMiddleware setting) that runs gc(), which
    // --expose-gc provides.
    fs.appendFileSync(
      path.join(this.userDir, "settings.js"),
      `module.exports.httpAdminMiddleware = function (req, res, next) {
  if (req.method === "POST" && req.url === "/load-rig/gc") {
    global.gc();
    res.json(process.memoryUsage());
    return;
  }
  next();
};
`,
    );
    this.server = this.spawn(this.nsServer, [path.join(DIST_RIGS, "load-server.js"), JSON.stringify({ host: SERVER_IP, port: SERVER_PORT, barrier: this.options.barrier ?? 0, barrierTimeoutMs: this.options.barrierTimeoutMs ?? 60_000, bodyBytes: this.options.bodyBytes })]);
    await this.server.event("listening");
    const env = { ...process.env, NODE_OPTIONS: `${process.env["NODE_OPTIONS"] ?? ""} --expose-gc`.trim() };
    this.red = await redEnv.startNodeRed(this.userDir, { port: ADMIN_PORT, timeoutMs: 90_000, env, wrap: this.prefixFor(this.nsGateway) });
    this.agent = this.spawn(this.nsGateway, [path.join(DIST_RIGS, "ns-agent.js")]);
    await this.waitListening();
  }

  private namespaces(): void {
    for (const ns of [this.nsClient, this.nsGateway, this.nsServer]) {
      try {
        run("ip", ["netns", "del", ns]);
      } catch {
        // not left over: fine
      }
      run("ip", ["netns", "add", ns]);
      this.made.push(ns);
      this.inNs(ns, "ip", ["link", "set", "lo", "up"]);
    }
    const link = (a: string, aAddr: string, b: string, bAddr: string, name: string): void => {
      run("ip", ["link", "add", `${name}a`, "netns", a, "type", "veth", "peer", "name", `${name}b`, "netns", b]);
      this.inNs(a, "ip", ["addr", "add", aAddr, "dev", `${name}a`]);
      this.inNs(b, "ip", ["addr", "add", bAddr, "dev", `${name}b`]);
      this.inNs(a, "ip", ["link", "set", `${name}a`, "up"]);
      this.inNs(b, "ip", ["link", "set", `${name}b`, "up"]);
    };
    link(this.nsClient, `${CLIENT_IP}/24`, this.nsGateway, `${GATEWAY_CLIENT_SIDE}/24`, "lc");
    link(this.nsGateway, `${GATEWAY_SERVER_SIDE}/24`, this.nsServer, `${SERVER_IP}/24`, "ls");
    this.inNs(this.nsClient, "ip", ["route", "add", "default", "via", GATEWAY_CLIENT_SIDE]);
    this.inNs(this.nsServer, "ip", ["route", "add", "default", "via", GATEWAY_SERVER_SIDE]);
    // A gateway forwards; ten thousand connections each way need ports and queue room.
    for (const ns of [this.nsClient, this.nsGateway, this.nsServer]) {
      this.inNs(ns, "sysctl", ["-qw", "net.ipv4.ip_local_port_range=10000 65000", "net.core.somaxconn=16384", "net.ipv4.tcp_max_syn_backlog=16384"]);
    }
    this.inNs(this.nsGateway, "sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
  }

  inNs(ns: string, cmd: string, args: readonly string[], input?: string): string {
    return run("ip", ["netns", "exec", ns, cmd, ...args], input);
  }

  /** Starts `argv` in namespace `ns` under the rig's fd limit; close() ends it. Its pid is the program's own. */
  spawnIn(ns: string, argv: readonly string[]): JsonChild {
    const child = new JsonChild([...this.prefixFor(ns), ...argv]);
    this.children.push(child);
    return child;
  }

  /**
   * What a child runs under: the namespace, the fd limit, and a parent-death signal, so
   * that a run killed from outside (its close() never called) does not leave them running.
   */
  private prefixFor(ns: string): string[] {
    return ["ip", "netns", "exec", ns, "prlimit", `--nofile=${this.nofile}:${this.nofile}`, "setpriv", "--pdeathsig", "TERM", "--"];
  }

  private spawn(ns: string, argv: readonly string[]): JsonChild {
    return this.spawnIn(ns, [process.execPath, ...argv]);
  }

  /** Waits until the listener port is open in the gateway (the flow has started). */
  async waitListening(timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.gatewayState().listening.some((l) => l.endsWith(`:${LISTENER_PORT}`))) {
      if (Date.now() > end) throw new Error(`listener :${LISTENER_PORT} not open after ${timeoutMs} ms; log:\n${this.log.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Sends one command to the gateway agent and waits for its answer. */
  async agentCall(cmd: Record<string, unknown>, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const id = ++this.requestId;
    this.agent!.send(JSON.stringify({ id, ...cmd }));
    const answer = await this.agent!.next((l) => l["id"] === id, timeoutMs);
    if (typeof answer["error"] === "string") throw new Error(`agent: ${answer["error"]}`);
    return answer;
  }

  /** A full deploy through the Admin API (every node stopped and started again). */
  async deploy(flows: object[]): Promise<void> {
    const r = await this.agentCall({
      op: "fetch",
      url: `http://127.0.0.1:${ADMIN_PORT}/flows`,
      method: "POST",
      headers: { "content-type": "application/json", "Node-RED-Deployment-Type": "full", "Node-RED-API-Version": "v1" },
      body: JSON.stringify(flows),
    });
    if (r["status"] !== 204 && r["status"] !== 200) throw new Error(`deploy: HTTP ${String(r["status"])} ${String(r["body"])}`);
  }

  /** Stops Node-RED as a service manager does (SIGTERM) and waits until it has exited. */
  async stopNodeRed(): Promise<void> {
    if (this.red !== null) await redEnv.stopProcess(this.red.child, 15_000);
  }

  /** Node-RED's process.memoryUsage() right after a full garbage collection. */
  async memory(): Promise<{ rss: number; heapTotal: number; heapUsed: number; external: number; arrayBuffers: number }> {
    const r = await this.agentCall({ op: "fetch", url: `http://127.0.0.1:${ADMIN_PORT}/load-rig/gc`, method: "POST" });
    if (r["status"] !== 200) throw new Error(`gc: HTTP ${String(r["status"])} ${String(r["body"]).slice(0, 200)}`);
    return JSON.parse(String(r["body"])) as never;
  }

  /** Subscribes the agent to the embedded broker (counted by event type). */
  async subscribe(topic = "traffic/#"): Promise<void> {
    await this.agentCall({ op: "subscribe", url: `mqtt://127.0.0.1:${BROKER_PORT}`, topic });
  }

  async mqttCounts(): Promise<{ byType: Record<string, number>; stats: Record<string, { sent: number; dropped: number; queued: number; inFlight: number }>; connects: number }> {
    return (await this.agentCall({ op: "counts" })) as never;
  }

  sample(): ProcessSample {
    return sampleProcess(this.pid);
  }

  /** Listening TCP sockets, nft tables, ip rules and routes in the gateway namespace. */
  gatewayState(): GatewayState {
    const lines = (text: string): string[] => text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
    return {
      listening: lines(this.inNs(this.nsGateway, "ss", ["-Htln"])).map((l) => l.split(/\s+/)[3]!).sort(),
      nftTables: lines(this.inNs(this.nsGateway, "nft", ["list", "tables"])).sort(),
      ipRules: lines(this.inNs(this.nsGateway, "ip", ["rule", "show"])),
      routes: lines(this.inNs(this.nsGateway, "ip", ["route", "show", "table", "all"])).sort(),
    };
  }

  /** Runs the load client in the client namespace; `burst` resolves with its result. */
  startClient(options: Record<string, unknown>): JsonChild {
    return this.spawn(this.nsClient, [
      path.join(DIST_RIGS, "load-client.js"),
      JSON.stringify({ host: SERVER_IP, port: SERVER_PORT, bodyBytes: this.options.bodyBytes, proxyAddress: GATEWAY_SERVER_SIDE, ...options }),
    ]);
  }

  async runClient(options: Record<string, unknown>, timeoutMs: number): Promise<LoadResult> {
    const client = this.startClient(options);
    const done = await client.event("done", timeoutMs);
    await client.stop();
    return done as unknown as LoadResult;
  }

  /** Makes the server hold its answers until `n` connections are open at once (or `timeoutMs`), then `holdMs` more. */
  async armBarrier(n: number, timeoutMs: number, holdMs = 0): Promise<void> {
    this.server!.send(`barrier ${n} ${timeoutMs} ${holdMs}`);
    await this.server!.event("armed");
  }

  /** Resolves when the barrier fell (all requests held, or its timeout): connections open, requests held. */
  barrierReleased(timeoutMs: number): Promise<{ open: number; held: number }> {
    return this.server!.event("barrier", timeoutMs) as never;
  }

  /** The upstream server's counters (open now, most open at once, answers sent). */
  async serverStats(): Promise<{ open: number; maxOpen: number; served: number }> {
    this.server!.send("stats");
    return (await this.server!.event("stats")) as never;
  }

  /** Ends every process this rig started (by pid) and deletes its namespaces. */
  async close(): Promise<void> {
    if (this.red !== null) await redEnv.stopProcess(this.red.child, 15_000);
    for (const c of this.children.splice(0)) await c.stop(3000);
    for (const ns of this.made.splice(0)) {
      try {
        run("ip", ["netns", "del", ns]);
      } catch {
        // already gone
      }
    }
    if (this.userDir !== "") fs.rmSync(this.userDir, { recursive: true, force: true });
  }
}

/** Polls `check` every 100 ms until it holds or `timeoutMs` passes; returns whether it held. */
export async function settle(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (check()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FlowSource, type FlowSourceOptions } from "../../src/flow/source";
import { cgroupV2Root, probeFlowFeatures, trialLoad } from "../../src/flow/features";
import type { FlowCloseEvent, FlowConnectionEvent, LostEvent } from "../../src/events/types";
import { IN_CI, IS_ROOT, skipWithout } from "../support/system";
import { inNs, Namespaces } from "../support/netns";
import { childSource, ebpfDescribe, EventLog, FIXTURES, readJsonLines, stopProcess } from "./flow-support";

// UDP sockets in the flow source: eBPF (cgroup sock create/release + cgroup_skb counts) on
// processes in two namespaces this suite makes, and the sock_diag fallback on loopback.
const run = ebpfDescribe("flow UDP kernel");

const CLIENT4 = "203.0.113.10";
const SERVER4 = "203.0.113.20";
const CLIENT6 = "2001:db8:10::10";
const SERVER6 = "2001:db8:10::20";

/** A udp-peer.js process: its pid and the JSON lines it printed. */
interface Peer {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: Array<Record<string, number | boolean>>;
  /** The first line that has `key`. */
  line(key: string): Promise<Record<string, number | boolean>>;
}

const children: ChildProcess[] = [];
const sources: FlowSource[] = [];

function peer(args: readonly string[], netns?: string): Peer {
  const argv = [path.join(FIXTURES, "udp-peer.js"), ...args];
  // `ip netns exec` execs node in place: the same pid.
  const child = netns === undefined ? spawn(process.execPath, argv, { stdio: ["pipe", "pipe", "pipe"] }) : spawn("ip", ["netns", "exec", netns, process.execPath, ...argv], { stdio: ["pipe", "pipe", "pipe"] });
  children.push(child);
  const lines: Array<Record<string, number | boolean>> = [];
  let err = "";
  const waiters: Array<() => void> = [];
  readJsonLines<Record<string, number | boolean>>(child.stdout!, (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on("data", (c) => (err += c.toString()));
  const line = (key: string): Promise<Record<string, number | boolean>> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`udp-peer ${args.join(" ")}: no "${key}" line; stderr: ${err}`)), 10_000);
      const check = (): void => {
        const hit = lines.find((l) => key in l);
        if (hit !== undefined) {
          clearTimeout(timer);
          resolve(hit);
        } else {
          waiters.push(check);
        }
      };
      check();
    });
  return { child, pid: child.pid!, lines, line };
}

function source(options: FlowSourceOptions, log: EventLog): FlowSource {
  const s = new FlowSource({ reportExisting: false, ...options }, log.push);
  sources.push(s);
  s.start();
  return s;
}

afterEach(async () => {
  for (const s of sources.splice(0)) s.stop();
  for (const c of children.splice(0)) await stopProcess(c);
  for (const log of EventLog.all.splice(0)) expect(log.invalid).toEqual([]);
});

/** UDP events of the socket whose local port is `localPort`. */
function udpOf(log: EventLog, localPort: number): FlowConnectionEvent[] {
  return log.connections().filter((e) => e.protocol === "udp" && e.localPort === localPort);
}

function udpCloseOf(log: EventLog, localPort: number): FlowCloseEvent | undefined {
  return udpOf(log, localPort).find((e): e is FlowCloseEvent => e.type === "flow-close");
}

/** One open, then one close, one flow id. */
function expectOpenThenClose(events: FlowConnectionEvent[]): void {
  expect(events.map((e) => e.type)).toEqual(["flow-open", "flow-close"]);
  expect(new Set(events.map((e) => e.flowId)).size).toBe(1);
}

run("UDP sockets from eBPF (cgroup sock create/release, cgroup_skb counts)", () => {
  const ns = new Namespaces(`fu${process.pid % 100000}`);
  let client = "";
  let server = "";
  beforeAll(() => {
    client = ns.add("c");
    server = ns.add("s");
    const ifName = `fu${process.pid % 100000}`;
    ns.link(client, `${CLIENT4}/24`, server, `${SERVER4}/24`, ifName);
    inNs(client, "ip", ["-6", "addr", "add", `${CLIENT6}/64`, "dev", `${ifName}a`, "nodad"]);
    inNs(server, "ip", ["-6", "addr", "add", `${SERVER6}/64`, "dev", `${ifName}b`, "nodad"]);
  });
  afterAll(() => ns.cleanup());
  const netnsInode = (name: string): number => fs.statSync(`/run/netns/${name}`).ino;

  /**
   * A server on `port` in the server namespace and a client in the client namespace that
   * sends `datagrams` of `bytes`, each answered with `reply` bytes; resolves once `log` has
   * the UDP close of both sockets. A fixed port is safe in the namespaces this suite made.
   */
  async function exchange(
    log: EventLog,
    o: { type: "udp4" | "udp6"; host: string; port: number; datagrams: number; bytes: number; reply: number; how: "connect" | "sendto" },
  ): Promise<{ srv: Peer; cli: Peer; localPort: number; received: Record<string, number | boolean> }> {
    const srv = peer(["server", o.type, o.host, String(o.port), String(o.datagrams), String(o.reply)], server);
    await srv.line("port");
    const cli = peer(["client", o.type, o.host, String(o.port), String(o.datagrams), String(o.bytes), o.how], client);
    const received = await cli.line("localPort");
    await srv.line("done");
    const localPort = received["localPort"] as number;
    await log.waitFor(() => udpCloseOf(log, localPort) !== undefined && udpCloseOf(log, o.port) !== undefined, "both UDP close events");
    return { srv, cli, localPort, received };
  }

  it("a connected IPv4 client and its server: owner, addresses, datagrams and bytes each way, open then close", async () => {
    const log = new EventLog();
    // The server's socket is made after the start, so it is no partial flow.
    const port = 5301;
    source({ mode: "ebpf", protocols: "udp", ports: [port] }, log);
    const { srv, cli, localPort, received } = await exchange(log, { type: "udp4", host: SERVER4, port, datagrams: 3, bytes: 100, reply: 40, how: "connect" });
    expect(received).toMatchObject({ received: 3, receivedBytes: 120 });

    expectOpenThenClose(udpOf(log, localPort));
    expect(udpCloseOf(log, localPort)).toMatchObject({
      protocol: "udp",
      source: "ebpf",
      side: "client",
      pid: cli.pid,
      comm: "flowudpc",
      ownerFrom: "create",
      family: 4,
      localIp: CLIENT4,
      remoteIp: SERVER4,
      remotePort: port,
      datagramsSent: 3,
      datagramsReceived: 3,
      bytesSent: 300,
      bytesReceived: 120,
      bytesExact: true,
      established: true,
      lastState: "ESTABLISHED",
      end: "normal",
      partial: false,
      netns: netnsInode(client),
    });
    expectOpenThenClose(udpOf(log, port));
    const sc = udpCloseOf(log, port)!;
    expect(sc).toMatchObject({
      side: "server",
      pid: srv.pid,
      comm: "flowudps",
      localIp: SERVER4,
      remoteIp: CLIENT4,
      remotePort: localPort,
      datagramsSent: 3,
      datagramsReceived: 3,
      bytesSent: 120,
      bytesReceived: 300,
      // The server never connected: it answered each sender by address.
      established: false,
      lastState: "CLOSE",
      netns: netnsInode(server),
    });
    expect(sc.durationMs).toBeGreaterThan(0);
    expect(sc.flowId).not.toBe(udpCloseOf(log, localPort)!.flowId);
    // Only UDP was asked for.
    expect(log.connections().every((e) => e.protocol === "udp")).toBe(true);
  });

  it("an IPv6 client that is not connected (sendto from ::): its address comes from its first datagram", async () => {
    const log = new EventLog();
    const port = 5302;
    source({ mode: "ebpf", protocols: "both", ports: [port] }, log);
    const { srv, cli, localPort } = await exchange(log, { type: "udp6", host: SERVER6, port, datagrams: 2, bytes: 1200, reply: 7, how: "sendto" });
    expectOpenThenClose(udpOf(log, localPort));
    expect(udpCloseOf(log, localPort)).toMatchObject({
      family: 6,
      side: "client",
      pid: cli.pid,
      localIp: CLIENT6,
      remoteIp: SERVER6,
      remotePort: port,
      datagramsSent: 2,
      datagramsReceived: 2,
      bytesSent: 2400,
      bytesReceived: 14,
      established: false,
    });
    expect(udpCloseOf(log, port)).toMatchObject({ family: 6, side: "server", pid: srv.pid, remoteIp: CLIENT6, remotePort: localPort, bytesReceived: 2400, bytesSent: 14 });
  });

  it("the default (TCP only) reports no UDP socket that a UDP source beside it sees", async () => {
    const log = new EventLog();
    const udp = new EventLog();
    const port = 5303;
    source({ mode: "ebpf", ports: [port] }, log);
    source({ mode: "ebpf", protocols: "udp", ports: [port] }, udp);
    await exchange(udp, { type: "udp4", host: SERVER4, port, datagrams: 1, bytes: 1, reply: 1, how: "connect" });
    expect(log.connections()).toEqual([]);
  });

  it("the kernel cgroup filter: only the client moved into the test cgroup is reported", async (ctx) => {
    const root = cgroupV2Root();
    if (root === null) {
      if (IN_CI) throw new Error("cgroup v2 is not mounted");
      ctx.skip(true, "cgroup v2 is not mounted");
      return;
    }
    const dir = path.join(root, `flowudp${process.pid}`);
    fs.mkdirSync(dir);
    try {
      const log = new EventLog();
      const srv = peer(["server", "udp4", SERVER4, "0", "2", "5"], server);
      const port = (await srv.line("port"))["port"] as number;
      // The cgroup v2 id is the cgroup directory's inode.
      source({ mode: "ebpf", protocols: "udp", ports: [port], cgroupId: String(fs.statSync(dir).ino) }, log);
      const inside = peer(["client", "udp4", SERVER4, String(port), "1", "10", "connect", "0", "wait"], client);
      const outside = peer(["client", "udp4", SERVER4, String(port), "1", "10", "connect", "0", "wait"], client);
      fs.writeFileSync(path.join(dir, "cgroup.procs"), String(inside.pid));
      inside.child.stdin!.write("go\n");
      outside.child.stdin!.write("go\n");
      const inPort = (await inside.line("localPort"))["localPort"] as number;
      const outPort = (await outside.line("localPort"))["localPort"] as number;
      await log.waitFor(() => udpCloseOf(log, inPort) !== undefined, "the close of the client in the cgroup");
      expect(udpCloseOf(log, inPort)).toMatchObject({ pid: inside.pid, cgroupId: String(fs.statSync(dir).ino), datagramsSent: 1, bytesSent: 10 });
      await srv.line("done");
      await new Promise((r) => setTimeout(r, 300));
      // Neither the client outside the cgroup nor the server (created before, elsewhere).
      expect(udpOf(log, outPort)).toEqual([]);
      expect(udpOf(log, port)).toEqual([]);
    } finally {
      // A process still inside goes back to the root, so the cgroup can be removed.
      for (const pid of fs.readFileSync(path.join(dir, "cgroup.procs"), "utf8").split("\n").filter((p) => p !== "")) {
        fs.writeFileSync(path.join(root, "cgroup.procs"), pid);
      }
      fs.rmdirSync(dir);
    }
  });

  it("doctor: the trial load attaches the UDP programs, and the feature report says UDP capture is available", () => {
    const trial = trialLoad();
    expect(trial.available).toBe(true);
    expect(trial.detail).toMatch(/sock_create yes, sock_release yes/);
    expect(probeFlowFeatures().find((f) => f.feature.startsWith("UDP sockets"))).toMatchObject({ available: true, detail: expect.stringContaining(cgroupV2Root()!) });
  });

  it("losses are counted: a burst of sockets through a 4 KiB ring, every socket's open and close delivered or counted lost", async () => {
    const log = new EventLog();
    const sockets = 400;
    // Nobody listens on port 9 in the server namespace this suite made.
    const s = source({ mode: "ebpf", protocols: "udp", ports: [9], ringBytes: 4096, lostCheckMs: 50 }, log);
    const burst = peer(["burst", "udp4", SERVER4, "9", String(sockets)], client);
    await burst.line("sockets");
    const mine = (): FlowConnectionEvent[] => log.connections().filter((e) => e.protocol === "udp" && e.remotePort === 9 && e.pid === burst.pid);
    const lost = (): number => log.events.filter((e): e is LostEvent => e.type === "lost").reduce((n, e) => n + e.count, 0);
    await log.waitFor(() => mine().length + lost() >= 2 * sockets, "every record delivered or counted lost", 10_000);
    await new Promise((r) => setTimeout(r, 200));
    // 400 sockets' 800 records of 176 bytes overrun a 4 KiB ring: the loss path really runs.
    expect(lost()).toBeGreaterThan(0);
    expect(mine().length + lost()).toBe(2 * sockets);
    expect(s.stats().kernelLost + s.stats().jsLost).toBe(lost());
    expect(new Set(mine().map((e) => e.id)).size).toBe(mine().length);
  });
});

describe("UDP sockets from the sock_diag fallback (own network namespace, loopback)", () => {
  it("a client connected after it was bound, and its server: owner from /proc, addresses, open and close", async () => {
    const log = new EventLog();
    const srv = peer(["server", "udp4", "127.0.0.1", "0", "3", "9"]);
    const port = (await srv.line("port"))["port"] as number;
    const s = source({ mode: "sockdiag", protocols: "udp", ports: [port], dumpIntervalMs: 100, reportExisting: true }, log);
    expect(s.status()?.mode).toBe("sockdiag");
    // Dumps see it bound without a peer (no match for the port) for 300 ms, then connected;
    // held open long enough for a dump to see that.
    const cli = peer(["client", "udp4", "127.0.0.1", String(port), "3", "50", "late-connect", "600"]);
    const localPort = (await cli.line("localPort"))["localPort"] as number;
    await srv.line("done");
    await log.waitFor(() => udpCloseOf(log, localPort) !== undefined && udpCloseOf(log, port) !== undefined, "both UDP close events");
    expectOpenThenClose(udpOf(log, localPort));
    expect(udpOf(log, localPort)[0]).toMatchObject({ source: "sockdiag", side: "client", pid: cli.pid, comm: "flowudpc", ownerFrom: "proc", partial: false });
    expect(udpCloseOf(log, localPort)).toMatchObject({
      protocol: "udp",
      source: "sockdiag",
      side: "client",
      pid: cli.pid,
      localIp: "127.0.0.1",
      remoteIp: "127.0.0.1",
      remotePort: port,
      established: true,
      // The kernel's UDP dump has no counters.
      bytesExact: false,
    });
    expect(udpCloseOf(log, localPort)).not.toHaveProperty("datagramsSent");
    // The server existed before the start: partial, its side unknown (not connected).
    expectOpenThenClose(udpOf(log, port));
    expect(udpCloseOf(log, port)).toMatchObject({ source: "sockdiag", side: "unknown", pid: srv.pid, comm: "flowudps", localIp: "127.0.0.1", partial: true, established: false });
  });
});

describe("UDP without CAP_NET_ADMIN/CAP_SYS_ADMIN (its eBPF programs are cgroup programs)", () => {
  it("UDP alone falls back to sock_diag in auto mode and says why; UDP beside TCP keeps TCP on eBPF and says UDP is off", async (ctx) => {
    ctx.skip(!IS_ROOT, "dropping capabilities from a child needs root");
    const setpriv = skipWithout(ctx, "setpriv");
    const srv = peer(["server", "udp4", "127.0.0.1", "0", "1", "4"]);
    const port = (await srv.line("port"))["port"] as number;
    const udpOnly = childSource(setpriv, "-net_admin,-sys_admin", "auto", port, "udp");
    const both = childSource(setpriv, "-net_admin,-sys_admin", "ebpf", port, "both");
    children.push(udpOnly.child, both.child);
    const log = new EventLog();
    await log.waitFor(() => udpOnly.lines.length > 0 && both.lines.length > 0, "both children's status", 10_000);
    expect(udpOnly.lines[0]!.status).toMatchObject({ mode: "sockdiag", ebpfUnavailable: expect.stringMatching(/CAP_NET_ADMIN/) });
    expect(both.lines[0]!.status).toMatchObject({ mode: "ebpf", degraded: expect.stringMatching(/UDP capture off.*CAP_NET_ADMIN/) });
    // The fallback still reports the UDP socket (held open for its dumps).
    const cli = peer(["client", "udp4", "127.0.0.1", String(port), "1", "6", "connect", "600"]);
    const localPort = (await cli.line("localPort"))["localPort"] as number;
    const closeOf = (lines: typeof udpOnly.lines): FlowCloseEvent | undefined =>
      lines.map((l) => l.event).find((e): e is FlowCloseEvent => e?.type === "flow-close" && e.protocol === "udp" && e.localPort === localPort);
    await log.waitFor(() => closeOf(udpOnly.lines) !== undefined, "the sock_diag UDP close", 5000);
    expect(closeOf(udpOnly.lines)).toMatchObject({ source: "sockdiag", side: "client", pid: cli.pid, remotePort: port });
    expect(both.lines.some((l) => l.event?.type !== undefined && l.event.type !== "lost" && l.event.protocol === "udp")).toBe(false);
  });
});

// UDP through a real Node-RED flow on the real kernel: client 203.0.113.10 / 2001:db8:c::10
// → gateway (transparent in, protocol udp, tproxy, managed rules → classify → forward) →
// server 198.51.100.20 / 2001:db8:5::20, in namespaces this file makes and removes (also on
// failure). dig through the gateway with a name routed or refused by a classify rule, an
// echo server bound to one address that sees the client's own address, and 10,000 sessions
// opened and idled out with the gateway's fds and memory back where they were.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { IS_ROOT, systemCommand } from "../support/system";
import { ensureBuilt, inNs, Namespaces, NdjsonChild, untilGreen } from "../support/netns";

const nft = IS_ROOT ? systemCommand("nft") : { path: null, skip: true };
const dig = IS_ROOT ? systemCommand("dig") : { path: null, skip: true };
const PORT = 15053;
const ROOT = path.resolve(__dirname, "..", "..");
const NODE_RED_CHILD = path.join(ROOT, "test", "support", "node-red-child.js");

/** A DNS server (UDP, and TCP as RFC 7766 frames it) answering every A query with 192.0.2.55, and a UDP echo server answering with the peer it saw; all bound to the given addresses only. */
const SERVER = `
const dgram = require('dgram');
const net = require('net');
const addrs = JSON.parse(process.argv[1]);
let up = 0;
const ready = () => { if (++up === addrs.length * 3) console.log(JSON.stringify({ event: 'up' })); };
const answer = (q) => {
  let i = 12; while (q[i] !== 0) i += q[i] + 1; const qend = i + 5;
  const head = Buffer.from([q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
  const a = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 55]);
  return Buffer.concat([head, q.subarray(12, qend), a]);
};
for (const a of addrs) {
  const dns = dgram.createSocket(a.includes(':') ? 'udp6' : 'udp4');
  dns.on('message', (q, r) => dns.send(answer(q), r.port, r.address));
  dns.bind(53, a, ready);
  net.createServer((c) => {
    let got = Buffer.alloc(0);
    c.on('error', () => {});
    c.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length < 2 || got.length < 2 + got.readUInt16BE(0)) return;
      const r = answer(got.subarray(2, 2 + got.readUInt16BE(0)));
      const len = Buffer.alloc(2);
      len.writeUInt16BE(r.length);
      c.end(Buffer.concat([len, r]));
    });
  }).listen(53, a, ready);
  const echo = dgram.createSocket(a.includes(':') ? 'udp6' : 'udp4');
  echo.on('message', (m, r) => echo.send(JSON.stringify({ peer: r.address, port: r.port, got: m.toString() }), r.port, r.address));
  echo.bind(7, a, ready);
}`;

/** Sends one datagram from a fresh socket and waits for an answer (or an error) on it. */
const CLIENT = `
const dgram = require('dgram');
const o = JSON.parse(process.argv[1]);
const s = dgram.createSocket(o.host.includes(':') ? 'udp6' : 'udp4');
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code, local: s.address() })); process.exit(0); });
s.on('message', (m) => { console.log(JSON.stringify({ answer: m.toString(), local: s.address() })); process.exit(0); });
s.connect(o.port, o.host, () => s.send(o.hex === undefined ? o.send : Buffer.from(o.hex, 'hex')));
setTimeout(() => { console.log(JSON.stringify({ error: 'timeout' })); process.exit(0); }, o.timeoutMs);`;

/**
 * One connected socket for a whole test: each line on stdin ({ prefix, count, gapMs }) sends
 * `count` datagrams one after the other, each waiting for its answer (at most timeoutMs),
 * and prints the answers (null for none).
 */
const STREAM = `
const dgram = require('dgram');
const readline = require('readline');
const o = JSON.parse(process.argv[1]);
const s = dgram.createSocket(o.host.includes(':') ? 'udp6' : 'udp4');
let waiting = null;
s.on('error', () => {});
s.on('message', (m) => { const w = waiting; waiting = null; if (w) w(m.toString()); });
const ask = (text) => new Promise((resolve) => {
  const t = setTimeout(() => { waiting = null; resolve(null); }, o.timeoutMs);
  waiting = (a) => { clearTimeout(t); resolve(a); };
  s.send(text);
});
s.connect(o.port, o.host, () => {
  console.log(JSON.stringify({ event: 'ready', local: s.address() }));
  readline.createInterface({ input: process.stdin }).on('line', async (line) => {
    const r = JSON.parse(line);
    const answers = [];
    for (let i = 0; i < r.count; i++) {
      answers.push(await ask(r.prefix + i));
      await new Promise((res) => setTimeout(res, r.gapMs));
    }
    console.log(JSON.stringify({ event: 'answers', answers }));
  });
});`;

/** A DNS query for an A record of `name` (RFC 1035 4.1), as hex. */
function dnsQuery(name: string): string {
  const labels = name.split(".").map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, "latin1")]));
  return Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, 0, 1, 0, 1])]).toString("hex");
}

/** Opens \`count\` sessions, one datagram each from its own socket, 100 at a time, \`pauseMs\` apart (the gateway's socket buffer must not overflow). */
const MANY = `
const dgram = require('dgram');
const o = JSON.parse(process.argv[1]);
let sent = 0;
const step = () => {
  const open = [];
  for (let i = 0; i < 100 && sent < o.count; i++, sent++) {
    // A port of its own each: the kernel's random choice would repeat ports within the idle
    // time, and a repeated port is the same session.
    const s = dgram.createSocket('udp4');
    s.on('error', () => {});
    const port = o.firstPort + sent;
    open.push(new Promise((r) => s.bind(port, () => s.send('x', o.port, o.host, () => { s.close(); r(); }))));
  }
  Promise.all(open).then(() => (sent < o.count ? setTimeout(step, o.pauseMs) : console.log(JSON.stringify({ event: 'sent', sent }))));
};
step();`;

interface Msg {
  event: string;
  at?: string;
  msg?: { payload?: Record<string, unknown>; originalDst?: Record<string, unknown>; classification?: { protocol: string; rule: string | null; fields: Record<string, unknown> } };
}

describe.skipIf(!IS_ROOT || nft.skip)("UDP sessions through transparent in and forward", () => {
  const ns = new Namespaces(`tpu${process.pid % 100000}`);
  const children: NdjsonChild[] = [];
  let tc = "";
  let tg = "";
  let ts = "";

  const start = (argv: string[]): NdjsonChild => {
    const child = new NdjsonChild(argv);
    children.push(child);
    return child;
  };
  const stop = async (child: NdjsonChild): Promise<void> => {
    child.kill();
    await child.exited();
  };
  /** Node-RED in the gateway namespace (a forwarded TPROXY session holds two fds: upstream and reply). */
  const nodeRed = (flow: object[], prefix: string[] = []): NdjsonChild => start(["ip", "netns", "exec", tg, ...prefix, process.execPath, "--expose-gc", NODE_RED_CHILD, JSON.stringify(flow)]);
  const client = (o: { host: string; port: number; send?: string; hex?: string; timeoutMs?: number }): { answer?: string; error?: string; local?: { address: string; port: number } } =>
    JSON.parse(inNs(tc, process.execPath, ["-e", CLIENT, JSON.stringify({ timeoutMs: 3000, ...o })]));
  const running = untilGreen;

  beforeAll(() => {
    ensureBuilt();
    ({ client: tc, gateway: tg, server: ts } = ns.gatewayPath("", ["ux", "uy"]));
  });
  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (c.child.exitCode !== null || c.child.signalCode !== null) continue;
      c.kill();
      await c.exited();
    }
  });
  afterAll(() => {
    for (const c of children) c.kill();
    ns.cleanup();
  });

  const policyFlow = (): object[] => [
    {
      id: "tin", type: "transparent in", port: PORT, protocol: "udp", mode: "tproxy", family: "dual", udpIdleTimeout: 1, unclaimedTimeout: 5,
      manageRules: true, ruleDestinations: "198.51.100.20/32, 2001:db8:5::20/128", rulePorts: "53, 7", wires: [["cls", "odst"]],
    },
    { id: "odst", type: "original dst", method: "auto", property: "originalDst", wires: [["seen"]] },
    { id: "seen", type: "helper" },
    {
      id: "cls", type: "classify", rules: [{ name: "blocked", protocols: "dns", hosts: "blocked.example" }, { name: "dns", protocols: "dns" }],
      wires: [["rej"], ["fwd"], ["fwd"]],
    },
    { id: "rej", type: "forward", action: "reject", udpRejectMode: "icmp", wires: [["sum"]] },
    { id: "fwd", type: "forward", action: "forward", targetType: "original", identity: "transparent", keepClientPort: true, wires: [["sum"]] },
    { id: "sum", type: "helper" },
  ];

  it.skipIf(dig.skip)("dig through the gateway: a name a classify rule routes is answered, one it rejects is refused (ICMP), and original dst reads the UDP session", async () => {
    const server = start(["ip", "netns", "exec", ts, process.execPath, "-e", SERVER, JSON.stringify(["198.51.100.20", "2001:db8:5::20"])]);
    await server.next(["up"]);
    const red = nodeRed(policyFlow());
    await running(red, "tin");
    const messages: Msg[] = [];
    const collect = async (at: string, count: number): Promise<Msg[]> => {
      for (;;) {
        const found = messages.filter((m) => m.at === at);
        if (found.length >= count) return found;
        messages.push((await red.next(["message"], 10_000)) as Msg);
      }
    };
    const ok = spawnSync("ip", ["netns", "exec", tc, dig.path!, "@198.51.100.20", "allowed.example", "A", "+tries=1", "+time=3", "+short"], { encoding: "utf8", timeout: 10_000 });
    expect(ok.stdout.trim()).toBe("192.0.2.55");
    const started = Date.now();
    const refused = spawnSync("ip", ["netns", "exec", tc, dig.path!, "@198.51.100.20", "blocked.example", "A", "+tries=1", "+time=5"], { encoding: "utf8", timeout: 10_000 });
    // ICMP port unreachable ends dig's wait at once; a drop would have taken the whole +time.
    expect(`${refused.stdout}${refused.stderr}`).toMatch(/connection refused/i);
    expect(Date.now() - started).toBeLessThan(4000);

    const seen = await collect("seen", 2);
    for (const m of seen) {
      expect(m.msg!.payload).toMatchObject({ protocol: "udp", mode: "tproxy", remoteAddress: "203.0.113.10" });
      expect(m.msg!.originalDst).toEqual({ address: "198.51.100.20", port: 53, family: 4, method: "ip_recvorigdstaddr" });
    }
    // Summaries come when the sessions idle out (1 s).
    const sums = (await collect("sum", 2)).map((m) => m.msg!.payload!);
    const forwarded = sums.find((s) => s["action"] === "forward")!;
    const rejected = sums.find((s) => s["action"] === "reject")!;
    expect(forwarded).toMatchObject({ protocol: "udp", end: "idle-timeout", identity: "transparent", datagramsToUpstream: 1, datagramsToClient: 1, target: { address: "198.51.100.20", port: 53 } });
    // dig's query (with its EDNS cookie) and the server's answer.
    expect(forwarded["bytesToUpstream"]).toBeGreaterThan(28);
    expect(forwarded["bytesToClient"]).toBeGreaterThan(28);
    expect(rejected).toMatchObject({ protocol: "udp", end: "rejected", datagramsToUpstream: 0, datagramsDropped: 1 });
    await stop(red);
    await stop(server);
  });

  for (const [family, server, clientAddress] of [
    ["IPv4", "198.51.100.20", "203.0.113.10"],
    ["IPv6", "2001:db8:5::20", "2001:db8:c::10"],
  ] as const) {
    it(`${family}: an echo server bound to one address sees the client's own address and port (source preservation)`, async () => {
      const echo = start(["ip", "netns", "exec", ts, process.execPath, "-e", SERVER, JSON.stringify([server])]);
      await echo.next(["up"]);
      const red = nodeRed(policyFlow());
      await running(red, "tin");
      const r = client({ host: server, port: 7, send: "hello" });
      expect(r.error).toBeUndefined();
      const answer = JSON.parse(r.answer!) as { peer: string; port: number; got: string };
      expect(answer).toEqual({ peer: clientAddress, port: r.local!.port, got: "hello" });
      // (The client's socket is connected: an answer from any other address or port would not have reached it.)
      // It went through the gateway's relay, both ways: the gateway also routes, so without
      // this the server would see the client just the same.
      for (;;) {
        const m = (await red.next(["message"], 10_000)) as Msg;
        if (m.at !== "sum") continue;
        expect(m.msg!.payload).toMatchObject({ protocol: "udp", action: "forward", identity: "transparent", target: { address: server, port: 7 }, datagramsToUpstream: 1, datagramsToClient: 1, client: { address: clientAddress, port: r.local!.port } });
        break;
      }
      await stop(red);
      await stop(echo);
    });
  }

  it("10,000 sessions opened and idled out: the gateway's fds and memory come back", async () => {
    const echo = start(["ip", "netns", "exec", ts, process.execPath, "-e", SERVER, JSON.stringify(["198.51.100.20"])]);
    await echo.next(["up"]);
    // Under AddressSanitizer (npm run test:sanitize) freed blocks wait in a quarantine of up
    // to 256 MB before reuse, so RSS would grow by design; with the quarantine off, freed
    // memory is reused at once and a leak shows as it does in a plain build.
    const asan = process.env["ASAN_OPTIONS"];
    const red = nodeRed([
      { id: "tin", type: "transparent in", port: PORT, protocol: "udp", mode: "tproxy", family: "ipv4", udpIdleTimeout: 2, maxUdpSessions: 20000, manageRules: true, ruleDestinations: "198.51.100.20/32", rulePorts: "7", wires: [["fwd"]] },
      { id: "fwd", type: "forward", action: "forward", targetType: "original", identity: "none", wires: [["sum"]] },
      { id: "sum", type: "helper" },
    ], asan === undefined ? [] : ["env", `ASAN_OPTIONS=${asan}:quarantine_size_mb=0:thread_local_quarantine_size_kb=0`]);
    await running(red, "tin");
    const pid = red.child.pid!;
    const fds = (): number => fs.readdirSync(`/proc/${pid}/fd`).length;
    const memory = async (): Promise<{ rss: number; heapUsed: number }> => {
      red.send("memory");
      return (await red.next(["memory"])) as unknown as { rss: number; heapUsed: number };
    };
    let summaries = 0;
    const countUntil = async (n: number): Promise<void> => {
      while (summaries < n) {
        const m = (await red.next(["message"], 20_000).catch((err: Error) => {
          throw new Error(`${summaries} of ${n} summaries: ${err.message}`);
        })) as Msg;
        if (m.at === "sum") summaries++;
      }
    };
    // 2,000 sessions a second with a 2 s idle time: about 4,000 live at once, 2 fds each,
    // well under the 20,000 fds this machine allows a process.
    const round = async (firstPort: number): Promise<number> => {
      let peak = 0;
      const sampler = setInterval(() => (peak = Math.max(peak, fds())), 100);
      onTestFinished(() => clearInterval(sampler));
      const many = start(["ip", "netns", "exec", tc, process.execPath, "-e", MANY, JSON.stringify({ host: "198.51.100.20", port: 7, count: 10_000, pauseMs: 50, firstPort })]);
      expect((await many.next(["sent"], 60_000))["sent"]).toBe(10_000);
      await countUntil(summaries + 10_000);
      clearInterval(sampler);
      // The last summary goes out before its session's fds are closed (next loop turn).
      await new Promise((r) => setTimeout(r, 200));
      return peak;
    };
    const fdsAtStart = fds();
    // The first round grows what a process keeps once grown (V8's heap, malloc arenas); the
    // second must return to where the first left it: a leak of even 1 KiB per session would show.
    const peak = await round(20_000);
    expect(peak, "fds at the peak of the first round").toBeGreaterThan(fdsAtStart + 2000);
    expect(fds(), "fds after the first round").toBeLessThanOrEqual(fdsAtStart);
    const before = await memory();
    await round(30_000);
    expect(fds(), "fds after the second round").toBeLessThanOrEqual(fdsAtStart);
    const after = await memory();
    // Held JS objects (the sessions' table entries, listeners, closures) and native memory:
    // 1 KiB a session left behind would be 10 MB of heap; RSS also moves with malloc arenas,
    // which a busy machine (more sessions live at once) grows further: 2.5 KiB a session
    // (25 MB) is still far below what a leaked session with its datagram buffers would hold.
    expect(after.heapUsed - before.heapUsed, "JS heap growth over the second round").toBeLessThan(4 * 1024 * 1024);
    expect(after.rss - before.rss, "RSS growth over the second round").toBeLessThan(25 * 1024 * 1024);
    await stop(red);
    await stop(echo);
  }, 120_000);

  /** The gateway's UDP sockets bound to the listener's port, by inode. */
  const listenerInodes = (): string[] => [...inNs(tg, "ss", ["-Huanpe", `sport = :${PORT}`]).matchAll(/ino:(\d+)/g)].map((m) => m[1]!).sort();

  it("a redeploy keeps the UDP socket and its live sessions: datagrams flow both ways across it, and the summary comes once, at idle timeout", async () => {
    const echo = start(["ip", "netns", "exec", ts, process.execPath, "-e", SERVER, JSON.stringify(["198.51.100.20"])]);
    await echo.next(["up"]);
    // Two versions that differ in names: a full deploy stops and starts every node.
    const relayFlow = (version: string): object[] => [
      { id: "tin", type: "transparent in", name: `udp in ${version}`, port: PORT, protocol: "udp", mode: "tproxy", family: "ipv4", udpIdleTimeout: 3, manageRules: true, ruleDestinations: "198.51.100.20/32", rulePorts: "7", wires: [["fwd"]] },
      { id: "fwd", type: "forward", name: `relay ${version}`, action: "forward", targetType: "original", identity: "none", wires: [["sum"]] },
      { id: "sum", type: "helper" },
    ];
    const red = nodeRed(relayFlow("a"));
    await running(red, "tin");
    const socketsBefore = listenerInodes();
    expect(socketsBefore).toHaveLength(1);
    const stream = start(["ip", "netns", "exec", tc, process.execPath, "-e", STREAM, JSON.stringify({ host: "198.51.100.20", port: 7, timeoutMs: 2000 })]);
    await stream.next(["ready"]);
    const ask = async (prefix: string, count: number, gapMs: number): Promise<Array<{ peer: string; port: number; got: string } | null>> => {
      stream.send(JSON.stringify({ prefix, count, gapMs }));
      return ((await stream.next(["answers"], 30_000))["answers"] as Array<string | null>).map((a) => (a === null ? null : JSON.parse(a)));
    };
    const [first] = await ask("before", 1, 0);
    // identity none: the server sees the gateway's upstream socket of this session.
    expect(first).toMatchObject({ peer: "198.51.100.1", got: "before0" });
    const upstreamPort = first!.port;

    // Datagrams every 50 ms while the flow is deployed again: none waits for a socket or a node.
    stream.send(JSON.stringify({ prefix: "during", count: 40, gapMs: 50 }));
    await new Promise((r) => setTimeout(r, 200));
    red.send(`deploy ${JSON.stringify(relayFlow("b"))}`);
    await red.next(["deployed"], 20_000);
    const during = ((await stream.next(["answers"], 30_000))["answers"] as Array<string | null>).map((a) => (a === null ? null : JSON.parse(a)));
    expect(during.filter((a) => a === null), "datagrams unanswered across the redeploy").toHaveLength(0);
    const after = await ask("after", 2, 0);
    // The same session all along: the same upstream socket carried every datagram, and the listener was not bound again.
    for (const a of [...during, ...after]) expect(a).toMatchObject({ peer: "198.51.100.1", port: upstreamPort });
    expect(after.map((a) => a!.got)).toEqual(["after0", "after1"]);
    expect(listenerInodes()).toEqual(socketsBefore);

    // One summary, from the new instance, once the session idles out (3 s), counting both sides of the deploy.
    let m: Msg;
    do m = (await red.next(["message"], 15_000)) as Msg;
    while (m.at !== "sum");
    expect(m.msg!.payload).toMatchObject({ protocol: "udp", action: "forward", end: "idle-timeout", datagramsToUpstream: 43, datagramsToClient: 43, target: { address: "198.51.100.20", port: 7 } });
    // No second one: the old instance handed it over rather than sending it too.
    await expect(red.next(["message"], 4000)).rejects.toThrow(/no message event/);
    await stop(stream);
    await stop(red);
    await stop(echo);
  }, 90_000);

  it("protocol both: one transparent in on one port captures TCP and UDP through TPROXY (its managed rules cover both); classify and forward handle each", async () => {
    const server = start(["ip", "netns", "exec", ts, process.execPath, "-e", SERVER, JSON.stringify(["198.51.100.20", "2001:db8:5::20"])]);
    await server.next(["up"]);
    const flow = policyFlow().map((n) => ((n as { id: string }).id === "tin" ? { ...n, protocol: "both" } : n));
    const red = nodeRed(flow);
    await running(red, "tin");
    const table = inNs(tg, "nft", ["list", "ruleset"]);
    expect(table).toMatch(/tcp/);
    expect(table).toMatch(/udp/);
    // Bound to the one port, once for each transport.
    expect(inNs(tg, "ss", ["-Htlnp", `sport = :${PORT}`]).trim().split("\n")).toHaveLength(1);
    expect(listenerInodes()).toHaveLength(1);
    for (const [transport, server53, extra] of [["udp", "198.51.100.20", []], ["tcp", "2001:db8:5::20", ["+tcp"]]] as const) {
      const r = spawnSync("ip", ["netns", "exec", tc, dig.path!, `@${server53}`, `${transport}.allowed.example`, "A", ...extra, "+tries=1", "+time=3", "+short"], { encoding: "utf8", timeout: 10_000 });
      expect(r.stdout.trim(), `dig over ${transport}`).toBe("192.0.2.55");
    }
    const blocked = spawnSync("ip", ["netns", "exec", tc, dig.path!, "@198.51.100.20", "blocked.example", "A", "+tcp", "+tries=1", "+time=3", "+short"], { encoding: "utf8", timeout: 10_000 });
    expect(blocked.stdout).not.toMatch(/192\.0\.2\.55/);

    const seen: Msg[] = [];
    const sums: Msg[] = [];
    while (seen.length < 3 || sums.length < 3) {
      const m = (await red.next(["message"], 10_000)) as Msg;
      if (m.at === "seen") seen.push(m);
      if (m.at === "sum") sums.push(m);
    }
    const byName = new Map(seen.map((m) => [String((m.msg!.payload as { firstBytes?: unknown; protocol: string }).protocol) + " " + String(m.msg!.originalDst?.["address"]), m]));
    expect([...byName.keys()].sort()).toEqual(["tcp 198.51.100.20", "tcp 2001:db8:5::20", "udp 198.51.100.20"]);
    const forwarded = sums.map((m) => m.msg!).filter((msg) => msg.payload!["action"] === "forward");
    expect(forwarded.map((msg) => [msg.payload!["protocol"] ?? "tcp", msg.classification?.protocol, msg.classification?.fields["dnsName"]]).sort()).toEqual([
      ["tcp", "dns", "tcp.allowed.example"],
      ["udp", "dns", "udp.allowed.example"],
    ]);
    const rejected = sums.map((m) => m.msg!).find((msg) => msg.payload!["action"] === "reject")!;
    expect(rejected.classification).toMatchObject({ protocol: "dns", rule: "blocked", fields: { dnsName: "blocked.example" } });
    await stop(red);
    await stop(server);
  }, 60_000);

  for (const [family, server] of [
    ["IPv4", "198.51.100.20"],
    ["IPv6", "2001:db8:5::20"],
  ] as const) {
    it(`${family}: reject by ICMP gives the client ECONNREFUSED; reject by drop leaves it to its own timeout`, async () => {
      const echo = start(["ip", "netns", "exec", ts, process.execPath, "-e", SERVER, JSON.stringify([server])]);
      await echo.next(["up"]);
      const red = nodeRed([
        { id: "tin", type: "transparent in", port: PORT, protocol: "udp", mode: "tproxy", family: "dual", udpIdleTimeout: 1, manageRules: true, ruleDestinations: "198.51.100.20/32, 2001:db8:5::20/128", rulePorts: "53", wires: [["cls"]] },
        { id: "cls", type: "classify", rules: [{ name: "icmp", hosts: "icmp.example" }, { name: "drop", hosts: "drop.example" }], wires: [["byIcmp"], ["byDrop"], ["fwd"]] },
        { id: "byIcmp", type: "forward", action: "reject", udpRejectMode: "icmp", wires: [["sum"]] },
        { id: "byDrop", type: "forward", action: "reject", udpRejectMode: "drop", wires: [["sum"]] },
        { id: "fwd", type: "forward", action: "forward", targetType: "original", wires: [["sum"]] },
        { id: "sum", type: "helper" },
      ]);
      await running(red, "tin");
      // The server answers the same query when it is not rejected.
      const allowed = client({ host: server, port: 53, hex: dnsQuery("allowed.example") });
      const refused = client({ host: server, port: 53, hex: dnsQuery("icmp.example") });
      const dropped = client({ host: server, port: 53, hex: dnsQuery("drop.example"), timeoutMs: 1500 });
      const ends: Record<string, unknown>[] = [];
      while (ends.length < 3) {
        const m = (await red.next(["message"], 10_000)) as Msg;
        if (m.at === "sum") ends.push(m.msg!.payload!);
      }
      expect(allowed.answer).toBeDefined();
      expect(refused.error).toBe("ECONNREFUSED");
      expect(dropped.error).toBe("timeout");
      const rejects = ends.filter((e) => e["action"] === "reject").map((e) => ({ end: e["end"], dropped: e["datagramsDropped"], up: e["datagramsToUpstream"], bytesUp: e["bytesToUpstream"], client: (e["client"] as { address: string }).address }));
      const clientAddress = family === "IPv4" ? "203.0.113.10" : "2001:db8:c::10";
      expect(rejects).toEqual([
        { end: "rejected", dropped: 1, up: 0, bytesUp: 0, client: clientAddress },
        { end: "rejected", dropped: 1, up: 0, bytesUp: 0, client: clientAddress },
      ]);
      await stop(red);
      await stop(echo);
    }, 60_000);
  }
});

// UDP sessions through the library on loopback (mode plain: no rules needed): a session
// per client, the datagram classifier's say on when it is announced, the relay both ways,
// the idle summary, the session cap, rejection, and the settings UDP refuses.
import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { forwardUdpSession, rejectUdpSession } from "../../src/forward/udp";
import { listenerSettings } from "../../src/listener/options";
import { UdpListener } from "../../src/listener/udp-listener";
import type { ConnectionInfo } from "../../src/connection";
import { buildRuleset } from "../../src/nft/managed-rules";
import { udpSessions } from "../../src/udp-table";
import { IS_ROOT } from "../support/system";
import { until } from "../support/wait";

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
};

/** A DNS query for `name` (A, recursion desired), as dig sends it without EDNS. */
function dnsQuery(name: string): Buffer {
  const labels = name.split(".").map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function socket(): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  cleanup.push(() => s.close());
  return s;
}

async function echoServer(): Promise<number> {
  const s = await socket();
  s.on("message", (m, r) => s.send(m, r.port, r.address));
  return s.address().port;
}

async function listener(config: { udpIdleTimeoutMs?: number; maxUdpSessions?: number } = {}): Promise<{ l: UdpListener; port: number; sessions: ConnectionInfo[] }> {
  // Port 1 is never bound: start() binds a port the kernel picks only through the config, so find a free one.
  const probe = await socket();
  const port = probe.address().port;
  probe.close();
  cleanup.pop();
  const l = new UdpListener({ port, address: "127.0.0.1", mode: "plain", family: "ipv4", udpIdleTimeoutMs: 300, ...config }, `test-${port}`);
  const sessions: ConnectionInfo[] = [];
  l.on("connection", (info) => sessions.push(info));
  await l.start();
  cleanup.push(() => l.close());
  return { l, port, sessions };
}

describe("UDP settings and rules", () => {
  it("refuses UDP in mode redirect, naming the mode, and defaults the UDP limits", () => {
    expect(code(() => listenerSettings({ port: 53, protocol: "udp", mode: "redirect" }))).toBe("ERR_LISTENER_CONFIG");
    expect(code(() => listenerSettings({ port: 53, protocol: "both" }))).toBe("ERR_LISTENER_CONFIG");
    expect(code(() => listenerSettings({ port: 53, protocol: "sctp" as never, mode: "tproxy" }))).toBe("ERR_LISTENER_CONFIG");
    expect(listenerSettings({ port: 53, protocol: "udp", mode: "tproxy" })).toMatchObject({ protocol: "udp", udpIdleTimeoutMs: 30_000, maxUdpSessions: 65_536 });
    expect(listenerSettings({ port: 53 }).protocol).toBe("tcp");
  });

  it("managed TPROXY rules cover the UDP ports too, and REDIRECT rules refuse UDP", () => {
    const r = buildRuleset("n1", { mode: "tproxy", port: 15053, destinations: "198.51.100.20", ports: "53, 443", protocols: ["tcp", "udp"], tproxyMark: 1, routeTable: 100 });
    expect(r.ruleset).toContain("meta l4proto { tcp, udp } socket transparent 1 meta mark set 1 accept");
    expect(r.ruleset).toContain("ip daddr { 198.51.100.20/32 } meta l4proto tcp tcp dport { 53, 443 } tproxy ip to :15053 meta mark set 1 accept");
    expect(r.ruleset).toContain("ip daddr { 198.51.100.20/32 } meta l4proto udp udp dport { 53, 443 } tproxy ip to :15053 meta mark set 1 accept");
    expect(code(() => buildRuleset("n1", { mode: "redirect", port: 15053, destinations: "198.51.100.20", protocols: ["udp"] }))).toBe("ERR_NFT_CONFIG");
  });
});

describe("UDP sessions (library, loopback)", () => {
  it("announces a DNS query at its first datagram as a udp session, relays it both ways, and sums it up when it idles out", async () => {
    const echo = await echoServer();
    const { port, sessions } = await listener();
    const client = await socket();
    const answers: Buffer[] = [];
    client.on("message", (m) => answers.push(m));
    client.send(dnsQuery("allowed.example"), port, "127.0.0.1");
    await until(() => sessions.length === 1, "sessions.length === 1", 3000);
    const info = sessions[0]!;
    expect(info).toMatchObject({ protocol: "udp", mode: "plain", remoteAddress: "127.0.0.1", remotePort: client.address().port, localPort: port });
    expect(info.firstDatagrams).toHaveLength(1);
    expect(info.firstBytes!.equals(dnsQuery("allowed.example"))).toBe(true);
    // A second datagram before the flow decided is held, then relayed in order.
    client.send("second", port, "127.0.0.1");
    await new Promise((r) => setTimeout(r, 50));
    const claimed = udpSessions().claim(info.id, "t")!;
    const forwarded = forwardUdpSession(claimed, { target: { address: "127.0.0.1", port: echo } });
    await until(() => answers.length === 2, "answers.length === 2", 3000);
    expect(answers[0]!.equals(dnsQuery("allowed.example"))).toBe(true);
    expect(answers[1]!.toString()).toBe("second");
    client.send("third", port, "127.0.0.1");
    await until(() => answers.length === 3, "answers.length === 3", 3000);
    const summary = await forwarded.done;
    expect(summary).toMatchObject({ protocol: "udp", action: "forward", end: "idle-timeout", datagramsToUpstream: 3, datagramsToClient: 3, datagramsDropped: 0, pump: "native" });
    expect(summary.bytesToUpstream).toBe(dnsQuery("allowed.example").length + "second".length + "third".length);
    expect(summary.bytesToClient).toBe(summary.bytesToUpstream);
    expect(udpSessions().info(info.id)).toBeUndefined();
  });

  it("refuses a target that is the listener itself as a loop", async () => {
    const { port, sessions } = await listener();
    const client = await socket();
    client.send("x", port, "127.0.0.1");
    await until(() => sessions.length === 1, "sessions.length === 1", 3000);
    const summary = await forwardUdpSession(udpSessions().claim(sessions[0]!.id, "t")!, { target: { address: "127.0.0.1", port } }).done;
    expect(summary).toMatchObject({ end: "loop", error: { code: "ERR_FORWARD_LOOP" } });
  });

  it("drops the datagrams of clients past the session cap, and counts them", async () => {
    const { l, port, sessions } = await listener({ maxUdpSessions: 1 });
    const a = await socket();
    const b = await socket();
    a.send("a", port, "127.0.0.1");
    await until(() => sessions.length === 1, "sessions.length === 1", 3000);
    b.send("b", port, "127.0.0.1");
    await until(() => (l.relayStats()?.overCap ?? 0) === 1, "(l.relayStats()?.overCap ?? 0) === 1", 3000);
    expect(sessions).toHaveLength(1);
    expect(l.relayStats()).toMatchObject({ sessions: 1, datagrams: 2, overCap: 1 });
  });

  it.skipIf(!IS_ROOT)("rejects with ICMP port unreachable: a connected client sees ECONNREFUSED; the summary counts what was refused", async () => {
    const { port, sessions } = await listener();
    const client = dgram.createSocket("udp4");
    cleanup.push(() => client.close());
    const refused = new Promise<string>((resolve) => client.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "")));
    await new Promise<void>((r) => client.connect(port, "127.0.0.1", () => r()));
    client.send("knock");
    await until(() => sessions.length === 1, "sessions.length === 1", 3000);
    const done = rejectUdpSession(udpSessions().claim(sessions[0]!.id, "t")!, "icmp");
    expect(await refused).toBe("ECONNREFUSED");
    expect(await done).toMatchObject({ action: "reject", end: "rejected", protocol: "udp", datagramsToUpstream: 0, bytesToUpstream: 0, datagramsDropped: 1 });
  });
});

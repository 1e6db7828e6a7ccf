// The listener library in this process on loopback (plain mode needs no rules and no
// privilege): limits, first-byte reading, PROXY headers, close semantics, settings.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectionInfo } from "../../src/connection";
import { listenerSettings } from "../../src/listener/options";
import { TransparentListener, type RejectReason } from "../../src/listener/transparent-listener";
import { connectionTable } from "../../src/connection-table";
import { until } from "../support/wait";

const open: TransparentListener[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(open.splice(0).map((l) => l.close()));
});

let nextName = 0;
async function listen(config: Record<string, unknown>): Promise<{ l: TransparentListener; port: number; infos: ConnectionInfo[]; rejected: RejectReason[] }> {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const l = new TransparentListener({ port, address: "127.0.0.1", mode: "plain", ...config }, `unit-${nextName++}`);
  open.push(l);
  const infos: ConnectionInfo[] = [];
  const rejected: RejectReason[] = [];
  l.on("connection", (i) => infos.push(i));
  l.on("rejected", (r) => rejected.push(r));
  await l.start();
  return { l, port, infos, rejected };
}

function client(port: number, send?: string | Buffer): net.Socket {
  const s = net.connect(port, "127.0.0.1", () => {
    if (send !== undefined) s.write(send);
  });
  s.on("error", () => undefined);
  sockets.push(s);
  return s;
}

const closed = (s: net.Socket): Promise<void> => new Promise((r) => (s.closed ? r() : s.once("close", () => r())));

describe("transparent listener (library, loopback)", () => {
  it("accepts at most maxConnections at once", async () => {
    const { infos } = await listen({ maxConnections: 1, unclaimedTimeoutMs: 0 });
    client((open[0]!.address()!).port);
    await until(() => infos.length === 1, "first connection");
    const second = client(open[0]!.address()!.port);
    await closed(second);
    expect(infos).toHaveLength(1);
  });

  it("sends what arrived when the first-byte wait runs out, and keeps reading for replay", async () => {
    const { port, infos } = await listen({ sniffBytes: 100, sniffTimeoutMs: 50, unclaimedTimeoutMs: 0 });
    const s = client(port, "abc");
    await until(() => infos.length === 1, "message after the wait");
    expect(infos[0]!.firstBytes?.toString()).toBe("abc");
    expect(infos[0]!.readyAt! - infos[0]!.acceptedAt).toBeGreaterThanOrEqual(40);
    // Bytes sent after the message wait in the paused socket for the owner.
    s.write("def");
    const claimed = connectionTable().claim(infos[0]!.id, "t")!;
    expect(claimed.replay.toString()).toBe("abc");
    const more = await new Promise<Buffer>((r) => {
      claimed.socket.once("data", r);
      claimed.socket.resume();
    });
    expect(more.toString()).toBe("def");
  });

  it("announces a client that sends a few bytes and half-closes at once", async () => {
    const { port, infos } = await listen({ sniffBytes: 16, sniffTimeoutMs: 5000 });
    const s = client(port);
    s.end("hi");
    await until(() => infos.length === 1, "message on end");
    expect(infos[0]!.firstBytes?.toString()).toBe("hi");
  });

  it("reads an optional PROXY v1 header from trusted peers and refuses a malformed one", async () => {
    const { port, infos, rejected } = await listen({ sniffBytes: 2, proxyProtocol: "optional", proxyFrom: "loopback" });
    client(port, "PROXY TCP6 2001:db8::9 2001:db8::1 4000 443\r\nok");
    await until(() => infos.length === 1, "header");
    expect(infos[0]!.proxy).toMatchObject({ version: 1, family: "tcp6", sourceAddress: "2001:db8::9", destinationPort: 443 });
    expect(infos[0]!.originalDst).toEqual({ address: "2001:db8::1", port: 443, family: 6, method: "proxy-protocol" });
    // Optional: a trusted peer without a header is fine.
    client(port, "no");
    await until(() => infos.length === 2, "no header");
    expect(infos[1]!.proxy).toBeUndefined();
    const bad = client(port, "PROXY TCP4 999.0.0.1 198.51.100.1 1 2\r\n");
    await closed(bad);
    expect(rejected).toContain("proxy-invalid");
  });

  it("ends unclaimed connections on close, and claimed ones only when asked", async () => {
    const keep = await listen({ unclaimedTimeoutMs: 0, keepClaimedOnClose: true });
    client(keep.port);
    client(keep.port);
    await until(() => keep.infos.length === 2, "two connections");
    const owned = connectionTable().claim(keep.infos[0]!.id, "t")!;
    await keep.l.close();
    expect(owned.socket.destroyed).toBe(false);
    expect(connectionTable().info(keep.infos[1]!.id)).toBeUndefined();
    owned.socket.destroy();

    const drop = await listen({ unclaimedTimeoutMs: 0, keepClaimedOnClose: false });
    client(drop.port);
    await until(() => drop.infos.length === 1, "connection");
    const lost = connectionTable().claim(drop.infos[0]!.id, "t")!;
    await drop.l.close();
    expect(lost.socket.destroyed).toBe(true);
  });

  it("reads nothing it was not asked to: bytes stay in the kernel, and an unclaimed close is still an orderly FIN", async () => {
    const { infos } = await listen({ unclaimedTimeoutMs: 150, sniffBytes: 0 });
    const c = client(open[0]!.address()!.port, "unread bytes");
    let error: string | null = null;
    let ended = false;
    c.on("error", (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    c.on("end", () => (ended = true));
    await until(() => infos.length === 1, "announced");
    const socket = connectionTable().socketOf(infos[0]!.id)!;
    // Accepted paused, never resumed: nothing was read into the process.
    expect(socket.bytesRead).toBe(0);
    await closed(c);
    expect(error).toBeNull();
    expect(ended).toBe(true);
  });

  it("a connection still being read when the listener closes is closed, as listener-closed (not closed-early)", async () => {
    const { l, port, infos, rejected } = await listen({ sniffBytes: 64, sniffTimeoutMs: 5000 });
    const s = client(port, "GET");
    await until(() => l.liveCount() === 1, "the connection being read");
    await l.close();
    await closed(s);
    await until(() => rejected.length === 1, "the rejection");
    expect(rejected).toEqual(["listener-closed"]);
    expect(infos).toEqual([]);
  });

  it("checks its settings and names the field", () => {
    const err = (c: Record<string, unknown>): string | undefined => {
      try {
        listenerSettings({ port: 1, ...c } as never);
      } catch (e) {
        return `${(e as { code: string }).code} ${(e as { input: string }).input}`;
      }
      return undefined;
    };
    expect(err({ port: 0 })).toBe("ERR_LISTENER_CONFIG port");
    expect(err({ mode: "nat" })).toBe("ERR_LISTENER_CONFIG mode");
    expect(err({ address: "::1", family: "ipv4" })).toBe("ERR_LISTENER_CONFIG address");
    expect(err({ address: "localhost" })).toBe("ERR_LISTENER_CONFIG address");
    expect(err({ sniffBytes: 70000 })).toBe("ERR_LISTENER_CONFIG sniffBytes");
    expect(err({ proxyProtocol: "required" })).toBe("ERR_LISTENER_CONFIG proxyFrom");
    expect(err({ proxyProtocol: "required", proxyFrom: "10.0.0.1/8" })).toBe("ERR_LISTENER_CONFIG proxyFrom");
    expect(err({ unclaimedAction: "drop" })).toBe("ERR_LISTENER_CONFIG unclaimedAction");
    expect(listenerSettings({ port: 80, address: "::", family: "dual" })).toMatchObject({ address: "::", v6Only: false, family: "dual", mode: "redirect" });
    expect(listenerSettings({ port: 80, address: "192.0.2.1", family: "dual" })).toMatchObject({ address: "192.0.2.1", family: "ipv4" });
  });
});

// One owner's capture across a restart, without Node-RED, in this process on loopback
// (plain mode: no rules, no privilege): stop with handover keeps the socket serving for the
// successor, which holds what arrived until it delivers; stop without closes; a start that
// fails closes what was handed over.
import net from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ConnectionInfo } from "../../src/connection";
import { connectionTable } from "../../src/connection-table";
import { ManagedCapture } from "../../src/listener/managed-capture";
import { releaseParkedNow } from "../../src/listener/parked-listener";
import { nativeAvailability } from "../../src/native";
import { dialLoopback, freePort } from "../support/net";
import { until } from "../support/wait";

const native = nativeAvailability();
const captures: ManagedCapture[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  releaseParkedNow();
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(captures.splice(0).map((c) => c.stop(false).catch(() => undefined)));
});

let nextOwner = 0;
function capture(owner: string): { c: ManagedCapture; seen: ConnectionInfo[] } {
  const c = new ManagedCapture(owner, { handoverGraceMs: 60_000 });
  captures.push(c);
  const seen: ConnectionInfo[] = [];
  c.on("connection", (info) => seen.push(info));
  return { c, seen };
}

const dial = (port: number): Promise<net.Socket | string> => dialLoopback(port, sockets);

describe("managed capture", () => {
  beforeEach((ctx) => ctx.skip(!native.available, native.available ? "" : `the listener needs the native addon: ${native.reason}`));
  it("hands its socket to the successor, which holds the connections of the gap until it delivers", async () => {
    const port = await freePort();
    const owner = `capture-${nextOwner++}`;
    const config = { port, address: "127.0.0.1", mode: "plain" as const, unclaimedTimeoutMs: 0 };
    const first = capture(owner);
    expect(first.c.holding).toBe(false);
    const s = await first.c.start(config, null);
    expect(s.port).toBe(port);
    expect(first.c.hasRules).toBe(false);
    await dial(port);
    await until(() => first.seen.length === 1, "the first connection");

    await first.c.stop(true);
    expect(first.c.settings).toBeNull();
    // Parked: still listening, and what arrives waits for the successor.
    const gap = await dial(port);
    expect(gap).toBeInstanceOf(net.Socket);
    await until(() => connectionTable().count(owner) === 1, "the parked socket to accept");

    const second = capture(owner);
    expect(second.c.holding).toBe(true);
    // Same socket settings: the handed-over socket serves on (binding anew would fail, the port is taken).
    await second.c.start({ ...config, sniffBytes: 2 }, null);
    expect(second.c.settings?.sniffBytes).toBe(2);
    const later = await dial(port);
    await until(() => connectionTable().count(owner) === 2, "the successor to accept");
    expect(second.seen).toEqual([]);
    second.c.deliver();
    expect(second.seen.map((i) => i.remotePort)).toEqual([(gap as net.Socket).localPort, (later as net.Socket).localPort]);
    expect(first.seen).toHaveLength(1);

    await second.c.stop(false);
    expect(await dial(port)).toBe("ECONNREFUSED");
  });

  it("a connection that ended while held is not delivered", async () => {
    const port = await freePort();
    const owner = `capture-${nextOwner++}`;
    const config = { port, address: "127.0.0.1", mode: "plain" as const, unclaimedTimeoutMs: 0 };
    const first = capture(owner);
    await first.c.start(config, null);
    await first.c.stop(true);
    const second = capture(owner);
    await second.c.start(config, null);
    const gone = (await dial(port)) as net.Socket;
    const stays = (await dial(port)) as net.Socket;
    await until(() => connectionTable().count(owner) === 2, "both connections");
    // Ended by the process (a limit, an admin close) while nobody owned it yet.
    const goneId = connectionTable().list().find((c) => c.info.remotePort === gone.localPort)?.id;
    expect(goneId).toBeDefined();
    connectionTable().destroy(goneId!);
    expect(connectionTable().count(owner)).toBe(1);
    second.c.deliver();
    expect(second.seen.map((i) => i.remotePort)).toEqual([stays.localPort]);
  });

  it("a failed start closes what the predecessor handed over", async () => {
    const port = await freePort();
    const owner = `capture-${nextOwner++}`;
    const first = capture(owner);
    await first.c.start({ port, address: "127.0.0.1", mode: "plain" }, null);
    await first.c.stop(true);
    expect(await dial(port)).toBeInstanceOf(net.Socket);
    const second = capture(owner);
    await expect(second.c.start({ port, address: "127.0.0.1", mode: "plain" }, { destinations: "", ports: "80" })).rejects.toMatchObject({ code: "ERR_NFT_CONFIG" });
    expect(second.c.settings).toBeNull();
    expect(await dial(port)).toBe("ECONNREFUSED");
  });

  it("settings that need another socket replace the handed-over one", async () => {
    const port = await freePort();
    const other = await freePort();
    const owner = `capture-${nextOwner++}`;
    const first = capture(owner);
    await first.c.start({ port, address: "127.0.0.1", mode: "plain" }, null);
    await first.c.stop(true);
    const second = capture(owner);
    await second.c.start({ port: other, address: "127.0.0.1", mode: "plain" }, null);
    expect(await dial(port)).toBe("ECONNREFUSED");
    expect(await dial(other)).toBeInstanceOf(net.Socket);
  });
});

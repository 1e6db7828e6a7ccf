import fs from "node:fs";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  closeListenerFd,
  createListenerFd,
  getLocalAddress,
  getOriginalDst,
  getPeerAddress,
  loadNative,
  nativeAvailability,
  socketFd,
  socketOptions,
} from "../../src/native";

const openFds = (): number => fs.readdirSync("/proc/self/fd").length;
const servers: net.Server[] = [];

function listenOnFd(fd: number): Promise<net.Server> {
  const server = net.createServer();
  servers.push(server);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ fd }, () => resolve(server));
  });
}

function connect(port: number, host: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host }, () => resolve(s));
    s.once("error", reject);
  });
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

describe("native addon", () => {
  it("loads", () => {
    expect(nativeAvailability()).toEqual({ available: true });
    expect(loadNative().abiVersion).toBe(2);
  });

  it("rejects bad arguments with typed errors instead of crashing", () => {
    const n = loadNative();
    const bad: Array<() => unknown> = [
      () => n.createListener(undefined as never),
      () => n.createListener({ address: "nope", port: 0 }),
      () => n.createListener({ address: "127.0.0.1", port: 70000 }),
      () => n.createListener({ address: "127.0.0.1", port: 1.5 }),
      () => n.createListener({ address: 1 as never, port: 0 }),
      () => n.createListener({ address: "127.0.0.1", port: 0, transparent: "yes" as never }),
      () => n.getOriginalDst(-1),
      () => n.getOriginalDst("3" as never),
      () => n.getOriginalDst(Number.NaN),
      () => (n.getLocalAddress as () => unknown)(),
      () => n.closeFd(2 ** 40),
    ];
    for (const call of bad) {
      let caught: unknown;
      try {
        call();
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(Error);
      expect((caught as { code?: string }).code).toBe("ERR_INVALID_ARG_VALUE");
    }
  });

  it("reports errno names and advice for system call failures", () => {
    const file = fs.openSync("/proc/self/status", "r");
    try {
      expect(() => getOriginalDst(file)).toThrow(expect.objectContaining({ code: "ENOTSOCK" }));
      // closeFd refuses what is not a socket: a wrong number must not close someone else's file.
      expect(() => closeListenerFd(file)).toThrow(expect.objectContaining({ code: "ENOTSOCK" }));
    } finally {
      fs.closeSync(file);
    }
    expect(() => getLocalAddress(999_999)).toThrow(expect.objectContaining({ code: "EBADF", message: expect.stringMatching(/already been closed/) }));
  });

  it("creates IPv4, IPv6 and dual-stack listeners that Node serves", async () => {
    const v4 = await listenOnFd(createListenerFd({ address: "127.0.0.1", port: 0 }));
    const v4port = (v4.address() as net.AddressInfo).port;
    const dualFd = createListenerFd({ address: "::", port: 0, reusePort: true });
    expect(socketOptions(dualFd)).toMatchObject({ reuseAddr: true, reusePort: true, v6Only: false, transparent: false });
    const dual = await listenOnFd(dualFd);
    const dualPort = (dual.address() as net.AddressInfo).port;
    const v6only = await listenOnFd(createListenerFd({ address: "::1", port: 0, v6Only: true }));
    const v6port = (v6only.address() as net.AddressInfo).port;

    const accepted: net.Socket[] = [];
    for (const s of [v4, dual, v6only]) s.on("connection", (c) => accepted.push(c));
    const clients = [await connect(v4port, "127.0.0.1"), await connect(dualPort, "127.0.0.1"), await connect(dualPort, "::1"), await connect(v6port, "::1")];
    await new Promise((r) => setTimeout(r, 50));
    expect(accepted).toHaveLength(4);
    const locals = accepted.map((c) => getLocalAddress(c));
    // The IPv4 client of the dual-stack socket is reported as IPv4, not ::ffff:.
    expect(locals.map((l) => `${l.family}:${l.address}`).sort()).toEqual(["4:127.0.0.1", "4:127.0.0.1", "6:::1", "6:::1"]);
    const peer = getPeerAddress(accepted[0]!);
    expect(peer).toEqual({ address: "127.0.0.1", port: clients[0]!.localPort, family: 4 });
    for (const c of [...clients, ...accepted]) c.destroy();
  });

  it("names the port in use", () => {
    const fd = createListenerFd({ address: "127.0.0.1", port: 0, reuseAddr: false });
    try {
      const port = getLocalAddress(fd).port;
      expect(() => createListenerFd({ address: "127.0.0.1", port, reuseAddr: false })).toThrow(
        expect.objectContaining({ code: "EADDRINUSE", syscall: "bind", message: expect.stringMatching(/another socket already listens/) }),
      );
    } finally {
      closeListenerFd(fd);
    }
  });

  it("gives the fd of an accepted socket and a clear error for a closed one", async () => {
    const server = await listenOnFd(createListenerFd({ address: "127.0.0.1", port: 0 }));
    const got = new Promise<net.Socket>((r) => server.once("connection", r));
    const client = await connect((server.address() as net.AddressInfo).port, "127.0.0.1");
    const conn = await got;
    expect(socketFd(conn)).toBeGreaterThan(2);
    conn.destroy();
    client.destroy();
    expect(() => socketFd(conn)).toThrow(expect.objectContaining({ code: "ERR_NO_FD" }));
  });

  it("leaks no descriptors when a listener is created and closed", async () => {
    const before = openFds();
    for (let i = 0; i < 20; i++) {
      const server = await listenOnFd(createListenerFd({ address: "127.0.0.1", port: 0 }));
      await new Promise((r) => server.close(r));
      servers.pop();
      try {
        createListenerFd({ address: "192.0.2.1", port: 0 });
      } catch (err) {
        expect((err as { code: string }).code).toBe("EADDRNOTAVAIL");
      }
    }
    expect(openFds()).toBe(before);
  });
});

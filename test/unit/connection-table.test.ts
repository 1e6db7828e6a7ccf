import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectionInfo } from "../../src/connection";
import { ConnectionTable, connectionTable } from "../../src/connection-table";

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** A real loopback connection: the accepted side goes into the table. */
async function pair(): Promise<{ accepted: net.Socket; client: net.Socket }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const acceptedP = new Promise<net.Socket>((r) => server.once("connection", r));
  const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  client.on("error", () => undefined);
  const accepted = await acceptedP;
  server.close();
  cleanup.push(() => {
    client.destroy();
    accepted.destroy();
  });
  return { accepted, client };
}

function info(id: string): ConnectionInfo {
  return { id, mode: "plain", family: 4, localAddress: "127.0.0.1", localPort: 1, remoteAddress: "127.0.0.1", remotePort: 2, acceptedAt: Date.now() };
}

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("connection table", () => {
  it("hands a connection to one owner with its replay bytes, once", async () => {
    const t = new ConnectionTable();
    const { accepted } = await pair();
    t.add(accepted, info("a"), { listener: "L", replay: Buffer.from("hello"), unclaimedTimeoutMs: 0, unclaimedAction: "close" });
    const first = t.claim("a", "fwd");
    expect(first?.replay.toString()).toBe("hello");
    expect(t.claim("a", "other")).toBeUndefined();
    expect(t.stats()).toMatchObject({ live: 1, claimed: 1 });
    // Released with unread bytes: the next owner gets them in front of the rest.
    expect(t.release("a", "other")).toBe(false);
    expect(t.release("a", "fwd", Buffer.from("he"))).toBe(true);
    expect(t.claim("a", "fwd2")?.replay.toString()).toBe("he");
    expect(t.claim("missing", "x")).toBeUndefined();
  });

  it("closes connections nobody claims in time, and leaves claimed ones alone", async () => {
    const t = new ConnectionTable();
    const a = await pair();
    const b = await pair();
    t.add(a.accepted, info("a"), { listener: "L", replay: Buffer.alloc(0), unclaimedTimeoutMs: 30, unclaimedAction: "close" });
    t.add(b.accepted, info("b"), { listener: "L", replay: Buffer.alloc(0), unclaimedTimeoutMs: 30, unclaimedAction: "close" });
    t.claim("b", "owner");
    const clientClosed = new Promise((r) => a.client.once("close", r));
    await wait(80);
    await clientClosed;
    expect(a.accepted.destroyed).toBe(true);
    expect(b.accepted.destroyed).toBe(false);
    expect(t.stats()).toMatchObject({ live: 1, unclaimedClosed: 1 });
  });

  it("runs a registered forward handler for unclaimed connections, else closes them", async () => {
    const t = new ConnectionTable();
    const a = await pair();
    t.add(a.accepted, info("a"), { listener: "L", replay: Buffer.from("x"), unclaimedTimeoutMs: 20, unclaimedAction: "forward" });
    await wait(60);
    expect(a.accepted.destroyed).toBe(true);
    const seen: string[] = [];
    const off = t.setUnclaimedHandler("forward", (c) => seen.push(`${c.id}:${c.replay.toString()}:${c.owner}`));
    expect(t.canDo("forward")).toBe(true);
    const b = await pair();
    t.add(b.accepted, info("b"), { listener: "L", replay: Buffer.from("y"), unclaimedTimeoutMs: 20, unclaimedAction: "forward" });
    await wait(60);
    expect(seen).toEqual(["b:y:unclaimed:forward"]);
    expect(b.accepted.destroyed).toBe(false);
    off();
    expect(t.canDo("forward")).toBe(false);
  });

  it("ends a claimed connection through its owner's end, never by closing the socket itself", async () => {
    const t = new ConnectionTable();
    const a = await pair();
    const b = await pair();
    const opts = { listener: "L", replay: Buffer.alloc(0), unclaimedTimeoutMs: 0, unclaimedAction: "close" as const };
    t.add(a.accepted, info("a"), opts);
    t.add(b.accepted, info("b"), opts);
    const ended: string[] = [];
    t.claim("a", "fwd");
    expect(t.onEnd("a", "someone else", () => ended.push("wrong owner"))).toBe(false);
    expect(t.onEnd("a", "fwd", () => ended.push("a"))).toBe(true);
    t.claim("b", "fwd");
    t.onEnd("b", "fwd", () => ended.push("b"));
    // Handed back: the end belonged to the owner that let go of it.
    t.release("b", "fwd");
    expect(t.closeListener("L", false)).toBe(2);
    expect(ended).toEqual(["a"]);
    expect(a.accepted.destroyed).toBe(false);
    expect(b.accepted.destroyed).toBe(true);
    expect(t.count("L")).toBe(0);
  });

  it("forgets closed sockets and ends a listener's connections on close", async () => {
    const t = new ConnectionTable();
    const a = await pair();
    const b = await pair();
    const c = await pair();
    const opts = { replay: Buffer.alloc(0), unclaimedTimeoutMs: 0, unclaimedAction: "close" as const };
    t.add(a.accepted, info("a"), { ...opts, listener: "L1" });
    t.add(b.accepted, info("b"), { ...opts, listener: "L1" });
    t.add(c.accepted, info("c"), { ...opts, listener: "L2" });
    t.claim("b", "owner");
    expect(t.closeListener("L1", true)).toBe(1);
    expect(b.accepted.destroyed).toBe(false);
    expect(t.count("L1")).toBe(1);
    c.client.destroy();
    await new Promise((r) => c.accepted.once("close", r));
    expect(t.count("L2")).toBe(0);
    expect(t.info("c")).toBeUndefined();
  });

  it("readMore: bytes sent before the deadline count even when the loop was busy past it", async () => {
    const t = new ConnectionTable();
    const { accepted, client } = await pair();
    t.add(accepted, info("busy"), { listener: "L", replay: Buffer.alloc(0), unclaimedTimeoutMs: 0, unclaimedAction: "close" });
    const more = t.readMore("busy", 0, 1024, Date.now() + 5);
    // The peer's bytes reach the socket in time, but the loop is busy until past the
    // deadline: it runs the timer before it polls the socket again.
    client.write("GET / HTTP/1.1\r\n");
    const busyUntil = Date.now() + 50;
    while (Date.now() < busyUntil) {
      // busy
    }
    const got = await more;
    expect(got?.bytes.toString()).toBe("GET / HTTP/1.1\r\n");
  });

  it("is one table per process", () => {
    expect(connectionTable()).toBe(connectionTable());
  });
});

describe("connection table end notifications", () => {
  it("tells a watcher once when the connection ends, by the peer or by the table, and not for a gone one", async () => {
    const t = new ConnectionTable();
    const one = await pair();
    const two = await pair();
    t.add(one.accepted, info("one"), { listener: "L", replay: Buffer.alloc(0), unclaimedTimeoutMs: 0, unclaimedAction: "close" });
    t.add(two.accepted, info("two"), { listener: "L", replay: Buffer.alloc(0), unclaimedTimeoutMs: 0, unclaimedAction: "close" });
    const gone: string[] = [];
    expect(t.whenGone("one", () => gone.push("one"))).toBe(true);
    expect(t.whenGone("two", () => gone.push("two"))).toBe(true);
    expect(t.claim("one", "owner")).toBeDefined();
    one.client.destroy();
    await new Promise<void>((r) => one.accepted.once("close", () => r()));
    expect(gone).toEqual(["one"]);
    t.destroy("two");
    t.destroy("two");
    expect(gone).toEqual(["one", "two"]);
    expect(t.whenGone("two", () => gone.push("late"))).toBe(false);
    expect(gone).toEqual(["one", "two"]);
  });
});

// The forward node in a Node-RED runtime: transparent in (plain mode on loopback) →
// classify by SNI → forward to two upstreams, or reject. Real TLS ClientHellos from
// Node's tls client, real upstream servers.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import type { Node } from "node-red";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../support/net";
import registerAll from "../../nodes/index";
import { toEvent } from "../../src/events/convert";
import { connectionTable } from "../../src/connection-table";
import { assertValidEvent } from "../support/events";
import { collect, helper, onCall } from "../support/node-red-helper";
import { until } from "../support/wait";

type Msg = Record<string, unknown>;

const servers: net.Server[] = [];
/** An upstream that records the first bytes of each connection and answers with its name. */
async function upstream(name: string): Promise<{ port: number; seen: Buffer[] }> {
  const seen: Buffer[] = [];
  const srv = net.createServer((s) => {
    s.on("error", () => undefined);
    s.once("data", (d: Buffer) => {
      seen.push(d);
      s.end(name);
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  servers.push(srv);
  return { port: (srv.address() as net.AddressInfo).port, seen };
}

/** Sends a TLS ClientHello for `servername`; resolves when the connection is over (the upstreams do not speak TLS). */
function hello(port: number, servername: string): Promise<void> {
  return new Promise((resolve) => {
    const t = tls.connect({ port, host: "127.0.0.1", servername, rejectUnauthorized: false });
    const timer = setTimeout(() => t.destroy(), 3000);
    t.on("error", () => undefined);
    t.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe("forward node in a Node-RED runtime", () => {
  afterEach(async () => {
    await helper.unload();
    for (const s of servers.splice(0)) s.close();
  });

  it("the example flow's shape: TLS by SNI to two upstreams, the rest rejected, a summary per connection", async () => {
    const a = await upstream("A");
    const b = await upstream("B");
    const port = await freePort();
    await helper.load(registerAll, [
      { id: "in", type: "transparent in", port, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 16, sniffTimeout: 1, unclaimedTimeout: 5, unclaimedAction: "close", wires: [["cls"]] },
      {
        id: "cls",
        type: "classify",
        input: "auto",
        property: "payload",
        maxBytes: 16384,
        timeoutMs: 2000,
        serverFirstMs: 300,
        rules: [
          { name: "a", protocols: "tls", hosts: "a.example.test" },
          { name: "b", protocols: "tls", hosts: "b.example.test" },
        ],
        outputs: 3,
        wires: [["fa"], ["fb"], ["rej"]],
      },
      { id: "fa", type: "forward", action: "forward", targetType: "fixed", host: "127.0.0.1", port: a.port, identity: "none", wires: [["out"]] },
      { id: "fb", type: "forward", action: "forward", targetType: "fixed", host: "127.0.0.1", port: b.port, identity: "proxy-v2", pump: "js", wires: [["out"]] },
      { id: "rej", type: "forward", action: "reject", rejectMode: "fin", wires: [["out"]] },
      { id: "out", type: "helper" },
    ]);
    const seen = collect({ out: helper.getNode("out") });
    await until(() => (helper.getNode("in") as unknown as { status?: unknown }) !== null, "listener", 1000);
    // The listener starts asynchronously: retry the first connection until it is handled.
    for (let i = 0; i < 50 && seen["out"]!.length === 0; i++) {
      await hello(port, "a.example.test");
      if (seen["out"]!.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    await hello(port, "b.example.test");
    await hello(port, "other.example.test");
    await until(() => seen["out"]!.length >= 3, "three summaries", 5000);
    expect(a.seen).toHaveLength(1);
    expect(b.seen).toHaveLength(1);
    const byEnd = seen["out"]!.map((m) => m["payload"] as Msg);
    expect(byEnd.filter((s) => s["action"] === "forward")).toHaveLength(2);
    expect(byEnd.filter((s) => s["action"] === "reject")).toHaveLength(1);
    const toB = byEnd.find((s) => (s["target"] as Msg | null)?.["port"] === b.port)!;
    expect(toB).toMatchObject({ identity: "proxy-v2", pump: "js" });
    expect(seen["out"]![0]!["topic"]).toMatch(/^forward\//);
    expect(seen["out"]![0]!["_session"]).toBeUndefined();
    expect(seen["out"]![0]!["classification"]).toBeDefined();
    // b received a PROXY v2 header carrying the SNI as authority, then the ClientHello.
    expect(b.seen[0]!.subarray(0, 12).toString("latin1")).toBe("\r\n\r\n\0\r\nQUIT\n");
    expect(b.seen[0]!.includes(Buffer.from("b.example.test"))).toBe(true);
    expect(a.seen[0]![0]).toBe(0x16);
    // What mqtt events publishes for each summary: a schema-valid forward-summary event
    // (not a classification, although the message still carries one).
    for (const m of seen["out"]!) {
      const event = toEvent(m, { host: "gw" });
      assertValidEvent(event);
      expect(event).toMatchObject({ type: "forward-summary", connectionId: (m["payload"] as Msg)["id"] });
    }
  });

  it("a refused upstream goes to Catch with a clear reason, and the status shows it", async () => {
    const port = await freePort();
    const dead = await freePort();
    await helper.load(registerAll, [
      { id: "in", type: "transparent in", port, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 0, unclaimedTimeout: 5, wires: [["fw"]] },
      { id: "fw", type: "forward", action: "forward", targetType: "fixed", host: "127.0.0.1", port: dead, wires: [["out"]] },
      { id: "out", type: "helper" },
    ]);
    const fw = helper.getNode("fw") as Node;
    const errors: unknown[] = [];
    const statuses: Array<{ text?: string }> = [];
    onCall(fw, "error", (e) => errors.push(e));
    onCall(fw, "status", (s) => statuses.push(s as { text?: string }));
    const seen = collect({ out: helper.getNode("out") });
    for (let i = 0; i < 50 && seen["out"]!.length === 0; i++) {
      const c = net.connect(port, "127.0.0.1");
      c.on("error", () => undefined);
      await new Promise((r) => setTimeout(r, 100));
      c.destroy();
    }
    await until(() => errors.length > 0 && seen["out"]!.length > 0, "error and summary", 5000);
    expect(String((errors[0] as Error).message ?? errors[0])).toMatch(/ECONNREFUSED: upstream 127\.0\.0\.1:\d+ refused/);
    expect(seen["out"]![0]!["payload"]).toMatchObject({ end: "connect-failed", error: { code: "ECONNREFUSED" } });
    await until(() => statuses.some((s) => /ECONNREFUSED/.test(String(s.text))), "status with the error", 2000);
  });

  /** Opens a connection nobody claims and waits until the listener's unclaimed action ended it. */
  async function unclaimedOnce(port: number): Promise<void> {
    const c = net.connect(port, "127.0.0.1");
    c.on("error", () => undefined);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => c.destroy(), 5000);
      c.on("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  it("unclaimed forward is never taken by a reject node, nor by one whose target is fixed or msg-provided", async () => {
    const port = await freePort();
    const fixed = await upstream("F");
    await helper.load(registerAll, [
      { id: "in", type: "transparent in", port, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 0, unclaimedTimeout: 0.1, unclaimedAction: "forward", wires: [[]] },
      { id: "fw-0-reject", type: "forward", action: "reject", identity: "proxy-v2", mark: 7, wires: [[]] },
      { id: "fw-1-msg", type: "forward", action: "msg", targetType: "original", identity: "proxy-v1", wires: [[]] },
      { id: "fw-2-fixed", type: "forward", action: "forward", targetType: "fixed", host: "127.0.0.1", port: fixed.port, identity: "proxy-v2", wires: [[]] },
      { id: "fw-3-target", type: "forward", action: "forward", targetType: "msg", targetProp: "target", identity: "proxy-v2", wires: [[]] },
    ]);
    const warned: string[] = [];
    for (const id of ["fw-0-reject", "fw-1-msg", "fw-2-fixed", "fw-3-target"]) onCall(helper.getNode(id) as Node, "warn", () => warned.push(id));
    const before = connectionTable().stats();
    expect(connectionTable().canDo("forward")).toBe(false);
    await unclaimedOnce(port);
    await until(() => connectionTable().stats().unclaimedClosed > before.unclaimedClosed, "unclaimed close", 2000);
    // Closed, not handed to any of these nodes' settings.
    expect(connectionTable().stats().unclaimedForwarded).toBe(before.unclaimedForwarded);
    expect(warned).toEqual([]);
    expect(fixed.seen).toHaveLength(0);
  });

  it("among forwarding nodes the one with the lowest id takes unclaimed connections, whatever the flow order", async () => {
    const port = await freePort();
    await helper.load(registerAll, [
      { id: "in", type: "transparent in", port, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 0, unclaimedTimeout: 0.1, unclaimedAction: "forward", wires: [[]] },
      { id: "fw-b", type: "forward", action: "forward", targetType: "original", identity: "proxy-v2", wires: [[]] },
      { id: "fw-a", type: "forward", action: "forward", targetType: "original", identity: "none", wires: [[]] },
      { id: "fw-0-reject", type: "forward", action: "reject", wires: [[]] },
    ]);
    const warned: Array<{ id: string; text: string }> = [];
    for (const id of ["fw-a", "fw-b", "fw-0-reject"]) onCall(helper.getNode(id) as Node, "warn", (w) => warned.push({ id, text: String(w) }));
    const before = connectionTable().stats();
    await unclaimedOnce(port);
    // Plain mode has no original destination: the chosen node reports the unclaimed
    // connection it could not forward, which shows whose settings were used.
    await until(() => warned.length > 0, "the chosen node's report", 3000);
    expect(warned).toEqual([{ id: "fw-a", text: expect.stringMatching(/original destination/) }]);
    expect(connectionTable().stats().unclaimedForwarded).toBe(before.unclaimedForwarded + 1);
  });

  it("msg without a connection is an error, not a crash", async () => {
    await helper.load(registerAll, [{ id: "fw", type: "forward", wires: [[]] }]);
    const fw = helper.getNode("fw") as Node & { receive(m: Msg): void };
    const errors: unknown[] = [];
    onCall(fw, "error", (e) => errors.push(e));
    fw.receive({ payload: "x" });
    await until(() => errors.length > 0, "error", 2000);
    expect(String(errors[0])).toMatch(/_session/);
  });

  it("ships an example flow that forwards TLS by SNI to two upstreams and rejects the rest", () => {
    const flow = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "examples", "forward-tls-by-sni.json"), "utf8")) as Msg[];
    const types = flow.map((n) => n["type"]);
    expect(types).toContain("transparent in");
    expect(types).toContain("classify");
    const forwards = flow.filter((n) => n["type"] === "forward");
    expect(forwards.filter((n) => n["action"] === "forward")).toHaveLength(2);
    expect(forwards.filter((n) => n["action"] === "reject")).toHaveLength(1);
    expect(flow.find((n) => n["type"] === "transparent in")).toMatchObject({ mode: "plain" });
  });
});

// transparent in and original dst in a real Node-RED runtime: in this process on
// loopback (plain mode), and in child runtimes inside network namespaces for REDIRECT,
// TPROXY without CAP_NET_ADMIN and connections without a conntrack entry.
import type { EventEmitter } from "node:events";
import net from "node:net";
import type { Node } from "node-red";
import helper from "node-red-node-test-helper";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/net";
import { connectionTable } from "../../src/connection-table";
import registerNodes from "../../nodes/index";
import { IS_ROOT, systemCommand } from "../support/system";
import { clientConnect, ensureBuilt, inNs, Namespaces, type NdjsonChild, startNodeRedChild } from "../support/netns";
import { until } from "../support/wait";

helper.init(require.resolve("node-red"));

function statuses(node: Node): Array<{ fill?: string; text?: string }> {
  const seen: Array<{ fill?: string; text?: string }> = [];
  // The test helper reports each call of a node method as a `call:<method>` event.
  (node as unknown as EventEmitter).on("call:status", (call: { args: [{ fill?: string; text?: string }] }) => seen.push(call.args[0]));
  return seen;
}

interface Msg {
  _session: { type: string; id: string };
  payload: Record<string, unknown> & { firstBytes?: Buffer };
  originalDst?: Record<string, unknown>;
}

describe("transparent in (this process, loopback, plain mode)", () => {
  afterEach(async () => {
    await helper.unload();
  });

  it("sends one message per connection; the socket waits in the table with its first bytes", async () => {
    const port = await freePort();
    await helper.load(registerNodes, [
      { id: "in", type: "transparent in", port, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 3, sniffTimeout: 1, unclaimedTimeout: 5, unclaimedAction: "close", proxyProtocol: "off", wires: [["out"]] },
      { id: "out", type: "helper" },
    ]);
    const inNode = helper.getNode("in");
    const seen = statuses(inNode);
    const got = new Promise<Msg>((r) => helper.getNode("out").once("input", r));
    const client = net.connect(port, "127.0.0.1", () => client.write("hello"));
    const reply = new Promise<string>((r) => {
      let d = "";
      client.on("data", (c) => (d += c.toString()));
      client.on("end", () => r(d));
    });
    const msg = await got;
    expect(msg._session).toEqual({ type: "traffic", id: msg.payload["id"] });
    expect(msg.payload).toMatchObject({ mode: "plain", family: 4, localAddress: "127.0.0.1", localPort: port, remoteAddress: "127.0.0.1", remotePort: client.localPort });
    expect(Buffer.from(msg.payload.firstBytes!).toString()).toBe("hel");
    expect(typeof msg.payload["acceptedAt"]).toBe("number");
    // A downstream node claims the live socket by id and gets every byte read so far.
    const claimed = connectionTable().claim(msg._session.id, "test");
    expect(claimed?.replay.toString()).toBe("hello");
    claimed!.socket.end("bye");
    expect(await reply).toBe("bye");
    await until(() => seen.some((s) => s.fill === "green" && s.text === `plain :${port} · 1 live`), "live count in status");
  });

  it("Read first stops waiting once classify can decide: an HTTP request through in → classify → forward is answered well within the wait", async () => {
    const upstream = net.createServer((s) => {
      s.once("data", () => s.end("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"));
      s.on("error", () => undefined);
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const upstreamPort = (upstream.address() as net.AddressInfo).port;
    const port = await freePort();
    // As in the transparent-in-classify-mqtt example, with a longer wait so that waiting it out cannot pass for fast.
    const waitS = 5;
    await helper.load(registerNodes, [
      { id: "in", type: "transparent in", port, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 1024, sniffTimeout: waitS, unclaimedTimeout: 10, unclaimedAction: "close", proxyProtocol: "off", wires: [["cls"]] },
      { id: "cls", type: "classify", input: "auto", maxBytes: 1024, timeoutMs: 1000, serverFirstMs: 300, rules: [{ name: "web", protocols: "http1 http2" }, { name: "tls", protocols: "tls" }], wires: [["fw"], ["fw"], ["fw"]] },
      { id: "fw", type: "forward", action: "forward", targetType: "fixed", host: "127.0.0.1", port: upstreamPort, identity: "none", wires: [["out"]] },
      { id: "out", type: "helper" },
    ]);
    const summary = new Promise<{ classification?: { protocol: string }; payload: { end: string } }>((r) => helper.getNode("out").once("input", r));
    try {
      const started = Date.now();
      const answer = await new Promise<string>((resolve, reject) => {
        let d = "";
        const client = net.connect(port, "127.0.0.1", () => client.write("GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"));
        client.on("data", (c) => (d += c.toString()));
        client.on("end", () => resolve(d));
        client.on("error", reject);
      });
      const elapsed = Date.now() - started;
      expect(answer).toMatch(/^HTTP\/1\.1 204/);
      expect(elapsed).toBeLessThan((waitS * 1000) / 5);
      expect(await summary).toMatchObject({ classification: { protocol: "http1" }, payload: { end: "closed" } });
    } finally {
      upstream.close();
    }
  });

  it("closes a connection nobody claims, and frees the port at once on close", async () => {
    const port = await freePort();
    await helper.load(registerNodes, [
      { id: "in", type: "transparent in", port, address: "127.0.0.1", mode: "plain", unclaimedTimeout: 0.05, unclaimedAction: "close", wires: [[]] },
    ]);
    await new Promise((r) => setTimeout(r, 50));
    const client = net.connect(port, "127.0.0.1");
    client.on("error", () => undefined);
    await new Promise((r) => client.once("close", r));
    const live = net.connect(port, "127.0.0.1");
    live.on("error", () => undefined);
    await new Promise((r) => live.once("connect", r));
    await helper.unload();
    // The same port binds again right after close.
    const s = net.createServer();
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, "127.0.0.1", resolve);
    });
    await new Promise((r) => s.close(r));
    live.destroy();
  });

  it("a redeploy keeps the port listening: no dial is refused, and the new settings apply on the same socket", async () => {
    const port = await freePort();
    const flow = (sniffBytes: number): object[] => [
      { id: "in", type: "transparent in", port, address: "127.0.0.1", mode: "plain", sniffBytes, sniffTimeout: 1, unclaimedTimeout: 5, unclaimedAction: "close", wires: [["out"]] },
      { id: "out", type: "helper" },
    ];
    await helper.load(registerNodes, flow(0));
    // A client dialling all along: a redeploy that closed the port for a moment refused some.
    let refused = 0;
    let connected = 0;
    let dialling = true;
    const dialler = (async () => {
      while (dialling) {
        await new Promise<void>((resolve) => {
          const c = net.connect(port, "127.0.0.1");
          c.on("connect", () => {
            connected++;
            c.destroy();
            resolve();
          });
          c.on("error", (err: NodeJS.ErrnoException) => {
            if (err.code === "ECONNREFUSED") refused++;
            resolve();
          });
        });
      }
    })();
    // setFlows deploys like the editor (full: every node stopped and started); the helper's typings lack it.
    const deploy = helper as unknown as { setFlows(flow: object[], type: "full"): Promise<void> };
    for (let i = 1; i <= 6; i++) await deploy.setFlows(flow(i % 2 === 0 ? 3 : 0), "full");
    dialling = false;
    await dialler;
    expect(refused).toBe(0);
    expect(connected).toBeGreaterThan(0);
    // The last version reads 3 first bytes, on the socket the first one opened.
    const client = net.connect(port, "127.0.0.1", () => client.write("hello"));
    client.on("error", () => undefined);
    // Messages of the dialler's last connections may still come: wait for this client's.
    const msg = await new Promise<Msg>((resolve) => {
      const out = helper.getNode("out") as unknown as EventEmitter;
      const onInput = (m: Msg): void => {
        if (m.payload["remotePort"] !== client.localPort) return;
        out.off("input", onInput);
        resolve(m);
      };
      out.on("input", onInput);
    });
    expect(Buffer.from(msg.payload.firstBytes!).toString()).toBe("hel");
    client.destroy();
  });

  it("shows a red status with a short reason when it cannot listen or is misconfigured", async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as net.AddressInfo).port;
    await helper.load(registerNodes, [
      { id: "busy", type: "transparent in", port, address: "127.0.0.1", mode: "plain", wires: [[]] },
      { id: "bad", type: "transparent in", port: 99999, mode: "plain", wires: [[]] },
      { id: "badproxy", type: "transparent in", port, mode: "plain", proxyProtocol: "required", proxyFrom: "10.0.0.1/8", wires: [[]] },
    ]);
    const busy = statuses(helper.getNode("busy"));
    const bad = statuses(helper.getNode("bad"));
    const badproxy = statuses(helper.getNode("badproxy"));
    const settled = (seen: Array<{ text?: string }>): boolean => seen.length > 0 && seen.at(-1)!.text !== "starting";
    await until(() => settled(busy) && settled(bad) && settled(badproxy), "statuses");
    expect(busy.at(-1)).toMatchObject({ fill: "red", text: "port in use" });
    expect(bad.at(-1)).toMatchObject({ fill: "red", text: "bad config" });
    expect(badproxy.at(-1)).toMatchObject({ fill: "red", text: "bad config" });
    await new Promise((r) => blocker.close(r));
  });

  it("original dst refuses messages without a connection", async () => {
    await helper.load(registerNodes, [{ id: "od", type: "original dst", method: "auto", property: "originalDst", wires: [[]] }]);
    const od = helper.getNode("od");
    const errors: Error[] = [];
    (od as unknown as EventEmitter).on("call:error", (call: { args: [Error] }) => errors.push(call.args[0]));
    od.receive({ payload: "x" });
    await until(() => errors.length > 0, "error");
    expect(errors[0]!.message).toMatch(/msg._session/);
  });
});

const nft = IS_ROOT ? systemCommand("nft") : { path: null, skip: true };
const setpriv = IS_ROOT ? systemCommand("setpriv") : { path: null, skip: true };

describe.skipIf(!IS_ROOT || nft.skip || setpriv.skip)("transparent in and original dst in Node-RED inside namespaces", () => {
  const ns = new Namespaces();
  const children: NdjsonChild[] = [];
  let client = "";
  let gw = "";
  let plain = "";
  const PORT = 15001;

  beforeAll(() => {
    ensureBuilt();
    client = ns.add("nc");
    gw = ns.add("ng");
    plain = ns.add("np");
    ns.link(client, "192.0.2.2/24", gw, "192.0.2.1/24", "tn");
    inNs(client, "ip", ["route", "add", "default", "via", "192.0.2.1"]);
    inNs(gw, "nft", ["-f", "-"], `table ip tpt_node_test {
  chain pre { type nat hook prerouting priority dstnat; policy accept;
    ip daddr 198.51.100.7 tcp dport 80 redirect to :${PORT}
  }
}
`);
  });
  afterAll(() => {
    for (const c of children) c.kill();
    ns.cleanup();
  });

  const flow = (mode: string, extra: object = {}): object[] => [
    { id: "in", type: "transparent in", port: PORT, family: "dual", mode, sniffBytes: 0, unclaimedTimeout: 1, unclaimedAction: "close", wires: [["od"]], ...extra },
    { id: "od", type: "original dst", method: "auto", property: "originalDst", wires: [["out"]] },
    { id: "out", type: "helper" },
  ];

  async function statusOf(red: NdjsonChild, id: string): Promise<Record<string, unknown>> {
    for (;;) {
      const s = await red.next(["status"]);
      const status = s["status"] as Record<string, unknown>;
      if (s["id"] === id && status["text"] !== "starting") return status;
    }
  }

  it("REDIRECT: the message and original dst carry the address the client dialled", async () => {
    const red = startNodeRedChild(gw, flow("redirect"));
    children.push(red);
    await red.next(["loaded"]);
    expect(await statusOf(red, "in")).toMatchObject({ fill: "green", text: `redirect :${PORT} · 0 live` });
    clientConnect(client, { host: "198.51.100.7", port: 80, send: "x", timeoutMs: 3000 });
    const m = (await red.next(["message"])).msg as Msg;
    expect(m.payload["originalDst"]).toEqual({ address: "198.51.100.7", port: 80, family: 4, method: "so_original_dst" });
    expect(m.originalDst).toEqual({ address: "198.51.100.7", port: 80, family: 4, method: "so_original_dst" });
    red.send("close");
    const closed = await red.next(["closed"]);
    expect(closed["fds"]).toBeLessThanOrEqual(closed["fdsBefore"] as number);
  });

  it("a connection without a conntrack entry: typed ENOENT and a red status in original dst", async () => {
    const red = startNodeRedChild(plain, flow("plain"));
    children.push(red);
    await red.next(["loaded"]);
    await statusOf(red, "in");
    inNs(plain, process.execPath, ["-e", `const s=require("net").connect(${PORT},"127.0.0.1",()=>setTimeout(()=>s.destroy(),300))`]);
    const err = await red.next(["error"]);
    expect(err).toMatchObject({ id: "od", code: "ENOENT" });
    expect(err["message"]).toMatch(/no conntrack entry/);
    expect(await statusOf(red, "od")).toMatchObject({ fill: "red", text: "not redirected" });
    red.send("close");
    await red.next(["closed"]);
  });

  it("without CAP_NET_ADMIN: TPROXY turns red with a clear error while REDIRECT keeps working", async () => {
    const red = startNodeRedChild(gw, [{ id: "tp", type: "transparent in", port: 15002, mode: "tproxy", wires: [[]] }, ...flow("redirect")], true);
    children.push(red);
    await red.next(["loaded"]);
    const err = await red.next(["error"]);
    expect(err).toMatchObject({ id: "tp" });
    expect(err["message"]).toMatch(/EPERM.*CAP_NET_ADMIN/);
    expect(await statusOf(red, "tp")).toMatchObject({ fill: "red", text: "no CAP_NET_ADMIN" });
    expect(await statusOf(red, "in")).toMatchObject({ fill: "green" });
    clientConnect(client, { host: "198.51.100.7", port: 80, send: "x", timeoutMs: 3000 });
    const m = (await red.next(["message"])).msg as Msg;
    expect(m.originalDst).toMatchObject({ address: "198.51.100.7", port: 80 });
    red.send("close");
    await red.next(["closed"]);
  });
});

import { readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import type { Node } from "node-red";
import helper from "node-red-node-test-helper";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import registerClassify from "../../nodes/classify/classify";
import { classifyBytes, setMoreBytesSource } from "../../src/classify";
import { makeEvent, toEvent, type FlowCloseEvent } from "../../src/events";
import { vector } from "../support/classify-vectors";
import { assertValidEvent } from "../support/events";
import { policyVerdictsOf } from "../../src/policy/verdict";

const injectNode = require("@node-red/nodes/core/common/20-inject.js");

type Msg = Record<string, unknown> & { classification?: { protocol: string; rule: string | null; output: number; fields: Record<string, unknown> } };

const RULES = [
  { name: "api", protocols: "tls", hosts: "api.example.test" },
  { name: "web", protocols: "tls", hosts: "*.example.test", alpn: "h2" },
  { name: "internal http", protocols: "http1", clients: "loopback", ports: "80, 8000-8100" },
];

function flow(extra: Record<string, unknown> = {}): Array<Record<string, unknown>> {
  return [
    { id: "c", type: "classify", name: "", input: "auto", property: "payload", rules: RULES, outputs: 4, wires: [["o0"], ["o1"], ["o2"], ["o3"]], ...extra },
    { id: "o0", type: "helper" },
    { id: "o1", type: "helper" },
    { id: "o2", type: "helper" },
    { id: "o3", type: "helper" },
  ];
}

let routed: Array<[number, Msg]> = [];

/** Wires a collector to the four helper outputs (Node-RED input listeners are not removed one by one). */
function collectOutputs(): void {
  routed = [];
  for (let i = 0; i < 4; i++) helper.getNode(`o${i}`)?.on("input", (m: Msg) => routed.push([i, m]));
}

/** Sends `msg` into classify and resolves with [output index, message] of the output that receives it. */
async function routeOf(msg: Record<string, unknown>, timeoutMs = 5000): Promise<[number, Msg]> {
  const before = routed.length;
  let failure: unknown = null;
  const c = helper.getNode("c") as unknown as NodeJS.EventEmitter;
  const onError = (call: { args: unknown[] }): void => {
    failure = call.args[0];
  };
  c.on("call:error", onError);
  helper.getNode("c").receive(msg);
  const end = Date.now() + timeoutMs;
  try {
    while (routed.length === before) {
      if (failure !== null) throw new Error(String(failure));
      if (Date.now() > end) throw new Error("no output");
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    c.off("call:error", onError);
  }
  return routed[before]!;
}

function nextError(node: Node): Promise<unknown> {
  return new Promise((resolve) => (node as unknown as NodeJS.EventEmitter).once("call:error", (call: { args: unknown[] }) => resolve(call.args[0])));
}

describe("classify node in a Node-RED runtime", () => {
  beforeAll(() => {
    helper.init(require.resolve("node-red"));
  });
  afterEach(async () => {
    setMoreBytesSource(null);
    await helper.unload();
  });

  it("routes by JA4 prefix or JA3 hash and carries the fingerprints in msg.classification", async () => {
    const curl = vector("curl-https");
    const openssl = vector("openssl-s_client");
    const fp = classifyBytes(curl.bytes).fields;
    const rules = [{ name: "curl by ja4", fingerprints: `${fp.ja4!.slice(0, 11)}*` }, { name: "openssl by ja3", fingerprints: classifyBytes(openssl.bytes).fields.ja3Hash }];
    await helper.load(registerClassify, flow({ rules, outputs: 3 }));
    collectOutputs();
    const [out0, m0] = await routeOf({ payload: curl.bytes });
    expect([out0, m0.classification?.rule, m0.classification?.fields["ja4"], m0.classification?.fields["ja3Hash"]]).toEqual([0, "curl by ja4", fp.ja4, fp.ja3Hash]);
    const [out1] = await routeOf({ payload: openssl.bytes });
    expect(out1).toBe(1);
    const [out2] = await routeOf({ payload: vector("curl-http1").bytes });
    expect(out2).toBe(2);
  });

  it("computes only the fingerprints the rules match on, unless every ClientHello is to carry them", async () => {
    const curl = vector("curl-https");
    const openssl = vector("openssl-s_client");
    const fp = classifyBytes(curl.bytes).fields;
    // JA4 patterns only: the JA4 is computed, the JA3 is not.
    await helper.load(registerClassify, flow({ tlsFingerprints: "rules", rules: [{ name: "curl by ja4", fingerprints: `${fp.ja4!.slice(0, 11)}*` }], outputs: 2 }));
    collectOutputs();
    const [out0, m0] = await routeOf({ payload: curl.bytes });
    expect([out0, m0.classification?.rule, m0.classification?.fields["ja4"], "ja3" in m0.classification!.fields, "ja3Hash" in m0.classification!.fields]).toEqual([0, "curl by ja4", fp.ja4, false, false]);
    expect((await routeOf({ payload: openssl.bytes }))[0]).toBe(1);
    await helper.unload();
    // A JA3 hash among the patterns: all three are computed.
    await helper.load(registerClassify, flow({ tlsFingerprints: "rules", rules: [{ name: "curl by ja3", fingerprints: fp.ja3Hash }], outputs: 2 }));
    collectOutputs();
    const [out1, m1] = await routeOf({ payload: curl.bytes });
    expect([out1, m1.classification?.fields["ja4"], m1.classification?.fields["ja3"], m1.classification?.fields["ja3Hash"]]).toEqual([0, fp.ja4, fp.ja3, fp.ja3Hash]);
    await helper.unload();
    // No fingerprint condition, the default setting: none computed, the other fields as before.
    await helper.load(registerClassify, flow());
    collectOutputs();
    const [, m2] = await routeOf({ payload: curl.bytes });
    const { ja4: _ja4, ja3: _ja3, ja3Hash: _ja3Hash, ...rest } = fp;
    expect(m2.classification?.protocol).toBe("tls");
    expect(m2.classification?.fields).toEqual(rest);
    await helper.unload();
    // In fields for every ClientHello: all three, whatever the rules.
    await helper.load(registerClassify, flow({ tlsFingerprints: "fields" }));
    collectOutputs();
    const [, m3] = await routeOf({ payload: curl.bytes });
    expect(m3.classification?.fields).toEqual(fp);
  });

  it("in shadow mode sends everything to other and reports the rule that would have taken it", async () => {
    const statuses: string[] = [];
    await helper.load(registerClassify, flow({ enforcement: "shadow" }));
    collectOutputs();
    (helper.getNode("c") as unknown as NodeJS.EventEmitter).on("call:status", (call: { args: Array<{ text?: string }> }) => statuses.push(String(call.args[0]?.text)));
    const [out, m] = await routeOf({ payload: vector("openssl-s_client").bytes });
    expect(out).toBe(3);
    expect(m.classification?.rule).toBeNull();
    const verdicts = policyVerdictsOf(m);
    expect(verdicts).toHaveLength(1);
    assertValidEvent(verdicts[0]);
    expect(verdicts[0]).toMatchObject({ type: "policy-verdict", mode: "shadow", verdict: "route", nodeType: "classify", nodeId: "c", output: 0, rule: "api" });
    expect(verdicts[0]!.reason).toContain("api.example.test");
    const [out2, m2] = await routeOf({ payload: vector("ssh").bytes });
    expect(out2).toBe(3);
    expect(policyVerdictsOf(m2)).toEqual([]);
    await new Promise((r) => setTimeout(r, 1200));
    expect(statuses.at(-1)).toBe("shadow · api 1 · other 1");
  });

  it("routes TLS by SNI and ALPN, HTTP by client and port, the rest to other", async () => {
    await helper.load(registerClassify, flow());
    collectOutputs();
    const [api, m1] = await routeOf({ payload: vector("openssl-s_client").bytes });
    expect(api).toBe(0);
    expect(m1.classification).toMatchObject({ protocol: "tls", rule: "api", output: 0, fields: { sni: "api.example.test" } });
    expect((await routeOf({ payload: vector("chromium").bytes }))[0]).toBe(1);
    // No ALPN, so neither TLS rule: other, never dropped.
    const [other, m3] = await routeOf({ payload: vector("openssl-s_client-tls12").bytes });
    expect(other).toBe(3);
    expect(m3.classification).toMatchObject({ protocol: "tls", rule: null, output: 3 });
    expect((await routeOf({ payload: Buffer.from("\x00\x01 junk that no sniffer wants") }))[1].classification!.protocol).toBe("unknown");
  });

  it("reads a connection message: first bytes, client and original destination", async () => {
    await helper.load(registerClassify, flow());
    collectOutputs();
    const conn = (remoteAddress: string, port: number): Record<string, unknown> => ({
      _session: { type: "traffic", id: `conn-${remoteAddress}-${port}` },
      payload: {
        id: "x",
        mode: "redirect",
        family: 4,
        localAddress: "127.0.0.1",
        localPort: 15001,
        remoteAddress,
        remotePort: 40000,
        originalDst: { address: "192.0.2.80", port, family: 4, method: "so_original_dst" },
        firstBytes: vector("curl-http1").bytes,
        acceptedAt: Date.now(),
      },
    });
    expect((await routeOf(conn("127.0.0.1", 8080)))[0]).toBe(2);
    expect((await routeOf(conn("127.0.0.1", 443)))[0]).toBe(3);
    expect((await routeOf(conn("203.0.113.9", 80)))[0]).toBe(3);
    // A connection whose client has said nothing yet: server-first, with a port hint.
    const silent = conn("127.0.0.1", 25);
    delete (silent["payload"] as Record<string, unknown>)["firstBytes"];
    const [i, m] = await routeOf(silent);
    expect(i).toBe(3);
    expect(m.classification).toMatchObject({ protocol: "server-first", fields: { serverFirstHint: "smtp" } });
  });

  it("classifies a flow source close event by its base64 first bytes, from the side that opened, and mqtt events' converter names the flow", async () => {
    await helper.load(registerClassify, flow());
    collectOutputs();
    const http = vector("curl-http1").bytes;
    const flowClose = (side: "client" | "server", sent: Buffer, received: Buffer): FlowCloseEvent =>
      makeEvent<FlowCloseEvent>({
        type: "flow-close",
        flowId: "77",
        protocol: "tcp",
        source: "ebpf",
        side,
        family: 4,
        localIp: "127.0.0.1",
        localPort: side === "client" ? 40000 : 8080,
        remoteIp: "127.0.0.1",
        remotePort: side === "client" ? 8080 : 40000,
        pid: 1,
        comm: "curl",
        uid: 0,
        ownerFrom: "connect",
        cgroupId: null,
        netns: null,
        partial: false,
        end: "normal",
        error: null,
        lastState: "FIN_WAIT2",
        established: true,
        bytesSent: sent.length,
        bytesReceived: received.length,
        bytesExact: true,
        bytesRetransmitted: 0,
        retransmits: 0,
        srttUs: 50,
        rttMinUs: 40,
        segmentsIn: 3,
        segmentsOut: 3,
        durationMs: 1,
        handshakeMs: 0.1,
        firstBytes: { sent: sent.toString("base64"), received: received.toString("base64") },
      });
    const reply = Buffer.from("HTTP/1.1 200 OK\r\n\r\n");
    for (const [side, sent, received] of [["client", http, reply], ["server", reply, http]] as const) {
      const event = flowClose(side, sent, received);
      assertValidEvent(event);
      const [index, m] = await routeOf({ payload: event });
      // "internal http" wants a port in 8000-8100: the remote port of the client socket, the local one of the accepted socket.
      expect(index).toBe(2);
      expect(m.classification).toMatchObject({ protocol: "http1" });
      const converted = toEvent(m as Parameters<typeof toEvent>[0], { host: "h" });
      assertValidEvent(converted);
      expect(converted).toMatchObject({ type: "classification", flowId: "77", side, protocol: "http1" });
    }
  });

  it("takes bytes as JSON-serialised Buffers, byte arrays and strings, from a configured property", async () => {
    await helper.load(registerClassify, flow({ input: "property", property: "data.bytes" }));
    collectOutputs();
    const ssh = vector("ssh").bytes;
    expect((await routeOf({ data: { bytes: JSON.parse(JSON.stringify(ssh)) } }))[1].classification!.protocol).toBe("ssh");
    expect((await routeOf({ data: { bytes: [...vector("redis-cli").bytes] } }))[1].classification!.protocol).toBe("redis");
    expect((await routeOf({ data: { bytes: "GET /x HTTP/1.1\r\nHost: a\r\n\r\n" } }))[1].classification!.protocol).toBe("http1");
    // A flow event with first bytes in its payload is still read in "property" mode only from the property.
    const c = helper.getNode("c");
    const err = nextError(c);
    c.receive({ payload: { firstBytes: ssh } });
    expect(String(await err)).toContain("msg.data.bytes");
  });

  it("reports a message without bytes to Catch nodes and does not route it", async () => {
    await helper.load(registerClassify, flow());
    collectOutputs();
    const c = helper.getNode("c");
    let routed = false;
    for (let i = 0; i < 4; i++) helper.getNode(`o${i}`).on("input", () => (routed = true));
    const err = nextError(c);
    c.receive({ payload: { something: 1 } });
    expect(String(await err)).toContain("expected a Buffer");
    expect(routed).toBe(false);
  });

  it("counts per output in its status", async () => {
    await helper.load(registerClassify, flow());
    collectOutputs();
    const c = helper.getNode("c");
    const texts: string[] = [];
    (c as unknown as NodeJS.EventEmitter).on("call:status", (call: { args: Array<{ text?: string }> }) => texts.push(String(call.args[0]?.text)));
    await routeOf({ payload: vector("openssl-s_client").bytes });
    await routeOf({ payload: vector("chromium").bytes });
    await routeOf({ payload: vector("ssh").bytes });
    await new Promise((r) => setTimeout(r, 400));
    // Outputs by their labels (a rule that took nothing yet is left out; other always shows).
    expect(texts.at(-1)).toBe("api 1 · web 1 · other 1");
  });

  it("a bad rule turns the node red and fails every message", async () => {
    await helper.load(registerClassify, flow({ rules: [{ name: "broken", clients: "10.0.0.1/8" }], outputs: 2 }));
    const c = helper.getNode("c");
    const err = nextError(c);
    c.receive({ payload: vector("ssh").bytes });
    expect(String(await err)).toContain("broken");
  });

  it("asks the listener for more bytes through the hook while within limits (real TCP, ClientHello in two writes)", async () => {
    const hello = vector("chromium").bytes;
    const accepted = new Map<string, net.Socket>();
    const received = new Map<string, Buffer>();
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    const gotConn = new Promise<string>((resolve) =>
      server.on("connection", (s) => {
        const id = `tcp-${s.remotePort}`;
        accepted.set(id, s);
        received.set(id, Buffer.alloc(0));
        s.on("data", (d) => received.set(id, Buffer.concat([received.get(id)!, d])));
        resolve(id);
      }),
    );
    let asked = 0;
    setMoreBytesSource({
      readMore(id, have, maxBytes, deadline) {
        asked++;
        const sock = accepted.get(id);
        if (sock === undefined) return Promise.resolve(null);
        return new Promise((resolve) => {
          const check = (): void => {
            const b = received.get(id)!;
            if (b.length > have || Date.now() >= deadline) {
              sock.off("data", check);
              clearTimeout(timer);
              resolve({ bytes: b.subarray(0, maxBytes), ended: false });
            }
          };
          const timer = setTimeout(check, Math.max(0, deadline - Date.now()));
          sock.on("data", check);
          check();
        });
      },
    });
    const client = net.connect(port, "127.0.0.1");
    try {
      await helper.load(registerClassify, flow());
    collectOutputs();
      client.write(hello.subarray(0, 700));
      const id = await gotConn;
      while (received.get(id)!.length < 700) await new Promise((r) => setTimeout(r, 5));
      const routed = routeOf({ _session: { type: "traffic", id }, payload: { firstBytes: received.get(id), remoteAddress: "127.0.0.1" } });
      await new Promise((r) => setTimeout(r, 100));
      client.write(hello.subarray(700));
      const [i, m] = await routed;
      expect(asked).toBeGreaterThan(0);
      expect(i).toBe(1);
      expect(m.classification).toMatchObject({ protocol: "tls", bytes: hello.length, fields: { sni: "www.example.test", postQuantum: true } });
    } finally {
      client.destroy();
      for (const s of accepted.values()) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it("runs the example flow: real captured bytes from inject nodes land on the right outputs", async () => {
    const example = JSON.parse(readFileSync(path.join(__dirname, "..", "..", "examples", "classify-tls-by-sni.json"), "utf8")) as Array<Record<string, unknown>>;
    // On a tab, as the editor deploys it (nodes with a position but no tab do not start).
    const nodes: Array<Record<string, unknown>> = [
      { id: "tab", type: "tab" },
      ...example.filter((n) => n["type"] !== "comment" && n["type"] !== "debug").map((n) => ({ ...n, z: "tab" })),
    ];
    const classify = nodes.find((n) => n["type"] === "classify")!;
    classify["wires"] = [["o0"], ["o1"], ["o2"]];
    nodes.push({ id: "o0", type: "helper", z: "tab" }, { id: "o1", type: "helper", z: "tab" }, { id: "o2", type: "helper", z: "tab" });
    await helper.load([injectNode, registerClassify], nodes);
    const seen: Array<[number, string]> = [];
    for (let i = 0; i < 3; i++) helper.getNode(`o${i}`).on("input", (m: Msg) => seen.push([i, m.classification!.protocol]));
    for (const inject of nodes.filter((n) => n["type"] === "inject")) helper.getNode(String(inject["id"])).receive({});
    const end = Date.now() + 5000;
    while (seen.length < 4 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect(seen.sort()).toEqual([
      [0, "tls"],
      [1, "tls"],
      [2, "http1"],
      [2, "ssh"],
    ]);
  });
});

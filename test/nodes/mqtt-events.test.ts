import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { connect as netConnect, createServer, type AddressInfo, type Socket } from "node:net";
import { connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import registerNodes from "../../nodes/index";
import { makeEvent, type FlowOpenEvent, type TrafficEvent } from "../../src/events";
import { addPolicyVerdict } from "../../src/policy/verdict";
import { assertValidEvent } from "../support/events";
import { freePort, startMosquitto, type Mosquitto } from "../support/mosquitto";
import { systemCommand } from "../support/system";
import { until } from "../support/wait";

const require_ = createRequire(__filename);
const helper = require_("node-red-node-test-helper") as {
  init(path: string): void;
  load(node: unknown, flow: object[], credentials?: object): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): { receive(msg: object): void; on(ev: string, fn: (msg: object) => void): void; status?: unknown } | null;
  startServer(): Promise<void>;
  stopServer(): Promise<void>;
};
helper.init(require_.resolve("node-red"));

const mosquittoBin = systemCommand("mosquitto");
const mosquittoSub = systemCommand("mosquitto_sub");

function flowEvent(i: number, side: "client" | "server"): FlowOpenEvent {
  return makeEvent<FlowOpenEvent>(
    { type: "flow-open", flowId: String(i + 1), protocol: "tcp", source: "ebpf", pid: null, comm: null, uid: null, ownerFrom: null, cgroupId: null, netns: null, partial: false, side, family: 4, localIp: "192.0.2.1", localPort: 40000 + (i % 1000), remoteIp: "198.51.100.7", remotePort: 443 },
    { host: "agent-a", id: `ev-${i}` },
  );
}

/** Collects `count` messages from `mosquitto_sub`, one JSON object a line with its topic. */
function mosquittoSubCollect(port: number, topic: string, count: number): { ready: Promise<void>; done: Promise<Array<{ topic: string; payload: unknown }>>; stop(): void } {
  // stdbuf: mosquitto_sub's stdout is a pipe here, so without it lines would wait in its buffer.
  const child = spawn("stdbuf", ["-oL", mosquittoSub.path as string, "-h", "127.0.0.1", "-p", String(port), "-t", topic, "-q", "1", "-C", String(count), "-F", "%t %p", "-d"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  child.stdout.on("data", (c: Buffer) => {
    out += c.toString();
    if (out.includes("SUBACK")) ready();
  });
  const done = new Promise<Array<{ topic: string; payload: unknown }>>((resolve, reject) => {
    child.once("exit", () => {
      const lines = out.split("\n").filter((l) => l.startsWith("traffic/"));
      try {
        resolve(lines.map((l) => ({ topic: l.slice(0, l.indexOf(" ")), payload: JSON.parse(l.slice(l.indexOf(" ") + 1)) as unknown })));
      } catch (e) {
        reject(e);
      }
    });
  });
  return { ready: readyP, done, stop: () => child.kill("SIGTERM") };
}

/** MQTT topic filter match (+ one level, # the rest). */
function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length || (f[i] !== "+" && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/** Connects to the MQTT broker on `port` (loopback), retrying while it starts. */
async function connectWhenUp(port: number, options: IClientOptions): Promise<MqttClient> {
  for (let i = 0; ; i++) {
    try {
      return await connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 1000, ...options });
    } catch (err) {
      if (i > 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function collect(client: MqttClient, filter: string, count: number, timeoutMs = 20_000): Promise<Array<{ topic: string; payload: unknown }>> {
  const got: Array<{ topic: string; payload: unknown }> = [];
  await client.subscribeAsync(filter, { qos: 1 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`received ${got.length} of ${count}`)), timeoutMs);
    client.on("message", (topic, payload) => {
      if (!topicMatches(filter, topic)) return;
      got.push({ topic, payload: JSON.parse(payload.toString()) as unknown });
      if (got.length === count) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

function flowFor(brokerNode: object, extra: object = {}): object[] {
  return [
    brokerNode,
    { id: "ev", type: "mqtt events", broker: "br", topic: "traffic/{host}/{type}/{side}", qos: "1", maxQueued: 100000, maxInFlight: 100, statsInterval: 0, wires: [["out"]], ...extra },
    { id: "out", type: "helper" },
  ];
}

/**
 * The broker of one describe.each kind, for the whole block: the embedded one (a free port
 * for the `traffic broker` to listen on) or a mosquitto of its own, and the Node-RED test
 * server around it. Its tests skip, with the reason, when mosquitto is wanted and missing.
 */
function brokerFor(kind: "embedded" | "mosquitto"): { readonly skip: boolean; port: number } {
  let mosquitto: Mosquitto | null = null;
  const broker = { skip: kind === "mosquitto" ? mosquittoBin.skip : false, port: 0 };
  beforeEach((ctx) => ctx.skip(broker.skip, mosquittoBin.reason));
  beforeAll(async () => {
    if (broker.skip) return;
    await helper.startServer();
    if (kind === "mosquitto") {
      mosquitto = await startMosquitto(mosquittoBin.path as string);
      broker.port = mosquitto.port;
    } else {
      broker.port = await freePort();
    }
  });
  afterEach(async () => {
    if (!broker.skip) await helper.unload();
  });
  afterAll(async () => {
    if (broker.skip) return;
    await helper.stopServer();
    await mosquitto?.dispose();
  });
  return broker;
}

describe.each(["embedded", "mosquitto"] as const)("mqtt events through %s", (kind) => {
  const setup = brokerFor(kind);

  it("subscribers (mqtt.js and mosquitto_sub) receive exactly the events sent, schema-valid, in order per topic", async (ctx) => {
    ctx.skip(mosquittoSub.skip, mosquittoSub.reason);
    const broker =
      kind === "embedded"
        ? { id: "br", type: "traffic broker", mode: "embedded", embeddedHost: "127.0.0.1", embeddedPort: setup.port, statusTopic: "traffic/{host}/status", agentHost: "agent-a" }
        : { id: "br", type: "traffic broker", mode: "external", url: `mqtt://127.0.0.1:${setup.port}`, protocolVersion: "5", statusTopic: "traffic/{host}/status", agentHost: "agent-a" };
    await helper.load(registerNodes, flowFor(broker));
    // The broker node connects (and the embedded one listens) when its first user registers.
    const status = await (async () => {
      const c = await connectAsync(`mqtt://127.0.0.1:${setup.port}`, { reconnectPeriod: 100, connectTimeout: 5000 }).catch(async () => {
        await new Promise((r) => setTimeout(r, 300));
        return connectAsync(`mqtt://127.0.0.1:${setup.port}`, { reconnectPeriod: 100 });
      });
      return c;
    })();
    const retained = await new Promise<unknown>((resolve) => {
      status.on("message", (_t, p) => resolve(JSON.parse(p.toString())));
      void status.subscribeAsync("traffic/agent-a/status", { qos: 1 });
    });
    assertValidEvent(retained);
    expect(retained).toMatchObject({ type: "agent-status", status: "online", host: "agent-a" });
    await status.endAsync();

    const n = kind === "embedded" ? 2000 : 5000;
    const sub = await connectAsync(`mqtt://127.0.0.1:${setup.port}`, { protocolVersion: kind === "embedded" ? 4 : 5 });
    const viaJs = collect(sub, "traffic/agent-a/flow-open/#", n);
    const viaCli = mosquittoSubCollect(setup.port, "traffic/agent-a/flow-open/#", n);
    await viaCli.ready;
    await new Promise((r) => setTimeout(r, 100));
    const node = helper.getNode("ev");
    if (!node) throw new Error("node not loaded");
    const sent: TrafficEvent[] = [];
    for (let i = 0; i < n; i++) {
      const ev = flowEvent(i, i % 3 === 0 ? "client" : "server");
      sent.push(ev);
      node.receive({ payload: ev });
    }
    for (const got of [await viaJs, await viaCli.done]) {
      expect(got.length).toBe(n);
      for (const m of got) assertValidEvent(m.payload);
      expect(new Set(got.map((m) => (m.payload as TrafficEvent).id))).toEqual(new Set(sent.map((e) => e.id)));
      for (const side of ["client", "server"]) {
        const topic = `traffic/agent-a/flow-open/${side}`;
        const ids = got.filter((m) => m.topic === topic).map((m) => (m.payload as TrafficEvent).id);
        expect(ids).toEqual(sent.filter((e) => (e as FlowOpenEvent).side === side).map((e) => e.id));
      }
    }
    await sub.endAsync();
    await helper.unload();
  });

  it("publishes each policy verdict a message carries once, beside the message's own event", async () => {
    const broker =
      kind === "embedded"
        ? { id: "br", type: "traffic broker", mode: "embedded", embeddedHost: "127.0.0.1", embeddedPort: setup.port, agentHost: "agent-c" }
        : { id: "br", type: "traffic broker", mode: "external", url: `mqtt://127.0.0.1:${setup.port}`, protocolVersion: "5", agentHost: "agent-c" };
    await helper.load(registerNodes, flowFor(broker));
    const sub = await connectWhenUp(setup.port, { protocolVersion: kind === "embedded" ? 4 : 5 });
    const got: Array<{ topic: string; payload: Record<string, unknown> }> = [];
    sub.on("message", (topic, payload) => got.push({ topic, payload: JSON.parse(payload.toString()) as Record<string, unknown> }));
    await sub.subscribeAsync("traffic/agent-c/#", { qos: 1 });
    const msg: Record<string, unknown> = { payload: { hello: 1 } };
    addPolicyVerdict(msg, { mode: "shadow", verdict: "deny", nodeType: "ip filter", nodeId: "f1", rule: "blocked", reason: "rule \"blocked\" (deny) matched 192.0.2.7", clientIp: "192.0.2.7" });
    // The same message twice (say classify's output, then forward's summary): one verdict event.
    helper.getNode("ev")?.receive(msg);
    helper.getNode("ev")?.receive(msg);
    await until(() => got.filter((g) => g.topic === "traffic/agent-c/message/none").length === 2, "two messages on traffic/agent-c/message/none");
    await new Promise((r) => setTimeout(r, 300));
    const verdicts = got.filter((g) => g.topic.startsWith("traffic/agent-c/policy-verdict/"));
    expect(verdicts).toHaveLength(1);
    assertValidEvent(verdicts[0]!.payload);
    expect(verdicts[0]!.payload).toMatchObject({ type: "policy-verdict", host: "agent-c", mode: "shadow", verdict: "deny", rule: "blocked", clientIp: "192.0.2.7" });
    await sub.endAsync();
    await helper.unload();
  });

  it("sends an mqtt-stats event on its output and publishes it; a per-message topic overrides the template", async () => {
    const broker =
      kind === "embedded"
        ? { id: "br", type: "traffic broker", mode: "embedded", embeddedHost: "127.0.0.1", embeddedPort: setup.port, agentHost: "agent-b" }
        : { id: "br", type: "traffic broker", mode: "external", url: `mqtt://127.0.0.1:${setup.port}`, protocolVersion: "5", agentHost: "agent-b" };
    await helper.load(registerNodes, flowFor(broker, { statsInterval: 1 }));
    await new Promise((r) => setTimeout(r, 300));
    const sub = await connectAsync(`mqtt://127.0.0.1:${setup.port}`, { protocolVersion: kind === "embedded" ? 4 : 5 });
    const overridden = collect(sub, "custom/override", 1);
    const statsOnBroker = new Promise<unknown>((resolve) => {
      sub.on("message", (t, p) => {
        if (t === "traffic/agent-b/mqtt-stats/none") resolve(JSON.parse(p.toString()));
      });
    });
    await sub.subscribeAsync("traffic/agent-b/#", { qos: 1 });
    const out = helper.getNode("out");
    const fromOutput = new Promise<{ payload: unknown }>((resolve) => out?.on("input", (m) => resolve(m as { payload: unknown })));
    helper.getNode("ev")?.receive({ topic: "custom/override", payload: { hello: 1 } });
    expect((await overridden)[0]?.payload).toEqual({ hello: 1 });
    const stats = (await fromOutput).payload;
    assertValidEvent(stats);
    expect(stats).toMatchObject({ type: "mqtt-stats", host: "agent-b", connected: true });
    assertValidEvent(await statsOnBroker);
    await sub.endAsync();
    await helper.unload();
  });

});

/** Connects to 127.0.0.1:port, sends `bytes`, and resolves with the local port once connected. */
function httpClient(port: number, bytes: string): Promise<{ localPort: number; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, "127.0.0.1", () => {
      socket.write(bytes);
      resolve({ localPort: socket.localPort!, socket });
    });
    socket.on("error", reject);
    socket.resume();
  });
}

describe.each(["embedded", "mosquitto"] as const)("transparent in → classify → mqtt events through %s: connections become events", (kind) => {
  const setup = brokerFor(kind);

  const brokerNode = (): object =>
    kind === "embedded"
      ? { id: "br", type: "traffic broker", mode: "embedded", embeddedHost: "127.0.0.1", embeddedPort: setup.port, statusTopic: "", agentHost: "agent-c" }
      : { id: "br", type: "traffic broker", mode: "external", url: `mqtt://127.0.0.1:${setup.port}`, protocolVersion: "5", statusTopic: "", agentHost: "agent-c" };

  // The embedded broker listens once its first user registered.
  const subscriber = (): Promise<MqttClient> => connectWhenUp(setup.port, { protocolVersion: kind === "embedded" ? 4 : 5 });

  it("a real connection is published as connection-accepted and classification events, schema-valid, topics from the events", async (ctx) => {
    ctx.skip(mosquittoSub.skip, mosquittoSub.reason);
    const listenPort = await freePort();
    await helper.load(registerNodes, [
      brokerNode(),
      { id: "in", type: "transparent in", port: listenPort, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 256, sniffTimeout: 1, unclaimedTimeout: 3, unclaimedAction: "close", proxyProtocol: "off", wires: [["cls", "ev"]] },
      { id: "cls", type: "classify", input: "auto", maxBytes: 256, timeoutMs: 1000, rules: [{ name: "web", protocols: "http1" }], wires: [["ev"], ["ev"]] },
      { id: "ev", type: "mqtt events", broker: "br", topic: "traffic/{host}/{type}/{side}/{protocol}", qos: "1", statsInterval: 0, wires: [[]] },
    ]);
    const sub = await subscriber();
    const viaJs = collect(sub, "traffic/agent-c/#", 3);
    const viaCli = mosquittoSubCollect(setup.port, "traffic/agent-c/#", 3);
    await viaCli.ready;
    await new Promise((r) => setTimeout(r, 100));
    const client = await httpClient(listenPort, "GET /status HTTP/1.1\r\nHost: example.org\r\n\r\n");
    try {
      for (const got of [await viaJs, await viaCli.done]) {
        for (const m of got) assertValidEvent(m.payload);
        const byType = new Map(got.map((m) => [(m.payload as TrafficEvent).type, m]));
        const accepted = byType.get("connection-accepted");
        const classified = byType.get("classification");
        expect(accepted?.topic).toBe("traffic/agent-c/connection-accepted/server/none");
        expect(accepted?.payload).toMatchObject({ host: "agent-c", mode: "plain", side: "server", localIp: "127.0.0.1", localPort: listenPort, remoteIp: "127.0.0.1", remotePort: client.localPort });
        expect(classified?.topic).toBe("traffic/agent-c/classification/server/http1");
        expect(classified?.payload).toMatchObject({
          host: "agent-c",
          connectionId: (accepted!.payload as { connectionId: string }).connectionId,
          protocol: "http1",
          rule: "web",
          output: 0,
          remotePort: client.localPort,
          fields: { host: "example.org", path: "/status" },
        });
        // The rule that took the connection is a policy decision: published once beside it.
        expect(byType.get("policy-verdict")?.payload).toMatchObject({ mode: "enforce", verdict: "route", nodeType: "classify", rule: "web", output: 0, connectionId: (accepted!.payload as { connectionId: string }).connectionId });
      }
    } finally {
      client.socket.destroy();
      await sub.endAsync();
    }
  });

  it("a forward summary of a classified connection fills {protocol} in the topic and carries the protocol", async () => {
    const upstream = createServer((s) => {
      s.once("data", () => s.end("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"));
      s.on("error", () => undefined);
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const upstreamPort = (upstream.address() as AddressInfo).port;
    const listenPort = await freePort();
    await helper.load(registerNodes, [
      brokerNode(),
      { id: "in", type: "transparent in", port: listenPort, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 0, unclaimedTimeout: 3, unclaimedAction: "close", proxyProtocol: "off", wires: [["cls"]] },
      { id: "cls", type: "classify", input: "auto", maxBytes: 256, timeoutMs: 1000, rules: [{ name: "web", protocols: "http1" }], wires: [["fw"], ["fw"]] },
      { id: "fw", type: "forward", action: "forward", targetType: "fixed", host: "127.0.0.1", port: upstreamPort, identity: "none", pump: "js", wires: [["ev"]] },
      { id: "ev", type: "mqtt events", broker: "br", topic: "traffic/{host}/{type}/{protocol}", qos: "1", statsInterval: 0, wires: [[]] },
    ]);
    const sub = await subscriber();
    const got = collect(sub, "traffic/agent-c/forward-summary/#", 1);
    await new Promise((r) => setTimeout(r, 100));
    const client = await httpClient(listenPort, "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n");
    try {
      const [m] = await got;
      assertValidEvent(m?.payload);
      expect(m?.topic).toBe("traffic/agent-c/forward-summary/http1");
      expect(m?.payload).toMatchObject({ type: "forward-summary", protocol: "http1", remotePort: client.localPort, end: "closed" });
    } finally {
      client.socket.destroy();
      await sub.endAsync();
      upstream.close();
    }
  });

  it("with convert off, the connection message is published as it is (its msg.topic, when allowed, is the topic again)", async () => {
    const listenPort = await freePort();
    await helper.load(registerNodes, [
      brokerNode(),
      { id: "in", type: "transparent in", port: listenPort, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 0, unclaimedTimeout: 3, unclaimedAction: "close", proxyProtocol: "off", wires: [["ev"]] },
      { id: "ev", type: "mqtt events", broker: "br", topic: "traffic/{host}/{type}", qos: "1", statsInterval: 0, convert: false, wires: [[]] },
    ]);
    const sub = await subscriber();
    // Not an event now, so transparent in's msg.topic (the connection, one level) is the topic.
    const got = collect(sub, "+", 1);
    await new Promise((r) => setTimeout(r, 100));
    const client = await httpClient(listenPort, "");
    try {
      const [m] = await got;
      expect(m?.topic).toBe(`127.0.0.1:${client.localPort} → 127.0.0.1:${listenPort}`);
      expect(m?.payload).toMatchObject({ mode: "plain", localAddress: "127.0.0.1", localPort: listenPort, remotePort: client.localPort });
    } finally {
      client.socket.destroy();
      await sub.endAsync();
    }
  });
});

describe("mqtt events: MQTT 5 properties, batching, redeploy", () => {
  let mosquitto: Mosquitto;
  beforeAll(async () => {
    if (mosquittoBin.skip) return;
    await helper.startServer();
    mosquitto = await startMosquitto(mosquittoBin.path as string);
  });
  beforeEach((ctx) => ctx.skip(mosquittoBin.skip, mosquittoBin.reason));
  afterEach(async () => {
    if (!mosquittoBin.skip) await helper.unload();
  });
  afterAll(async () => {
    if (mosquittoBin.skip) return;
    await helper.stopServer();
    await mosquitto?.dispose();
  });
  const external = (host: string) => ({ id: "br", type: "traffic broker", mode: "external", url: `mqtt://127.0.0.1:${mosquitto.port}`, protocolVersion: "5", agentHost: host, statusTopic: "" });

  it("sends content type, user properties and message expiry with MQTT 5", async () => {
    await helper.load(registerNodes, flowFor(external("p5"), { userProperties: "site=dc1\nsite=dc2\nrole=edge", expiry: "120" }));
    const sub = await connectAsync(`mqtt://127.0.0.1:${mosquitto.port}`, { protocolVersion: 5 });
    const packet = new Promise<{ properties?: Record<string, unknown> }>((resolve) => sub.on("message", (_t, _p, pk) => resolve(pk as { properties?: Record<string, unknown> })));
    await sub.subscribeAsync("traffic/agent-a/#", { qos: 1 });
    await new Promise((r) => setTimeout(r, 200));
    helper.getNode("ev")?.receive({ payload: flowEvent(1, "client"), userProperties: { flow: "f1" } });
    const props = (await packet).properties ?? {};
    expect(props["contentType"]).toBe("application/json");
    expect(props["userProperties"]).toEqual({ site: ["dc1", "dc2"], role: "edge", flow: "f1" });
    expect(props["messageExpiryInterval"]).toBeGreaterThan(100);
    await sub.endAsync();
  });

  it("batches N events per topic into one JSON array message", async () => {
    await helper.load(registerNodes, flowFor(external("batch"), { batchSize: 50, batchMs: 200 }));
    const sub = await connectAsync(`mqtt://127.0.0.1:${mosquitto.port}`, { protocolVersion: 5 });
    const arrays: unknown[][] = [];
    sub.on("message", (_t, p) => arrays.push(JSON.parse(p.toString()) as unknown[]));
    await sub.subscribeAsync("traffic/agent-a/flow-open/server", { qos: 1 });
    await new Promise((r) => setTimeout(r, 200));
    const node = helper.getNode("ev");
    const sent = Array.from({ length: 120 }, (_, i) => flowEvent(i, "server"));
    for (const e of sent) node?.receive({ payload: e });
    await until(() => arrays.flat().length === 120, "120 events in arrays", 10_000);
    // 50 + 50 by count, the last 20 by time.
    expect(arrays.map((a) => a.length)).toEqual([50, 50, 20]);
    for (const e of arrays.flat()) assertValidEvent(e);
    expect(arrays.flat().map((e) => (e as TrafficEvent).id)).toEqual(sent.map((e) => e.id));
    await sub.endAsync();
  });

  it("a redeploy keeps the embedded broker: subscribers stay connected and get every event; another port moves it; deleting the node frees the port", async () => {
    const port = await freePort();
    const embedded = { id: "br", type: "traffic broker", mode: "embedded", embeddedHost: "127.0.0.1", embeddedPort: port, agentHost: "re" };
    // setFlows deploys like the editor (full: every node stopped and started); the helper's typings lack it.
    const deploy = helper as unknown as { setFlows(flow: object[], type: "full"): Promise<void> };
    await helper.load(registerNodes, flowFor(embedded));
    const sub = await connectWhenUp(port, { clean: false, clientId: "redeploy-sub" });
    let dropped = 0;
    sub.on("close", () => dropped++);
    const got = collect(sub, "traffic/re/flow-open/client", 6);
    for (let i = 0; i < 3; i++) {
      // One event just before the deploy, one after: both reach the subscriber.
      helper.getNode("ev")?.receive({ payload: { ...flowEvent(2 * i, "client"), host: "re" } });
      await deploy.setFlows(flowFor({ ...embedded, name: `version ${i}` }), "full");
      helper.getNode("ev")?.receive({ payload: { ...flowEvent(2 * i + 1, "client"), host: "re" } });
    }
    const ids = (await got).map((m) => (m.payload as TrafficEvent).id).sort();
    expect(ids).toEqual(["ev-0", "ev-1", "ev-2", "ev-3", "ev-4", "ev-5"]);
    expect(dropped).toBe(0);
    await sub.endAsync(true);

    // Another port: the old broker closes, the new one serves.
    const moved = await freePort();
    await deploy.setFlows(flowFor({ ...embedded, embeddedPort: moved }), "full");
    const sub2 = await connectWhenUp(moved, {});
    await expect(connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 1000 })).rejects.toThrow(/ECONNREFUSED/);
    await sub2.endAsync(true);

    // Deleted: the port is free again at once.
    await deploy.setFlows([{ id: "out", type: "helper" }], "full");
    await expect(connectAsync(`mqtt://127.0.0.1:${moved}`, { reconnectPeriod: 0, connectTimeout: 1000 })).rejects.toThrow(/ECONNREFUSED/);
  });

  it("while the broker is unreachable it queues, drops the oldest beyond the bound, and says so in stats and lost events", async () => {
    const closedPort = await freePort();
    const unreachable = { id: "br", type: "traffic broker", mode: "external", url: `mqtt://127.0.0.1:${closedPort}`, protocolVersion: "5", agentHost: "down", reconnectPeriod: 200 };
    await helper.load(registerNodes, flowFor(unreachable, { maxQueued: 5, statsInterval: 1 }));
    const outputs: Array<{ payload: TrafficEvent }> = [];
    helper.getNode("out")?.on("input", (m) => outputs.push(m as { payload: TrafficEvent }));
    for (let i = 0; i < 8; i++) helper.getNode("ev")?.receive({ payload: flowEvent(i, "client") });
    await until(() => outputs.some((m) => m.payload.type === "lost"), "a lost event");
    for (const m of outputs) assertValidEvent(m.payload);
    const stats = outputs.find((m) => m.payload.type === "mqtt-stats")?.payload;
    expect(stats).toMatchObject({ connected: false, queued: 5, dropped: 3, sent: 0 });
    expect(outputs.find((m) => m.payload.type === "lost")?.payload).toMatchObject({ source: "publisher-queue", count: 3, host: "down" });
  });
});


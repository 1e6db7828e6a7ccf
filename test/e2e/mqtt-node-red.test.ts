import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeEvent, type FlowCloseEvent, type TrafficEvent } from "../../src/events";
import { assertValidEvent } from "../support/events";
import { freePort, startMosquitto, type Mosquitto } from "../support/mosquitto";
import { systemCommand } from "../support/system";

const require_ = createRequire(__filename);
const env = require_("../../scripts/node-red-env.js") as {
  prepareUserDir(dir: string, o: { port: number; flows: object[]; logLevel?: string }): void;
  startNodeRed(dir: string, o: { port: number; timeoutMs?: number }): Promise<{ child: ChildProcess; url: string; log(): string }>;
  stopNodeRed(child: ChildProcess): Promise<void>;
  root: string;
};

const mosquittoBin = systemCommand("mosquitto");

/** One "host": http in (POST /emit, a JSON array of events) → split → mqtt events. */
function agentFlow(host: string, brokerPort: number, spoolDir: string | null): object[] {
  return [
    { id: "t1", type: "tab", label: "agent" },
    { id: "br", type: "traffic broker", mode: "external", url: `mqtt://127.0.0.1:${brokerPort}`, protocolVersion: "5", agentHost: host, statusTopic: "traffic/{host}/status", reconnectPeriod: 200 },
    { id: "in1", type: "http in", z: "t1", url: "/emit", method: "post", x: 100, y: 100, wires: [["sp1", "res1"]] },
    { id: "res1", type: "http response", z: "t1", statusCode: "204", x: 300, y: 160, wires: [] },
    { id: "sp1", type: "split", z: "t1", splt: "\\n", spltType: "str", arraySplt: 1, arraySpltType: "len", stream: false, addname: "", x: 300, y: 100, wires: [["ev"]] },
    { id: "ev", type: "mqtt events", z: "t1", x: 500, y: 100, broker: "br", topic: "traffic/{host}/{type}/{side}", qos: "1", maxQueued: 100000, spool: spoolDir !== null, spoolDir: spoolDir ?? "", statsInterval: 0, wires: [[]] },
  ];
}

function events(host: string, n: number): FlowCloseEvent[] {
  return Array.from({ length: n }, (_, i) =>
    makeEvent<FlowCloseEvent>(
      { type: "flow-close", flowId: String(i + 1), protocol: "tcp", source: "ebpf", pid: null, comm: null, uid: null, ownerFrom: null, cgroupId: null, netns: null, partial: false, end: "normal", error: null, lastState: "FIN_WAIT2", established: true, bytesExact: true, bytesRetransmitted: 0, retransmits: 0, srttUs: null, rttMinUs: null, segmentsIn: 0, segmentsOut: 0, durationMs: null, handshakeMs: null, side: "server", family: 6, localIp: "2001:db8::1", localPort: 443, remoteIp: "2001:db8::2", remotePort: 30000 + i, bytesSent: i, bytesReceived: 2 * i },
      { host, id: `${host}-${i}` },
    ),
  );
}

async function post(url: string, body: unknown): Promise<void> {
  const res = await fetch(`${url}/emit`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  expect(res.status).toBe(204);
}

function receiver(client: MqttClient): { events: TrafficEvent[]; until(n: number, timeoutMs?: number): Promise<void> } {
  const got: TrafficEvent[] = [];
  client.on("message", (topic, payload) => {
    if (topic.endsWith("/status")) return;
    const event = JSON.parse(payload.toString()) as TrafficEvent;
    assertValidEvent(event);
    got.push(event);
  });
  return {
    events: got,
    async until(n, timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      while (got.length < n) {
        if (Date.now() > end) throw new Error(`received ${got.length} of ${n}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

describe.skipIf(mosquittoBin.skip)("mqtt events in a real Node-RED", () => {
  const dirs: string[] = [];
  const reds: ChildProcess[] = [];
  const clients: MqttClient[] = [];
  let broker: Mosquitto | null = null;

  beforeAll(() => {
    if (!existsSync(join(env.root, "dist", "nodes", "index.js")) || !existsSync(join(env.root, "traffic.html"))) {
      execFileSync(process.execPath, [join(env.root, "scripts", "build.js")], { stdio: "inherit" });
    }
  });
  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined);
    for (const r of reds) await env.stopNodeRed(r);
    await broker?.dispose();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function startAgent(userDir: string, flows: object[] | null): Promise<{ child: ChildProcess; url: string }> {
    const port = await freePort();
    if (flows !== null) env.prepareUserDir(userDir, { port, flows });
    else env.prepareUserDir(userDir, { port, flows: JSON.parse(readFileSync(join(userDir, "flows.json"), "utf8")) as object[] });
    const started = await env.startNodeRed(userDir, { port, timeoutMs: 90_000 });
    reds.push(started.child);
    return started;
  }

  it("events queued while the broker is down survive a Node-RED stop and start (spool) and then arrive", { timeout: 180_000 }, async () => {
    broker = await startMosquitto(mosquittoBin.path as string);
    await broker.stop();
    const userDir = mkdtempSync(join(tmpdir(), "traffic-red-spool-"));
    dirs.push(userDir);
    const spoolDir = join(userDir, "spool");
    const sent = events("spool-host", 500);
    const first = await startAgent(userDir, agentFlow("spool-host", broker.port, spoolDir));
    await post(first.url, sent);
    // The spool holds them once Node-RED has handled the request.
    const spoolFile = join(spoolDir, "ev.ndjson");
    const end = Date.now() + 10_000;
    while (!(existsSync(spoolFile) && readFileSync(spoolFile, "utf8").split("\n").length > 500) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    expect(readFileSync(spoolFile, "utf8").trim().split("\n")).toHaveLength(500);
    await env.stopNodeRed(first.child);

    await broker.restart();
    const sub = await connectAsync(`mqtt://127.0.0.1:${broker.port}`, { protocolVersion: 5 });
    clients.push(sub);
    const r = receiver(sub);
    await sub.subscribeAsync("traffic/spool-host/#", { qos: 1 });
    const second = await startAgent(userDir, null);
    await r.until(500);
    await new Promise((res) => setTimeout(res, 300));
    const ids = r.events.map((e) => e.id);
    expect(new Set(ids)).toEqual(new Set(sent.map((e) => e.id)));
    // Nothing was in flight when Node-RED stopped (no broker), so nothing comes twice, and order holds.
    expect(ids).toEqual(sent.map((e) => e.id));
    await env.stopNodeRed(second.child);
    await sub.endAsync();
  });

  it("scale-out: two Node-RED hosts publish to one broker; two MQTT 5 shared-subscription consumers get every event once", { timeout: 180_000 }, async () => {
    await broker?.dispose();
    broker = await startMosquitto(mosquittoBin.path as string);
    const consumers = await Promise.all([1, 2].map(() => connectAsync(`mqtt://127.0.0.1:${(broker as Mosquitto).port}`, { protocolVersion: 5 })));
    clients.push(...consumers);
    const receivers = consumers.map(receiver);
    for (const c of consumers) await c.subscribeAsync("$share/collectors/traffic/+/flow-close/#", { qos: 1 });
    const agents = await Promise.all(
      ["host-a", "host-b"].map(async (host) => {
        const userDir = mkdtempSync(join(tmpdir(), `traffic-red-${host}-`));
        dirs.push(userDir);
        return { host, red: await startAgent(userDir, agentFlow(host, (broker as Mosquitto).port, null)) };
      }),
    );
    const perHost = 1000;
    const sent = agents.flatMap((a) => events(a.host, perHost));
    await Promise.all(agents.map((a) => post(a.red.url, sent.filter((e) => e.host === a.host))));
    const total = () => receivers.reduce((n, r) => n + r.events.length, 0);
    const end = Date.now() + 30_000;
    while (total() < sent.length && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 500));
    const all = receivers.flatMap((r) => r.events.map((e) => e.id));
    expect(all.length).toBe(sent.length);
    expect(new Set(all)).toEqual(new Set(sent.map((e) => e.id)));
    for (const r of receivers) expect(r.events.length).toBeGreaterThan(0);
    for (const r of receivers) expect(new Set(r.events.map((e) => e.host))).toEqual(new Set(["host-a", "host-b"]));
    for (const a of agents) await env.stopNodeRed(a.red.child);
  });
});

import { execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import net from "node:net";
import { join } from "node:path";
import { connectAsync } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { assertValidEvent } from "../support/events";
import { answeringUpstream, freePort, waitForPort } from "../support/net";
import { poll } from "../support/wait";

const require_ = createRequire(__filename);
const env = require_("../../scripts/node-red-env.js") as {
  prepareUserDir(dir: string, o: { port: number; flows: object[] }): void;
  startNodeRed(dir: string, o: { port: number; timeoutMs?: number }): Promise<{ child: ChildProcess; url: string; log(): string }>;
  stopNodeRed(child: ChildProcess): Promise<void>;
  root: string;
};
const { demoFlows } = require_("../../scripts/demo-flow.js") as { demoFlows(): Array<Record<string, unknown>> };

describe("MQTT example flows, as the demo deploys them", () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  /** A full Node-RED running `flows` from a temporary user dir; both go when the block ends. */
  async function startRed(flows: Array<Record<string, unknown>>): Promise<Awaited<ReturnType<typeof env.startNodeRed>>> {
    const userDir = mkdtempSync(join(tmpdir(), "traffic-red-examples-"));
    cleanup.push(() => rmSync(userDir, { recursive: true, force: true }));
    const port = await freePort();
    env.prepareUserDir(userDir, { port, flows });
    const red = await env.startNodeRed(userDir, { port, timeoutMs: 90_000 });
    cleanup.push(() => env.stopNodeRed(red.child));
    return red;
  }

  /**
   * One example alone (its nodes' ids start with `idPrefix`) in a full Node-RED, with its
   * embedded broker and listener moved to free ports and its forward nodes to
   * `servicePort`; `received` collects what its broker publishes on `topics`.
   */
  async function startServiceExample(idPrefix: string, tabId: string, servicePort: number, topics: string[]) {
    if (!existsSync(join(env.root, "dist", "nodes", "index.js"))) execFileSync(process.execPath, [join(env.root, "scripts", "build.js")], { stdio: "inherit" });
    const mqttPort = await freePort();
    const listenPort = await freePort();
    const flows = demoFlows()
      .filter((n) => String(n["id"]).startsWith(idPrefix) || (n["type"] === "tab" && n["id"] === tabId))
      .map((n) => (n["type"] === "traffic broker" ? { ...n, embeddedPort: mqttPort } : n["type"] === "transparent in" ? { ...n, port: listenPort } : n["type"] === "forward" ? { ...n, port: String(servicePort) } : n));
    expect(flows.filter((n) => n["type"] === "tab")).toHaveLength(1);
    const red = await startRed(flows);
    for (const p of [mqttPort, listenPort]) await waitForPort(p, "127.0.0.1", 20_000);
    const sub = await connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { reconnectPeriod: 200 });
    cleanup.push(() => sub.endAsync(true).then(() => undefined));
    const received: Array<{ topic: string; event: Record<string, unknown> }> = [];
    sub.on("message", (topic, payload) => received.push({ topic, event: JSON.parse(payload.toString()) as Record<string, unknown> }));
    await sub.subscribeAsync(topics, { qos: 1 });
    return { red, listenPort, received };
  }

  it("the embedded-broker example publishes schema-valid events and its agent status; the mqtt in example subscribes", { timeout: 120_000 }, async () => {
    if (!existsSync(join(env.root, "dist", "nodes", "index.js"))) execFileSync(process.execPath, [join(env.root, "scripts", "build.js")], { stdio: "inherit" });
    // The examples use 1883; this machine may have a broker there, so move both to a free port.
    const mqttPort = await freePort();
    const flows = demoFlows()
      .filter((n) => String(n["id"]).startsWith("e7a1c0de") || (n["type"] === "tab" && String(n["id"]).startsWith("demo-mqtt-events")))
      .map((n) => (n["type"] === "traffic broker" ? { ...n, embeddedPort: mqttPort } : n["type"] === "mqtt-broker" ? { ...n, port: String(mqttPort) } : n));
    expect(flows.filter((n) => n["type"] === "tab")).toHaveLength(2);
    const red = await startRed(flows);

    const sub = await connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { reconnectPeriod: 200 });
    cleanup.push(() => sub.endAsync(true).then(() => undefined));
    const got = new Map<string, unknown>();
    sub.on("message", (topic, payload) => got.set(topic.split("/").slice(2, 3).join("") || topic, JSON.parse(payload.toString())));
    await sub.subscribeAsync("traffic/#", { qos: 1 });
    const end = Date.now() + 20_000;
    while (!(got.has("flow-open") && got.has("status")) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    const event = got.get("flow-open");
    assertValidEvent(event);
    expect(event).toMatchObject({ type: "flow-open", host: "demo" });
    assertValidEvent(got.get("status"));
    expect(got.get("status")).toMatchObject({ type: "agent-status", status: "online" });
    // The core mqtt in node of the second example connected to the embedded broker.
    await poll(() => /mqtt-broker:local broker\] Connected to broker/.test(red.log()), 10_000, 50);
    expect(red.log()).toMatch(/mqtt-broker:local broker\] Connected to broker/);
    expect(red.log()).not.toMatch(/\[error\]/);
  });

  it("the connection-log and transparent in → classify examples publish schema-valid flow, connection and classification events", { timeout: 120_000 }, async () => {
    if (!existsSync(join(env.root, "dist", "nodes", "index.js"))) execFileSync(process.execPath, [join(env.root, "scripts", "build.js")], { stdio: "inherit" });
    // Each example has its own embedded broker (1884, 1885) and the listener 15080: moved to free ports.
    const logPort = await freePort();
    const connPort = await freePort();
    const listenPort = await freePort();
    const flows = demoFlows()
      .filter((n) => /^(f10e0c10|7c1a55e0)/.test(String(n["id"])) || (n["type"] === "tab" && /^demo-(flow-source-connection-log|transparent-in-classify-mqtt)-json$/.test(String(n["id"]))))
      .map((n) => {
        if (n["type"] === "traffic broker") return { ...n, embeddedPort: String(n["id"]).startsWith("f10e0c10") ? logPort : connPort };
        if (n["type"] === "transparent in") return { ...n, port: listenPort };
        return n;
      });
    expect(flows.filter((n) => n["type"] === "tab")).toHaveLength(2);
    const red = await startRed(flows);

    const received: Array<{ topic: string; event: { type: string } & Record<string, unknown> }> = [];
    // Node-RED is up; its embedded brokers and the listener start listening moments later.
    for (const p of [logPort, connPort, listenPort]) await waitForPort(p, "127.0.0.1", 20_000);
    for (const mqttPort of [logPort, connPort]) {
      const sub = await connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { reconnectPeriod: 200 });
      cleanup.push(() => sub.endAsync(true).then(() => undefined));
      sub.on("message", (topic, payload) => received.push({ topic, event: JSON.parse(payload.toString()) as { type: string } }));
      await sub.subscribeAsync("traffic/#", { qos: 1 });
    }
    const client = net.connect(listenPort, "127.0.0.1", () => client.write("GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"));
    client.on("error", () => {});
    client.resume();
    const localPort = await new Promise<number>((r) => client.once("connect", () => r(client.localPort!)));
    const has = (type: string, pred: (e: Record<string, unknown>) => boolean = () => true): boolean => received.some((m) => m.event.type === type && pred(m.event));
    const end = Date.now() + 20_000;
    const mine = (e: Record<string, unknown>): boolean => e["remotePort"] === localPort;
    while (!(has("connection-accepted", mine) && has("classification", mine)) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    client.destroy();
    // The host-wide log reports the client socket's close (eBPF as root, sock_diag otherwise).
    // It sees every process on the host: another one may use the same ephemeral port towards
    // some other server, so the close is the one of this local port to the listener.
    const myClose = (e: Record<string, unknown>): boolean => e["localPort"] === localPort && e["remotePort"] === listenPort;
    while (!has("flow-close", myClose) && Date.now() < end + 10_000) await new Promise((r) => setTimeout(r, 50));
    for (const m of received) assertValidEvent(m.event);
    const accepted = received.find((m) => m.event.type === "connection-accepted" && mine(m.event));
    expect(accepted?.event).toMatchObject({ mode: "plain", localPort: listenPort, remotePort: localPort });
    expect(accepted?.topic).toMatch(/^traffic\/[^/]+\/connection-accepted\/none$/);
    const classified = received.find((m) => m.event.type === "classification" && mine(m.event));
    expect(classified?.event).toMatchObject({ protocol: "http1", rule: "web", remotePort: localPort, fields: { host: "example.test" } });
    expect(classified?.topic).toMatch(/^traffic\/[^/]+\/classification\/http1$/);
    const close = received.find((m) => m.event.type === "flow-close" && myClose(m.event));
    expect(close?.event).toMatchObject({ side: "client", remotePort: listenPort, pid: process.pid, bytesSent: 38 });
    expect(close?.topic).toMatch(/^traffic\/[^/]+\/flow-close\/client$/);
    expect(red.log()).not.toMatch(/\[error\]/);
  });

  it("the limit example resets a client over its limit and publishes one schema-valid limit event per burst", { timeout: 120_000 }, async () => {
    const service = net.createServer((s) => s.on("error", () => undefined).resume());
    await new Promise<void>((r) => service.listen(0, "127.0.0.1", r));
    cleanup.push(() => void service.close());
    // The example's broker (1886) and listener (15082) moved to free ports, its service (8080) to the one here.
    const { red, listenPort, received } = await startServiceExample("11a17000", "demo-limit-json", (service.address() as net.AddressInfo).port, ["traffic/+/limit"]);
    // 30 connections at once from one client: the burst of 10 passes, the rest are reset.
    const outcomes = await Promise.all(
      Array.from({ length: 30 }, () =>
        new Promise<string>((resolve) => {
          const c = net.connect({ port: listenPort, host: "127.0.0.1", localAddress: "127.0.0.9" });
          const timer = setTimeout(() => {
            c.destroy();
            resolve("open");
          }, 1500);
          c.on("error", (e: NodeJS.ErrnoException) => {
            clearTimeout(timer);
            resolve(e.code ?? "error");
          });
          c.on("close", () => {
            clearTimeout(timer);
            resolve("closed");
          });
        }),
      ),
    );
    expect(outcomes.filter((o) => o === "ECONNRESET").length).toBeGreaterThanOrEqual(15);
    const end = Date.now() + 10_000;
    while (!received.some((m) => m.event["phase"] === "end") && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    for (const m of received) assertValidEvent(m.event);
    expect(received.map((m) => m.event["phase"])).toEqual(["start", "end"]);
    expect(received[0]!.topic).toMatch(/^traffic\/[^/]+\/limit$/);
    expect(received[0]!.event).toMatchObject({ type: "limit", limiter: "per client", key: "127.0.0.9", reason: "rate", action: "reject-rst" });
    expect(red.log()).not.toMatch(/\[error\]/);
  });

  it("the limit-and-shadow example reports what the new policy would deny while dropping nothing, and limits each source on its own", { timeout: 120_000 }, async () => {
    // The service answers "UP": a connection that got it went through the whole flow.
    const service = await answeringUpstream();
    cleanup.push(() => void service.server.close());
    // The example's broker (1887) and listener (15083) moved to free ports, its service (8080) to the one here.
    const { red, listenPort, received } = await startServiceExample("15ad0e00", "demo-limit-and-shadow-json", service.port, ["traffic/+/policy-verdict", "traffic/+/limit"]);

    /** One client connection from `from`: "UP" when the service answered, else how it ended. */
    const visit = (from: string): Promise<string> =>
      new Promise((resolve) => {
        const chunks: Buffer[] = [];
        const c = net.connect({ port: listenPort, host: "127.0.0.1", localAddress: from }, () => c.write("hello"));
        const timer = setTimeout(() => c.destroy(), 3000);
        c.on("data", (d: Buffer) => chunks.push(d));
        c.on("error", (e: NodeJS.ErrnoException) => chunks.push(Buffer.from(`!${e.code ?? "error"}`)));
        c.on("close", () => {
          clearTimeout(timer);
          resolve(Buffer.concat(chunks).toString() || "closed");
        });
      });
    const verdicts = (): Array<Record<string, unknown>> => received.filter((m) => m.event["type"] === "policy-verdict").map((m) => m.event);

    // Shadow: a source in the range the new policy retires and one it keeps, three
    // connections each, within the limit. Every one reaches the service.
    const retired = "127.0.0.200";
    const kept = "127.0.0.20";
    const shadowOutcomes: string[] = [];
    for (let i = 0; i < 3; i++) shadowOutcomes.push(await visit(retired), await visit(kept));
    expect(shadowOutcomes).toEqual(Array(6).fill("UP"));
    expect(service.count()).toBe(6);
    await poll(() => verdicts().length >= 3, 10_000, 50);
    expect(verdicts().map((v) => [v["mode"], v["verdict"], v["nodeName"], v["rule"], v["clientIp"]])).toEqual(Array(3).fill(["shadow", "deny", "new policy", "retired range", retired]));

    // Limits per source: 30 connections at once from one source; the burst of 10 passes,
    // the rest are reset. Another source at the same moment loses none.
    const flood = "127.0.0.30";
    const quiet = "127.0.0.31";
    const [flooded, calm] = await Promise.all([
      Promise.all(Array.from({ length: 30 }, () => visit(flood))),
      Promise.all(Array.from({ length: 5 }, () => visit(quiet))),
    ]);
    expect(calm).toEqual(Array(5).fill("UP"));
    expect(flooded.filter((o) => o === "UP").length).toBeGreaterThanOrEqual(10);
    expect(flooded.filter((o) => o === "!ECONNRESET").length).toBeGreaterThanOrEqual(15);
    expect(flooded.every((o) => o === "UP" || o === "!ECONNRESET")).toBe(true);
    await poll(() => received.some((m) => m.event["type"] === "limit" && m.event["phase"] === "end"), 10_000, 50);
    const limits = received.filter((m) => m.event["type"] === "limit").map((m) => m.event);
    expect(limits.map((e) => [e["phase"], e["limiter"], e["key"], e["reason"], e["action"]])).toEqual([
      ["start", "per source", flood, "rate", "reject-rst"],
      ["end", "per source", flood, "rate", "reject-rst"],
    ]);
    // Neither the loopback sources nor the flood gave the enforced policy anything to deny.
    expect(verdicts().filter((v) => v["mode"] !== "shadow")).toEqual([]);
    for (const m of received) assertValidEvent(m.event);
    expect(red.log()).not.toMatch(/\[error\]/);
  });
});

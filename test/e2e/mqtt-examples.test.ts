import { execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectAsync } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { assertValidEvent } from "../support/events";
import { freePort } from "../support/mosquitto";

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

  it("the embedded-broker example publishes schema-valid events and its agent status; the mqtt in example subscribes", { timeout: 120_000 }, async () => {
    if (!existsSync(join(env.root, "dist", "nodes", "index.js"))) execFileSync(process.execPath, [join(env.root, "scripts", "build.js")], { stdio: "inherit" });
    // The examples use 1883; this machine may have a broker there, so move both to a free port.
    const mqttPort = await freePort();
    const flows = demoFlows()
      .filter((n) => String(n["id"]).startsWith("e7a1c0de") || (n["type"] === "tab" && String(n["label"]).startsWith("mqtt-events")))
      .map((n) => (n["type"] === "traffic broker" ? { ...n, embeddedPort: mqttPort } : n["type"] === "mqtt-broker" ? { ...n, port: String(mqttPort) } : n));
    expect(flows.filter((n) => n["type"] === "tab")).toHaveLength(2);
    const userDir = mkdtempSync(join(tmpdir(), "traffic-red-examples-"));
    cleanup.push(() => rmSync(userDir, { recursive: true, force: true }));
    const port = await freePort();
    env.prepareUserDir(userDir, { port, flows });
    const red = await env.startNodeRed(userDir, { port, timeoutMs: 90_000 });
    cleanup.push(() => env.stopNodeRed(red.child));

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
    const until = Date.now() + 10_000;
    while (!/mqtt-broker:local broker\] Connected to broker/.test(red.log()) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(red.log()).toMatch(/mqtt-broker:local broker\] Connected to broker/);
    expect(red.log()).not.toMatch(/\[error\]/);
  });
});

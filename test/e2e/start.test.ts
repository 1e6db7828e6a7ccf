import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import { createServer, type Server } from "node:net";
import path from "node:path";
import { connectAsync } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/net";
import { until } from "../support/wait";


const root = path.resolve(__dirname, "..", "..");

/** `npm start` (scripts/start.js) with its editor on a free port, until it says it is ready. */
function startDemo(env: Record<string, string>): { readonly output: string; port: number; ready: Promise<void>; stop(): Promise<void> } {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-start-"));
  let child: ChildProcess | undefined;
  const state = {
    output: "",
    port: 0,
    ready: Promise.resolve(),
    async stop(): Promise<void> {
      if (child && child.exitCode === null) {
        const exited = new Promise((r) => child!.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      fs.rmSync(userDir, { recursive: true, force: true });
    },
  };
  state.ready = (async () => {
    state.port = await freePort();
    child = spawn(process.execPath, [path.join(root, "scripts", "start.js")], {
      env: { ...process.env, PORT: String(state.port), TRAFFIC_USER_DIR: userDir, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (c) => (state.output += c.toString()));
    child.stderr!.on("data", (c) => (state.output += c.toString()));
    await until(() => state.output.includes("Stop with Ctrl-C") || child!.exitCode !== null, "start-up", 90_000);
    if (child.exitCode !== null) throw new Error(`npm start exited:\n${state.output}`);
  })();
  return state;
}

/** The main demo broker's line of the start-up text: its port, and what it says. */
function mqttLine(output: string): { port: number; line: string } {
  const line = output.split("\n").find((l) => l.startsWith("MQTT:") && l.includes("(embedded broker,"));
  const port = Number(/ -p (\d+) /.exec(line ?? "")?.[1]);
  if (!line || !Number.isInteger(port)) throw new Error(`no MQTT line for the demo broker in:\n${output}`);
  return { port, line };
}

/** The retained agent status the demo's embedded broker holds: proof that it is the demo's. */
async function agentStatusOn(port: number): Promise<Record<string, unknown>> {
  const client = await connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000 });
  try {
    const status = new Promise<Record<string, unknown>>((resolve) => client.on("message", (_t, p) => resolve(JSON.parse(p.toString()) as Record<string, unknown>)));
    await client.subscribeAsync("traffic/+/status");
    return await status;
  } finally {
    await client.endAsync();
  }
}

describe("npm start: Node-RED with the package and the demo flow", () => {
  let demo: ReturnType<typeof startDemo>;
  let output = "";
  let port = 0;
  let mqttPort = 0;

  beforeAll(async () => {
    mqttPort = await freePort();
    demo = startDemo({ TRAFFIC_MQTT_PORT: String(mqttPort) });
    await demo.ready;
    output = demo.output;
    port = demo.port;
  }, 120_000);

  afterAll(async () => {
    await demo?.stop();
  });

  it("runs the demo's broker on the port it was given, and says so", async () => {
    expect(mqttLine(output).port).toBe(mqttPort);
    expect(mqttLine(output).line).not.toMatch(/in use/);
    await expect(agentStatusOn(mqttPort)).resolves.toMatchObject({ type: "agent-status", status: "online" });
  });

  it("logs the editor URL and a privileged-feature report", () => {
    expect(output).toContain(`Editor:  http://127.0.0.1:${port}/`);
    expect(output).toMatch(/Privileged features on this machine:/);
    expect(output).toMatch(/(yes|no ) {2}TPROXY capture/);
  });

  it("loads the package's node types into the runtime", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/nodes`, { headers: { Accept: "application/json" } });
    const sets = (await res.json()) as Array<{ module: string; types: string[]; err?: string }>;
    const ours = sets.filter((s) => s.module === "@traffic-policy/node-red-traffic-policy");
    expect(ours.flatMap((s) => s.types)).toEqual(expect.arrayContaining(["real ip", "ip filter"]));
    expect(ours.every((s) => s.err === undefined)).toBe(true);
  });

  it("serves the editor's shared CIDR check and the icons", async () => {
    const js = await fetch(`http://127.0.0.1:${port}/resources/@traffic-policy/node-red-traffic-policy/cidr-check.js`);
    expect(js.status).toBe(200);
    expect(await js.text()).toContain("listError");
    const icon = await fetch(`http://127.0.0.1:${port}/icons/@traffic-policy/node-red-traffic-policy/real-ip.svg`);
    expect(icon.status).toBe(200);
  });

  it("runs the demo: loopback allowed, a documentation address via a trusted proxy denied", async () => {
    const ok = await fetch(`http://127.0.0.1:${port}/whoami`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ verdict: "allowed", clientIp: "127.0.0.1", source: "socket" });
    const denied = await fetch(`http://127.0.0.1:${port}/whoami`, { headers: { "X-Forwarded-For": "203.0.113.7" } });
    expect(denied.status).toBe(403);
    expect(await denied.json()).toMatchObject({ verdict: "denied", clientIp: "203.0.113.7", rule: "documentation nets" });
  });

  it("offers the examples in Import → Examples", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/library/examples/flows/@traffic-policy/node-red-traffic-policy/real-ip-gate`);
    expect(res.status).toBe(200);
    const flow = (await res.json()) as Array<{ type: string }>;
    expect(flow.map((n) => n.type)).toEqual(expect.arrayContaining(["real ip", "ip filter", "http in"]));
  });
});

describe("npm start when the demo broker's port is taken (a broker already on 1883)", () => {
  let demo: ReturnType<typeof startDemo>;
  let taken: Server;
  let takenPort = 0;

  beforeAll(async () => {
    taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    takenPort = (taken.address() as { port: number }).port;
    demo = startDemo({ TRAFFIC_MQTT_PORT: String(takenPort) });
    await demo.ready;
  }, 120_000);

  afterAll(async () => {
    await demo?.stop();
    await new Promise((r) => taken?.close(r));
  });

  it("moves the embedded broker to a free port and prints the port it really took", async () => {
    const { port, line } = mqttLine(demo.output);
    expect(port).not.toBe(takenPort);
    expect(line).toContain(`${takenPort} was in use`);
    await expect(agentStatusOn(port)).resolves.toMatchObject({ type: "agent-status", status: "online" });
  });

  it("still runs the rest of the demo", async () => {
    const ok = await fetch(`http://127.0.0.1:${demo.port}/whoami`);
    expect(ok.status).toBe(200);
  });
});

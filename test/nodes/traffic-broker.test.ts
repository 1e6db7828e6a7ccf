import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import registerNodes from "../../nodes/index";
import { makeEvent, type LostEvent, type TrafficEvent } from "../../src/events";
import { assertValidEvent } from "../support/events";
import { freePort, startMosquitto, type Mosquitto } from "../support/mosquitto";
import { systemCommand } from "../support/system";
import { until } from "../support/wait";

const require_ = createRequire(__filename);
const helper = require_("node-red-node-test-helper") as {
  init(path: string): void;
  load(nodes: unknown, flow: object[], credentials?: object): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): { receive(msg: object): void; on(ev: string, fn: (x: { args: unknown[] }) => void): void } | null;
  startServer(): Promise<void>;
  stopServer(): Promise<void>;
};
helper.init(require_.resolve("node-red"));
const tlsNode = require_(require_.resolve("@node-red/nodes/core/network/05-tls.js", { paths: [require_.resolve("node-red")] })) as unknown;

const mosquittoBin = systemCommand("mosquitto");
const passwd = systemCommand("mosquitto_passwd");
const openssl = systemCommand("openssl");
const skip = mosquittoBin.skip || passwd.skip || openssl.skip;

describe.skipIf(skip)("traffic broker: mqtts, ws, credentials", () => {
  let broker: Mosquitto;
  let dir: string;
  let tlsPort = 0;
  let wsPort = 0;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "traffic-broker-tls-"));
    // A CA and a server certificate for 127.0.0.1, made for this run.
    const run = (args: string[]) => execFileSync(openssl.path as string, args, { cwd: dir, stdio: "ignore" });
    run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=traffic test CA", "-keyout", "ca.key", "-out", "ca.crt"]);
    run(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"]);
    require_("node:fs").writeFileSync(join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1\n");
    run(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt"]);
    execFileSync(passwd.path as string, ["-b", "-c", join(dir, "passwd"), "agent", "s3cret"]);
    tlsPort = await freePort();
    wsPort = await freePort();
    broker = await startMosquitto(mosquittoBin.path as string, undefined, [
      `password_file ${join(dir, "passwd")}`,
      `listener ${tlsPort} 127.0.0.1`,
      `cafile ${join(dir, "ca.crt")}`,
      `certfile ${join(dir, "server.crt")}`,
      `keyfile ${join(dir, "server.key")}`,
      `listener ${wsPort} 127.0.0.1`,
      "protocol websockets",
    ]);
    await helper.startServer();
  });
  afterEach(async () => {
    await helper.unload();
  });
  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined);
    await helper.stopServer();
    await broker?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  // allow_anonymous true is global in the helper's config; the password file still
  // rejects a wrong password for a named user.
  // `where`: a URL (a config saved before the host and port fields), or the fields.
  const flow = (where: string | { broker: string; port?: number; tls?: boolean }) => [
    { id: "tls", type: "tls-config", cert: "", key: "", ca: join(dir, "ca.crt"), verifyservercert: true, servername: "" },
    {
      id: "br",
      type: "traffic broker",
      mode: "external",
      ...(typeof where === "string" ? { url: where, tls: where.startsWith("mqtts") ? "tls" : "" } : { broker: where.broker, port: where.port ?? "", tls: where.tls ? "tls" : "" }),
      protocolVersion: "5",
      agentHost: "secure",
      statusTopic: "traffic/{host}/status",
    },
    { id: "ev", type: "mqtt events", broker: "br", topic: "traffic/{host}/{type}", qos: "1", statsInterval: 0, wires: [[]] },
  ];

  async function subscriber(): Promise<{ got: TrafficEvent[] }> {
    const sub = await connectAsync(`mqtt://127.0.0.1:${broker.port}`, { username: "agent", password: "s3cret", protocolVersion: 5 });
    clients.push(sub);
    const got: TrafficEvent[] = [];
    sub.on("message", (t, p) => {
      if (t === "traffic/secure/lost") got.push(JSON.parse(p.toString()) as TrafficEvent);
    });
    await sub.subscribeAsync("traffic/secure/lost", { qos: 1 });
    return { got };
  }

  const WAYS = {
    "an mqtts URL (saved config)": () => `mqtts://127.0.0.1:${tlsPort}`,
    "a ws URL (saved config)": () => `ws://127.0.0.1:${wsPort}`,
    "host and port fields with a TLS config (mqtts)": () => ({ broker: "127.0.0.1", port: tlsPort, tls: true }),
    "a ws URL in the host field, as the core mqtt-broker takes": () => ({ broker: `ws://127.0.0.1:${wsPort}` }),
  };
  for (const [way, where] of Object.entries(WAYS)) {
    it(`publishes to ${way} with Node-RED credentials`, async () => {
      const { got } = await subscriber();
      await helper.load([registerNodes, tlsNode], flow(where()), { br: { user: "agent", password: "s3cret" } });
      const event = makeEvent<LostEvent>({ type: "lost", source: "input", count: 1 }, { host: "secure" });
      helper.getNode("ev")?.receive({ payload: event });
      await until(() => got.length === 1, "the published event", 10_000);
      assertValidEvent(got[0]);
      expect(got[0]?.id).toBe(event.id);
    });
  }

  it("says 'not authorized' for a wrong password, and 'TLS cert rejected' for an unknown CA", async () => {
    const statuses: string[] = [];
    await helper.load([registerNodes, tlsNode], flow(`ws://127.0.0.1:${wsPort}`), { br: { user: "agent", password: "wrong" } });
    helper.getNode("ev")?.on("call:status", (c) => statuses.push(String((c.args[0] as { text?: string }).text)));
    await until(() => statuses.includes("not authorized"), "status not authorized", 10_000).catch(() => {
      throw new Error(`statuses: ${statuses.join(", ")}`);
    });
    await helper.unload();

    const statuses2: string[] = [];
    const noCa = flow(`mqtts://127.0.0.1:${tlsPort}`).map((n) => (n.id === "tls" ? { ...n, ca: "" } : n));
    await helper.load([registerNodes, tlsNode], noCa, { br: { user: "agent", password: "s3cret" } });
    helper.getNode("ev")?.on("call:status", (c) => statuses2.push(String((c.args[0] as { text?: string }).text)));
    await until(() => statuses2.includes("TLS cert rejected"), "status TLS cert rejected", 10_000).catch(() => {
      throw new Error(`statuses: ${statuses2.join(", ")}`);
    });
  });
});

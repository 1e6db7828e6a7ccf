import net from "node:net";
import type { Node } from "node-red";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import registerClassify from "../../nodes/classify/classify";
import registerIpFilter from "../../nodes/ip-filter/ip-filter";
import registerBroker, { type TrafficBrokerNode } from "../../nodes/traffic-broker/traffic-broker";
import type { BrokerState } from "../../src/mqtt/broker";
import registerTransparentIn from "../../nodes/transparent-in/transparent-in";
import { editorPerSuite } from "../support/browser";
import { vector } from "../support/classify-vectors";
import { freePort } from "../support/net";
import { collect, helper, onCall } from "../support/node-red-helper";
import { systemCommand } from "../support/system";
import { until } from "../support/wait";

const chromiumPath = systemCommand("chromium");

type Config = Record<string, unknown>;

/** The defaults a new node gets in the editor: each field's `value` as the browser holds it. */
async function editorDefaults(page: import("playwright-core").Page, types: string[]): Promise<Record<string, Config>> {
  return page.evaluate((list) => {
    type Def = { defaults: Record<string, { value?: unknown }> };
    const red = (window as unknown as { RED: { nodes: { getType(t: string): Def } } }).RED;
    const out: Record<string, Record<string, unknown>> = {};
    for (const type of list) {
      const fields: Record<string, unknown> = {};
      for (const [key, field] of Object.entries(red.nodes.getType(type).defaults)) if ("value" in field) fields[key] = field.value;
      out[type] = fields;
    }
    return out;
  }, types);
}

/** Whether a TCP connection to host:port is accepted. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
}

/** For each message (by topic), the output a node of `type` with `config` sent it to. */
async function routes(register: Parameters<typeof helper.load>[0], type: string, config: Config, msgs: Config[]): Promise<Record<string, number>> {
  const wires = [["o0"], ["o1"], ["o2"]];
  await helper.load(register, [{ id: "n", type, wires, ...config }, ...wires.map(([id]) => ({ id, type: "helper" }))]);
  const seen = collect({ o0: helper.getNode("o0"), o1: helper.getNode("o1"), o2: helper.getNode("o2") });
  const node = helper.getNode("n") as Node & { receive(m: Config): void };
  for (const m of msgs) node.receive(m);
  await until(() => Object.values(seen).reduce((n, list) => n + list.length, 0) === msgs.length, "every message out", 5000);
  const out: Record<string, number> = {};
  for (const [port, list] of Object.values(seen).entries()) for (const m of list) out[String(m["topic"])] = port;
  await helper.unload();
  return out;
}

describe.skipIf(chromiumPath.skip)("a node from {} runs as the editor's defaults showed it", () => {
  const editor = editorPerSuite(chromiumPath.path!, "transparent in");
  let defaults: Record<string, Config> = {};

  beforeAll(async () => {
    defaults = await editorDefaults(editor.page, ["classify", "transparent in", "traffic broker", "ip filter"]);
  });

  afterEach(async () => {
    await helper.unload();
  });

  it("ip filter: the same outputs for the same addresses", async () => {
    const addresses = ["10.1.2.3", "127.0.0.1", "192.0.2.7", "2001:db8::1"].map((ip) => ({ topic: ip, clientIp: ip }));
    const route = (config: Config) => routes(registerIpFilter, "ip filter", config, addresses);
    const fromEditor = await route(defaults["ip filter"]!);
    expect(fromEditor).toEqual({ "10.1.2.3": 0, "127.0.0.1": 0, "192.0.2.7": 1, "2001:db8::1": 1 });
    await expect(route({})).resolves.toEqual(fromEditor);
  });

  it("classify: the same outputs for the same first bytes", async () => {
    const inputs = ["openssl-s_client", "curl-http1"].map((name) => ({ topic: name, payload: vector(name).bytes }));
    const route = (config: Config) => routes(registerClassify, "classify", config, inputs);
    const fromEditor = await route(defaults["classify"]!);
    expect(fromEditor).toEqual({ "openssl-s_client": 0, "curl-http1": 1 });
    await expect(route({})).resolves.toEqual(fromEditor);
  });

  it("transparent in: the same listening family and status", async () => {
    /** Whether the listener takes IPv4 and IPv6 loopback connections, and its status text. */
    const listen = async (config: Config) => {
      const port = await freePort();
      await helper.load(registerTransparentIn, [{ id: "in", type: "transparent in", wires: [[]], ...config, port }]);
      let text = "";
      onCall(helper.getNode("in"), "status", (status) => {
        text = String((status as { text?: string }).text ?? "");
      });
      await until(() => text.includes(String(port)) || /error|cannot/i.test(text), "a listening status", 5000);
      const seen = { ipv4: await accepts("127.0.0.1", port), ipv6: await accepts("::1", port), status: text.replace(String(port), "PORT") };
      await helper.unload();
      return seen;
    };
    const fromEditor = await listen(defaults["transparent in"]!);
    expect(fromEditor).toMatchObject({ ipv4: true, ipv6: true });
    await expect(listen({})).resolves.toEqual(fromEditor);
  });

  it("traffic broker: the same broker mode and protocol", async () => {
    /** The first settled state a user sees, and the protocol the node speaks. */
    const connect = async (config: Config) => {
      const embeddedPort = await freePort();
      await helper.load(registerBroker, [{ id: "br", type: "traffic broker", ...config, embeddedPort }]);
      const broker = helper.getNode("br") as TrafficBrokerNode;
      const states: BrokerState[] = [];
      broker.register({ id: "user", brokerState: (s) => states.push(s) });
      await until(() => states.some((s) => s.state === "connected" || s.state === "error"), "a settled broker state", 10_000);
      const settled = states.find((s) => s.state === "connected" || s.state === "error")!;
      const seen = { state: settled.state, protocolVersion: broker.protocolVersion, embedded: await accepts("127.0.0.1", embeddedPort) };
      await new Promise<void>((resolve) => broker.deregister({ id: "user", brokerState: () => undefined }, resolve));
      await helper.unload();
      return seen;
    };
    const fromEditor = await connect(defaults["traffic broker"]!);
    expect(fromEditor).toEqual({ state: "connected", protocolVersion: 4, embedded: true });
    await expect(connect({})).resolves.toEqual(fromEditor);
  }, 30_000);
});

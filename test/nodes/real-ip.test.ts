import type { Node } from "node-red";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import registerRealIp from "../../nodes/real-ip/real-ip";
import { collect, helper, onCall } from "../support/node-red-helper";
import { until } from "../support/wait";

type Msg = Record<string, unknown>;

function flow(config: Record<string, unknown>) {
  return [
    { id: "rip", type: "real ip", name: "", wires: [["out"]], ...config },
    { id: "out", type: "helper" },
    { id: "catch", type: "helper" },
  ];
}

/** Sends `msg` into the node and returns what came out, or the error passed to done. */
async function run(msg: Msg): Promise<{ out: Msg[]; error: unknown; status: unknown[] }> {
  const node = helper.getNode("rip") as Node & { receive(m: Msg): void };
  const seen = collect({ out: helper.getNode("out") });
  let error: unknown;
  let finished = false;
  const statuses: unknown[] = [];
  onCall(node, "status", (s) => statuses.push(s));
  onCall(node, "error", (e) => {
    error = e;
    finished = true;
  });
  node.receive(msg);
  await until(() => finished || seen["out"]!.length > 0, "real ip output", 3000);
  await new Promise((r) => setTimeout(r, 300)); // let the throttled status land
  return { out: seen["out"]!, error, status: statuses };
}

describe("real ip node in a Node-RED runtime", () => {
  afterEach(async () => {
    await helper.unload();
  });

  it("resolves msg.req from http in, trusting the configured proxy", async () => {
    await helper.load(registerRealIp, flow({ trusted: "10.0.0.0/8", sources: "x-forwarded-for" }));
    const req = { headers: { "x-forwarded-for": "192.0.2.66, 203.0.113.9" }, socket: { remoteAddress: "10.1.1.1", remotePort: 4000 } };
    const { out } = await run({ req, payload: {} });
    expect(out[0]!["clientIp"]).toBe("203.0.113.9");
    expect(out[0]!["realIp"]).toMatchObject({ source: "x-forwarded-for", trustedHops: 1, untrustedHeaders: true, ignoredEntries: 1 });
  });

  it("ignores headers from an untrusted peer and shows a yellow status", async () => {
    await helper.load(registerRealIp, flow({ trusted: "loopback" }));
    const req = { headers: { "x-forwarded-for": "10.0.0.1" }, socket: { remoteAddress: "203.0.113.66" } };
    const { out, status } = await run({ req });
    expect(out[0]!["clientIp"]).toBe("203.0.113.66");
    expect(status).toContainEqual(expect.objectContaining({ fill: "yellow" }));
  });

  it("reads a connection message from the listener, with its PROXY header", async () => {
    await helper.load(registerRealIp, flow({ trusted: "127.0.0.1" }));
    const payload = {
      id: "c1",
      remoteAddress: "127.0.0.1",
      remotePort: 5000,
      proxy: { version: 2, command: "proxy", family: "tcp4", sourceAddress: "198.51.100.4", sourcePort: 6000, tlvs: [], length: 28 },
    };
    const { out } = await run({ _session: { type: "traffic", id: "c1" }, payload });
    expect(out[0]).toMatchObject({ clientIp: "198.51.100.4", realIp: { source: "proxy-protocol", port: 6000 } });
  });

  it("reads custom properties with mixed-case header names", async () => {
    await helper.load(registerRealIp, flow({ trusted: "loopback", input: "custom", peerProp: "conn.peer", headersProp: "conn.h", property: "who" }));
    const { out } = await run({ conn: { peer: { address: "::1", port: 9 }, h: { "X-Forwarded-For": "[2001:db8::5]:77" } } });
    expect(out[0]!["who"]).toBe("2001:db8::5");
  });

  it("sends a malformed trusted header to Catch with a typed error, and nothing on", async () => {
    await helper.load(registerRealIp, flow({ trusted: "loopback" }));
    const { out, error, status } = await run({ req: { headers: { "x-forwarded-for": "1231233" }, socket: { remoteAddress: "127.0.0.1" } } });
    expect(out).toHaveLength(0);
    expect(error).toMatchObject({ code: "ERR_XFF_SYNTAX" });
    expect(status).toContainEqual(expect.objectContaining({ fill: "red" }));
  });

  it("errors clearly when there is no peer", async () => {
    await helper.load(registerRealIp, flow({}));
    const { out, error } = await run({ payload: "hello" });
    expect(out).toHaveLength(0);
    expect(String((error as Error).message)).toMatch(/no socket peer/);
  });

  it("reports a bad configuration and passes nothing", async () => {
    await helper.load(registerRealIp, flow({ trusted: "10.0.0.1/8" }));
    const node = helper.getNode("rip");
    const { out, error } = await run({ req: { headers: {}, socket: { remoteAddress: "127.0.0.1" } } });
    expect(out).toHaveLength(0);
    expect(String((error as Error).message)).toMatch(/host bits/);
    expect(node).toBeDefined();
  });

  it("reads only the configured header and lists the others in msg.realIp.ignoredHeaders", async () => {
    await helper.load(registerRealIp, flow({ trusted: "loopback", header: "x-forwarded-for" }));
    const req = { headers: { forwarded: "for=10.0.0.1", "x-forwarded-for": "203.0.113.66" }, socket: { remoteAddress: "127.0.0.1" } };
    const { out } = await run({ req });
    expect(out[0]!["clientIp"]).toBe("203.0.113.66");
    expect((out[0]!["realIp"] as { ignoredHeaders: string[] }).ignoredHeaders).toEqual(["forwarded"]);
  });

  it("keeps a legacy multi-header source list working and warns once on deploy", async () => {
    await helper.load(registerRealIp, flow({ trusted: "loopback", header: "x-forwarded-for", sources: "proxy-protocol,forwarded,x-forwarded-for,x-real-ip" }));
    const warnings = () =>
      (helper.log() as unknown as { args: Array<[{ level: number; id?: string; msg?: unknown }]> }).args
        .map((a) => a[0])
        .filter((e) => e.id === "rip" && e.level === 30 && /severalHeaders|several forwarding headers/.test(String(e.msg)));
    expect(warnings()).toHaveLength(1);
    const req = { headers: { forwarded: "for=203.0.113.50", "x-forwarded-for": "192.0.2.66" }, socket: { remoteAddress: "127.0.0.1" } };
    const { out } = await run({ req });
    expect(out[0]!["clientIp"]).toBe("203.0.113.50");
    await run({ req });
    expect(warnings()).toHaveLength(1);
  });

  it("gives a typed error and a red status for a request whose socket is gone", async () => {
    await helper.load(registerRealIp, flow({ trusted: "loopback" }));
    const { out, error, status } = await run({ req: { headers: { "x-forwarded-for": "192.0.2.1" }, socket: {} } });
    expect(out).toHaveLength(0);
    expect(error).toMatchObject({ code: "ERR_BAD_ADDRESS", input: "socket peer" });
    expect(String((error as Error).message)).toMatch(/socketClosed|already closed/);
    expect(status).toContainEqual(expect.objectContaining({ fill: "red", text: expect.stringMatching(/socket peer/) }));
  });

  it("in the real-ip-gate example, a client's own Forwarded header does not pass the ip filter", async () => {
    const example = JSON.parse(readFileSync(join(__dirname, "../../examples/real-ip-gate.json"), "utf8")) as Array<Record<string, unknown>>;
    const config = example.find((n) => n["type"] === "real ip")!;
    const { z: _z, x: _x, y: _y, ...settings } = config;
    await helper.load(registerRealIp, flow({ ...settings, id: "rip", wires: [["out"]] }));
    const req = { headers: { forwarded: "for=10.0.0.1", "x-forwarded-for": "203.0.113.7" }, socket: { remoteAddress: "127.0.0.1" } };
    const { out } = await run({ req });
    expect(out[0]!["clientIp"]).toBe("203.0.113.7");
    const direct = await run({ req: { headers: { forwarded: "for=10.0.0.1", "x-real-ip": "10.0.0.1" }, socket: { remoteAddress: "127.0.0.1" } } });
    expect(direct.out[0]!["clientIp"]).toBe("127.0.0.1");
    expect((direct.out[0]!["realIp"] as { ignoredHeaders: string[] }).ignoredHeaders).toEqual(["forwarded", "x-real-ip"]);
  });
});

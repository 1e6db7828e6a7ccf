import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeProxyHeaderV2 } from "../../src/proxy-protocol/encode";
import { freePort, startProcess, stopProcess, waitForPort } from "../support/net";
import { systemCommand } from "../support/system";

const { prepareUserDir, startNodeRed, stopNodeRed } = require("../../scripts/node-red-env.js");

const haproxy = systemCommand("haproxy");

// Addresses on the loopback network (all of 127/8 is local on Linux): the client
// connects from CLIENT, HAProxy connects onwards from PROXY, the only trusted address.
const CLIENT = "127.0.0.77";
const PROXY = "127.0.0.2";

interface Ports {
  nodeRed: number;
  tcpIn: number;
  feXff: number;
  fePp2: number;
}

/** The shipped real-ip-gate example on this tab, served at /gate. */
function gateExample(tab: string): Array<Record<string, unknown>> {
  const nodes = JSON.parse(fs.readFileSync(path.join(__dirname, "../../examples/real-ip-gate.json"), "utf8")) as Array<Record<string, unknown>>;
  return nodes.filter((n) => n["type"] !== "tab").map((n) => ({ ...n, z: tab, ...(n["type"] === "http in" ? { url: "/gate" } : {}) }));
}

function flows(ports: Ports) {
  const tab = "e2e-tab";
  return [
    { id: tab, type: "tab", label: "e2e" },
    ...gateExample(tab),
    { id: "h-in", z: tab, type: "http in", url: "/whoami", method: "get", wires: [["h-rip"]] },
    {
      id: "h-rip",
      z: tab,
      type: "real ip",
      trusted: PROXY,
      input: "auto",
      property: "clientIp",
      wires: [["h-set"]],
    },
    {
      id: "h-set",
      z: tab,
      type: "change",
      rules: [{ t: "set", p: "payload", pt: "msg", to: "realIp", tot: "msg" }],
      wires: [["h-out"]],
    },
    { id: "h-out", z: tab, type: "http response", statusCode: "", headers: {}, wires: [] },
    { id: "h-catch", z: tab, type: "catch", scope: ["h-rip"], uncaught: false, wires: [["h-err"]] },
    {
      id: "h-err",
      z: tab,
      type: "change",
      rules: [
        { t: "set", p: "statusCode", pt: "msg", to: "400", tot: "num" },
        { t: "set", p: "payload", pt: "msg", to: "error", tot: "msg" },
      ],
      wires: [["h-out"]],
    },
    { id: "t-in", z: tab, type: "tcp in", server: "server", host: "127.0.0.1", port: String(ports.tcpIn), datamode: "stream", datatype: "buffer", newline: "", topic: "", base64: false, wires: [["t-rip"]] },
    {
      id: "t-rip",
      z: tab,
      type: "real ip",
      trusted: PROXY,
      sources: "proxy-protocol",
      input: "custom",
      peerProp: "ip",
      headersProp: "",
      proxyProp: "payload",
      property: "clientIp",
      wires: [["t-set"]],
    },
    {
      id: "t-set",
      z: tab,
      type: "change",
      rules: [{ t: "set", p: "payload", pt: "msg", to: "$string(realIp) & \"\\n\"", tot: "jsonata" }],
      wires: [["t-out"]],
    },
    { id: "t-out", z: tab, type: "tcp out", host: "", port: "", beserver: "reply", base64: false, end: true, wires: [] },
  ];
}

function haproxyConfig(ports: Ports): string {
  return `global
  maxconn 256
defaults
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend fe_xff
  mode http
  bind 127.0.0.1:${ports.feXff}
  option forwardfor
  default_backend be_nodered
backend be_nodered
  mode http
  source ${PROXY}
  server nr 127.0.0.1:${ports.nodeRed}
frontend fe_pp2
  mode tcp
  bind 127.0.0.1:${ports.fePp2}
  default_backend be_pp2
backend be_pp2
  mode tcp
  source ${PROXY}
  server pp 127.0.0.1:${ports.tcpIn} send-proxy-v2
`;
}

function get(port: number, headers: Record<string, string>, urlPath = "/whoami"): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: urlPath, localAddress: CLIENT, headers, agent: false }, (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Sends `data` over TCP from the client address and returns the one JSON line replied. */
function tcpRoundTrip(port: number, data: Buffer): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: "127.0.0.1", port, localAddress: CLIENT }, () => sock.write(data));
    let text = "";
    sock.on("data", (c) => {
      text += c.toString();
      if (text.includes("\n")) {
        sock.destroy();
        resolve(JSON.parse(text.slice(0, text.indexOf("\n"))));
      }
    });
    sock.on("error", reject);
    sock.setTimeout(10000, () => {
      sock.destroy();
      reject(new Error(`no reply; got ${JSON.stringify(text)}`));
    });
  });
}

describe.skipIf(haproxy.skip)("real client address behind a real HAProxy", () => {
  let dir = "";
  let ports: Ports;
  let red: { child: ChildProcess; url: string; log(): string } | undefined;
  let proxy: { child: ChildProcess; output(): string } | undefined;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-e2e-"));
    ports = { nodeRed: await freePort(), tcpIn: await freePort(), feXff: await freePort(), fePp2: await freePort() };
    prepareUserDir(path.join(dir, "nr"), { port: ports.nodeRed, flows: flows(ports) });
    red = await startNodeRed(path.join(dir, "nr"), { port: ports.nodeRed });
    const cfg = path.join(dir, "haproxy.cfg");
    fs.writeFileSync(cfg, haproxyConfig(ports));
    proxy = startProcess(haproxy.path!, ["-db", "-f", cfg]);
    await waitForPort(ports.feXff);
    await waitForPort(ports.fePp2);
  }, 90_000);

  afterAll(async () => {
    if (proxy) await stopProcess(proxy.child);
    if (red) await stopNodeRed(red.child);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("through HAProxy's X-Forwarded-For: the client's own address", async () => {
    const { status, body } = await get(ports.feXff, {});
    expect(status).toBe(200);
    expect(body).toMatchObject({ address: CLIENT, source: "x-forwarded-for", trustedHops: 1, untrustedHeaders: false });
    expect((body["chain"] as Array<{ address: string }>)[0]!.address).toBe(PROXY);
  });

  it("through HAProxy with a forged X-Forwarded-For: the forged entry is not believed", async () => {
    const { body } = await get(ports.feXff, { "X-Forwarded-For": "198.51.100.9" });
    expect(body).toMatchObject({ address: CLIENT, untrustedHeaders: true, ignoredEntries: 1 });
  });

  it("directly, with forged headers: the socket peer, headers ignored", async () => {
    const { body } = await get(ports.nodeRed, { "X-Forwarded-For": "198.51.100.9", "X-Real-IP": "198.51.100.10", Forwarded: "for=198.51.100.11" });
    expect(body).toMatchObject({ address: CLIENT, source: "socket", trustedHops: 0, untrustedHeaders: true });
  });

  it("through HAProxy with junk in X-Forwarded-For: the client's side is never judged", async () => {
    // HAProxy appends the client after the junk; the walk reaches the client and stops.
    const ok = await get(ports.feXff, { "X-Forwarded-For": "1231233" });
    expect(ok.body).toMatchObject({ address: CLIENT });
  });

  // HAProxy appends to X-Forwarded-For but passes a client's own Forwarded and X-Real-IP
  // through untouched: only the header the proxy sets may be read.
  it.each([
    ["Forwarded", { Forwarded: "for=198.51.100.11" }, ["forwarded"]],
    ["X-Real-IP", { "X-Real-IP": "198.51.100.10" }, ["x-real-ip"]],
    ["Forwarded with junk", { Forwarded: "for=1231233" }, ["forwarded"]],
  ])("through HAProxy with the client's own %s: not read, reported in ignoredHeaders", async (_name, headers, ignored) => {
    const { status, body } = await get(ports.feXff, headers);
    expect(status).toBe(200);
    expect(body).toMatchObject({ address: CLIENT, source: "x-forwarded-for", ignoredHeaders: ignored });
  });

  it("the real-ip-gate example through HAProxy: a client's own Forwarded does not turn a denied address into an allowed one", async () => {
    // The example trusts loopback, so HAProxy and the client hop are both trusted and the
    // client's X-Forwarded-For entry stands for a documentation-range client, which is denied.
    const denied = await get(ports.feXff, { "X-Forwarded-For": "203.0.113.7" }, "/gate");
    expect(denied).toMatchObject({ status: 403, body: { verdict: "denied", clientIp: "203.0.113.7" } });
    const forged = await get(ports.feXff, { "X-Forwarded-For": "203.0.113.7", Forwarded: "for=10.0.0.1" }, "/gate");
    expect(forged).toMatchObject({ status: 403, body: { verdict: "denied", clientIp: "203.0.113.7", source: "x-forwarded-for" } });
    const realIp = await get(ports.feXff, { "X-Forwarded-For": "203.0.113.7", "X-Real-IP": "10.0.0.1" }, "/gate");
    expect(realIp).toMatchObject({ status: 403, body: { verdict: "denied", clientIp: "203.0.113.7" } });
  });

  it("PROXY v2 from HAProxy into Node-RED's tcp in: the client's own address", async () => {
    const body = await tcpRoundTrip(ports.fePp2, Buffer.from("hello\n"));
    expect(body).toMatchObject({ address: CLIENT, source: "proxy-protocol", trustedHops: 1 });
    expect(typeof body["port"]).toBe("number");
  });

  it("a forged PROXY v2 header sent directly: not believed", async () => {
    const forged = encodeProxyHeaderV2({
      command: "proxy",
      transport: "tcp",
      source: { address: "203.0.113.66", port: 1234 },
      destination: { address: "127.0.0.1", port: ports.tcpIn },
    });
    const body = await tcpRoundTrip(ports.tcpIn, Buffer.concat([forged, Buffer.from("hi\n")]));
    expect(body).toMatchObject({ address: CLIENT, source: "socket", untrustedHeaders: true });
  });
});

// Faults in a running Node-RED (a full runtime started from scripts/node-red-env.js), one
// row per fault: the upstream refuses, does not answer, or resets mid-stream; a node
// downstream of `transparent in` or `classify` throws; the MQTT broker goes away and comes
// back. Each row checks that the error lands on the right node (a Catch node gets it with
// that node's id, or the node's status and log say it), that the client's socket is closed
// rather than left hanging, that the counters are right, and that the process stays up.
// Everything runs on loopback.
import net from "node:net";
import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNative } from "../../src/native";
import { startMosquitto, type Mosquitto } from "../support/mosquitto";
import { freePort } from "../support/net";
import { ensureBuilt } from "../support/netns";
import { ProbedNodeRed, probe } from "../support/node-red-probe";
import { systemCommand } from "../support/system";

const mosquittoBin = systemCommand("mosquitto");
const SEND = "hello-fault";
const PARTIAL = "partial-reply";

interface Summary {
  end: string;
  pump: string | null;
  bytesToUpstream: number;
  bytesToClient: number;
  error?: { code: string; message: string };
}

/** How the client's connection ended: a FIN, a reset, or nothing within the limit (a hang). */
interface ClientEnd {
  readonly how: "fin" | "rst" | "hang";
  readonly data: string;
}

/** Connects, sends SEND, and reports what came back and how the connection ended. */
function dial(port: number, limitMs = 10_000): Promise<ClientEnd> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1" }, () => socket.write(SEND));
    let data = "";
    let settled = false;
    const done = (how: ClientEnd["how"]): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ how, data });
    };
    const timer = setTimeout(() => done("hang"), limitMs);
    socket.on("data", (c: Buffer) => (data += c.toString()));
    socket.on("end", () => done("fin"));
    socket.on("error", (err: NodeJS.ErrnoException) => done(err.code === "ECONNRESET" ? "rst" : "hang"));
  });
}

describe.skipIf(mosquittoBin.skip)("faults in a running Node-RED", () => {
  let red: ProbedNodeRed | null = null;
  let broker: Mosquitto | null = null;
  let subscriber: MqttClient | null = null;
  let resetServer: net.Server | null = null;
  let fullFd = -1;
  const fillers: net.Socket[] = [];
  const ports: Record<string, number> = {};
  const received = new Map<number, number>();

  beforeAll(async () => {
    ensureBuilt();
    broker = await startMosquitto(mosquittoBin.path!);
    // Upstreams: a port nothing listens on; a listener that never accepts, its queue full
    // (the kernel drops further SYNs, so a connect gets no answer); and a server that
    // answers a little, then resets.
    ports["refused"] = await freePort();
    const native = loadNative();
    fullFd = native.createListener({ address: "127.0.0.1", port: 0, backlog: 1 });
    ports["full"] = native.getLocalAddress(fullFd).port;
    for (let i = 0; i < 3; i++) {
      const s = net.connect({ port: ports["full"], host: "127.0.0.1" });
      s.on("error", () => undefined);
      fillers.push(s);
    }
    await new Promise((r) => setTimeout(r, 300));
    resetServer = net.createServer((c) => {
      c.on("error", () => undefined);
      c.once("data", () => {
        c.write(PARTIAL);
        setTimeout(() => c.resetAndDestroy(), 100);
      });
    });
    await new Promise<void>((r) => resetServer!.listen(0, "127.0.0.1", r));
    ports["reset"] = (resetServer.address() as net.AddressInfo).port;
    for (const name of ["tin-refuse", "tin-timeout", "tin-reset-native", "tin-reset-js", "tin-throw", "tin-cls"]) ports[name] = await freePort();

    const listener = (id: string, next: string, extra: object = {}): object => ({
      id, type: "transparent in", port: ports[id], address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 0, unclaimedTimeout: 1, unclaimedAction: "close", wires: [[next]], ...extra,
    });
    const forward = (id: string, port: number, extra: object = {}): object => ({
      id, type: "forward", action: "forward", targetType: "fixed", host: "127.0.0.1", port, identity: "none", connectTimeout: 1, pump: "auto", wires: [[`probe-${id}`]], ...extra,
    });
    const flow: object[] = [
      listener("tin-refuse", "fw-refuse"),
      forward("fw-refuse", ports["refused"]!),
      listener("tin-timeout", "fw-timeout"),
      forward("fw-timeout", ports["full"]!),
      listener("tin-reset-native", "fw-reset-native"),
      forward("fw-reset-native", ports["reset"]!, { pump: "native" }),
      listener("tin-reset-js", "fw-reset-js"),
      forward("fw-reset-js", ports["reset"]!, { pump: "js" }),
      listener("tin-throw", "fn-throw"),
      { id: "fn-throw", type: "function", func: 'throw new Error("downstream bug " + msg.payload.remotePort);', outputs: 1, wires: [[]] },
      listener("tin-cls", "cls", { sniffBytes: 64 }),
      { id: "cls", type: "classify", input: "auto", property: "payload", maxBytes: 16384, timeoutMs: 1000, serverFirstMs: 300, rules: [], outputs: 1, wires: [["fn-throw-cls"]] },
      { id: "fn-throw-cls", type: "function", func: 'throw new Error("classified " + msg.classification.protocol);', outputs: 1, wires: [[]] },
      // Events in over HTTP, out to MQTT: the broker node and its publishing node.
      { id: "emit-in", type: "http in", url: "/faults/emit", method: "post", wires: [["emit", "emit-ok"]] },
      { id: "emit", type: "function", func: "for (let i = 0; i < msg.payload.count; i++) node.send({ payload: { seq: msg.payload.start + i } });\nreturn null;", outputs: 1, wires: [["mqtt"]] },
      { id: "emit-ok", type: "http response", statusCode: "204", wires: [] },
      { id: "mqtt", type: "mqtt events", broker: "broker", topic: "traffic/faults/{type}", qos: 1, maxQueued: 1000, overflow: "drop-oldest", maxInFlight: 100, statsInterval: 0, convert: true, wires: [[]] },
      { id: "broker", type: "traffic broker", mode: "external", url: `mqtt://127.0.0.1:${broker.port}`, protocolVersion: 4, keepalive: 5, cleanSession: true, reconnectPeriod: 300, statusTopic: "" },
      ...["fw-refuse", "fw-timeout", "fw-reset-native", "fw-reset-js"].map(probe),
    ];
    red = await ProbedNodeRed.start(flow);
    for (const id of ["tin-refuse", "tin-timeout", "tin-reset-native", "tin-reset-js", "tin-throw", "tin-cls"]) {
      expect(await red.settledStatus(id)).toMatchObject({ fill: "green" });
    }
    // A persistent subscriber session, so what is published while it is away waits for it.
    subscriber = await connectAsync(`mqtt://127.0.0.1:${broker.port}`, { clientId: "faults-sub", clean: false, reconnectPeriod: 100, protocolVersion: 4 });
    subscriber.on("message", (_topic, payload) => {
      const seq = (JSON.parse(payload.toString()) as { seq: number }).seq;
      received.set(seq, (received.get(seq) ?? 0) + 1);
    });
    await subscriber.subscribeAsync("traffic/faults/#", { qos: 1 });
  }, 120_000);

  afterAll(async () => {
    await red?.stop();
    await subscriber?.endAsync(true).catch(() => undefined);
    await broker?.dispose();
    for (const s of fillers) s.destroy();
    if (fullFd >= 0) loadNative().closeFd(fullFd);
    await new Promise((r) => (resetServer === null ? r(undefined) : resetServer.close(r)));
  });

  // Forward faults: the listener hands the connection to a forward node whose upstream fails.
  const forwardRows: Array<{ fault: string; node: string; listener: string; end: string; code: RegExp; message: RegExp; client: Array<ClientEnd["how"]>; data: string; bytes: [number, number]; pump?: string }> = [
    { fault: "upstream refuses", node: "fw-refuse", listener: "tin-refuse", end: "connect-failed", code: /^ECONNREFUSED$/, message: /refused the connection/, client: ["fin", "rst"], data: "", bytes: [0, 0] },
    { fault: "upstream does not answer", node: "fw-timeout", listener: "tin-timeout", end: "connect-failed", code: /^ETIMEDOUT$/, message: /no answer from upstream .* within the connect timeout/, client: ["fin", "rst"], data: "", bytes: [0, 0] },
    // The reset is passed on to the client as a reset, after what the upstream had sent.
    { fault: "upstream resets mid-stream (native pump)", node: "fw-reset-native", listener: "tin-reset-native", end: "upstream-reset", code: /^ECONNRESET$/, message: /upstream 127\.0\.0\.1:\d+/, client: ["rst"], data: PARTIAL, bytes: [SEND.length, PARTIAL.length], pump: "native" },
    { fault: "upstream resets mid-stream (js pump)", node: "fw-reset-js", listener: "tin-reset-js", end: "upstream-reset", code: /^ECONNRESET$/, message: /upstream 127\.0\.0\.1:\d+/, client: ["rst"], data: PARTIAL, bytes: [SEND.length, PARTIAL.length], pump: "js" },
  ];

  for (const row of forwardRows) {
    it(`${row.fault}: error on ${row.node}, client closed, summary counts right`, async () => {
      const r = red!;
      const end = await dial(ports[row.listener]!);
      const summary = (await r.until(() => r.messages(row.node)[0], `the summary of ${row.node}`)).payload as Summary;
      expect({ ...end, summary }).toMatchObject({ data: row.data, summary: { end: row.end } });
      expect(row.client).toContain(end.how);
      expect(summary.end).toBe(row.end);
      expect(summary.error!.code).toMatch(row.code);
      expect(summary.error!.message).toMatch(row.message);
      expect([summary.bytesToUpstream, summary.bytesToClient]).toEqual(row.bytes);
      if (row.pump !== undefined) expect(summary.pump).toBe(row.pump);
      const caught = await r.until(() => r.errors(row.node)[0], `a caught error from ${row.node}`);
      expect(caught.message).toMatch(row.code.source.replace(/[\^$]/g, ""));
      expect(caught.message).toMatch(row.message);
      // Only this node reported it.
      expect(r.lines().filter((l) => l.at === "catch" && l.error?.source.id !== row.node && forwardRows.every((o) => o.node !== l.error?.source.id))).toEqual([]);
      expect(await r.until(() => r.status(row.node)?.fill === "yellow" && r.status(row.node), `the status of ${row.node}`)).toMatchObject({ text: `0 · ${summary.error!.code}` });
      // The listener counts the connection gone.
      expect(await r.until(() => r.status(row.listener)?.text?.endsWith(" 0 live") && r.status(row.listener), `${row.listener} back to 0`)).toMatchObject({ fill: "green" });
      expect(r.running()).toBe(true);
    });
  }

  // A function node after `transparent in` (or after `classify`) throws: the error is its
  // own, and the connection nobody claimed is closed by the listener's unclaimed timeout.
  const throwRows = [
    { fault: "a function after transparent in throws", node: "fn-throw", listener: "tin-throw", message: /^Error: downstream bug \d+$/ },
    { fault: "a function after classify throws", node: "fn-throw-cls", listener: "tin-cls", message: /^Error: classified (unknown|incomplete)$/ },
  ];
  for (const row of throwRows) {
    it(`${row.fault}: error on ${row.node}, client closed, listener back to 0`, async () => {
      const r = red!;
      const before = r.errors(row.node).length;
      const end = await dial(ports[row.listener]!);
      expect(end).toEqual({ how: "fin", data: "" });
      const caught = await r.until(() => r.errors(row.node)[before], `a caught error from ${row.node}`);
      expect(caught.message).toMatch(row.message);
      expect(caught.source.id).toBe(row.node);
      expect(await r.until(() => r.status(row.listener)?.text?.endsWith(" 0 live") && r.status(row.listener), `${row.listener} back to 0`)).toMatchObject({ fill: "green" });
      expect(r.running()).toBe(true);
    });
  }

  it("the broker goes away and comes back: status and log say so, queued events are all sent", { timeout: 60_000 }, async () => {
    const r = red!;
    const emit = async (start: number, count: number): Promise<void> => {
      const res = await fetch(`${r.url}/faults/emit`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ start, count }) });
      expect(res.status).toBe(204);
    };
    expect(await r.until(() => r.status("mqtt")?.fill === "green" && r.status("mqtt"), "mqtt events connected")).toMatchObject({ text: "0 sent" });
    await emit(0, 50);
    await r.until(() => received.size === 50, "the first 50 events at the subscriber");
    expect(await r.until(() => r.status("mqtt")?.text === "50 sent" && r.status("mqtt"), "50 sent")).toMatchObject({ fill: "green" });

    await broker!.stop();
    const down = await r.until(() => r.status("mqtt")?.fill !== "green" && r.status("mqtt"), "a status that says the broker is gone");
    expect(["yellow", "red"]).toContain(down.fill);
    await emit(50, 50);
    expect(await r.until(() => r.status("mqtt")?.text === "50 queued" && r.status("mqtt"), "50 queued")).toMatchObject({ shape: "ring" });
    await r.until(() => /\[warn\] \[traffic broker:broker\] lost the connection to mqtt:\/\/127\.0\.0\.1:\d+/.test(r.log()), "the broker node's warning");
    await r.until(() => /\[error\] \[traffic broker:broker\] broker mqtt:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/.test(r.log()), "the broker node's error");

    await broker!.restart();
    await r.until(() => received.size === 100, "all 100 events at the subscriber", 30_000);
    expect(await r.until(() => r.status("mqtt")?.text === "100 sent" && r.status("mqtt"), "100 sent")).toMatchObject({ fill: "green" });
    expect(r.log()).toMatch(/\[info\] \[traffic broker:broker\] connected to mqtt:\/\/127\.0\.0\.1:\d+ again/);
    for (let seq = 0; seq < 100; seq++) expect(received.has(seq)).toBe(true);
    // One error line for the whole outage, not one per reconnect attempt.
    expect(r.log().match(/\[error\] \[traffic broker:broker\]/g)).toHaveLength(1);
    expect(r.running()).toBe(true);
  });
});

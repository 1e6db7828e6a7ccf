import { spawn } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { Node } from "node-red";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import registerFlowSource, { optionsFromConfig } from "../../nodes/flow-source/flow-source";
import type { FlowCloseEvent, FlowEvent } from "../../src/events/types";
import { assertValidEvent } from "../support/events";
import { freePort } from "../support/net";
import { collect, helper, onCall } from "../support/node-red-helper";
import { bpfFds, ebpfDescribe, FIXTURES, runClient } from "../kernel/flow-support";
import { until } from "../support/wait";

const require_ = createRequire(__filename);
const env = require_("../../scripts/node-red-env.js") as {
  prepareUserDir(dir: string, opts: { port: number; flows: unknown[] }): void;
  startNodeRed(dir: string, opts: { port: number }): Promise<{ child: import("node:child_process").ChildProcess; url: string; log(): string }>;
  stopNodeRed(child: import("node:child_process").ChildProcess): Promise<void>;
};

const run = ebpfDescribe("flow source node");

/** A loopback server that echoes and closes when the client ends. */
async function echoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

/** Every message the node sent carries schema-valid events (one, or an array when batched). */
function expectValidPayloads(msgs: ReadonlyArray<Record<string, unknown>>): void {
  expect(msgs.length).toBeGreaterThan(0);
  for (const m of msgs) {
    const payload = m["payload"];
    for (const e of Array.isArray(payload) ? payload : [payload]) assertValidEvent(e);
    if (!Array.isArray(payload)) expect(String(m["topic"]).split(" ")[0]).toBe((payload as FlowEvent).type);
  }
}

describe("flow source configuration", () => {
  it("turns editor fields into source options and rejects bad ones", () => {
    expect(optionsFromConfig({ mode: "ebpf", ports: "80, 443", cidrs: "10.0.0.0/8 2001:db8::/32", side: "server", eventState: true, ringKiB: 256, dumpMs: 500 })).toMatchObject({
      mode: "ebpf",
      ports: [80, 443],
      cidrs: ["10.0.0.0/8", "2001:db8::/32"],
      side: "server",
      state: true,
      open: true,
      close: true,
      ringBytes: 256 * 1024,
      dumpIntervalMs: 500,
    });
    // A flow saved before UDP sockets were reported keeps reporting TCP only.
    expect(optionsFromConfig({}).protocols).toBe("tcp");
    expect(optionsFromConfig({ protocol: "both" }).protocols).toBe("both");
    expect(() => optionsFromConfig({ protocol: "sctp" as never })).toThrow(/protocol: must be one of tcp, udp, both/);
    expect(() => optionsFromConfig({ ports: "80,http" })).toThrow(/ports: must be ports 1-65535/);
    expect(() => optionsFromConfig({ dumpMs: 5 })).toThrow(/dumpMs: must be an integer from 100/);
  });
});

run("flow source node in a Node-RED runtime (test helper)", () => {
  afterEach(async () => {
    await helper.unload();
  });

  it("sends open and close events per message, says eBPF in its status, and frees the capture on close", async () => {
    const before = bpfFds();
    const srv = await echoServer();
    try {
      await helper.load(registerFlowSource, [
        { id: "fs", type: "flow source", mode: "ebpf", ports: String(srv.port), side: "client", delivery: "event", eventOpen: true, eventClose: true, wires: [["out"]] },
        { id: "out", type: "helper" },
      ]);
      const node = helper.getNode("fs");
      const statuses: Array<{ text?: string; fill?: string }> = [];
      onCall(node, "status", (s) => statuses.push(s as { text?: string }));
      const seen = collect({ out: helper.getNode("out") });
      const cli = await runClient("127.0.0.1", srv.port, 321);
      await until(() => seen["out"]!.some((m) => String(m["topic"]).startsWith("flow-close ")), "close message", 5000);
      const msgs = seen["out"]!.filter((m) => (m["payload"] as FlowEvent & { localPort?: number }).localPort === cli.localPort);
      // The topic names the connection, from the client's end to the server's, with the owning command.
      const comm = (msgs[0]!["payload"] as FlowCloseEvent).comm;
      expect(comm).not.toBeNull();
      const conn = `${comm} 127.0.0.1:${cli.localPort} → 127.0.0.1:${srv.port}`;
      expect(msgs.map((m) => m["topic"])).toEqual([`flow-open ${conn}`, `flow-close ${conn}`]);
      // What happened, who and between which ends lead the payload, so the debug sidebar shows them first.
      const who = ["type", "comm", "pid", "side", "localIp", "localPort", "remoteIp", "remotePort"];
      expect(Object.keys(msgs[0]!["payload"] as object).slice(0, who.length)).toEqual(who);
      expect(Object.keys(msgs[1]!["payload"] as object).slice(0, who.length + 5)).toEqual([...who, "end", "error", "bytesSent", "bytesReceived", "durationMs"]);
      expectValidPayloads(seen["out"]!);
      expect(msgs[0]!["payload"]).toMatchObject({ schemaVersion: 1, host: os.hostname(), flowId: (msgs[1]!["payload"] as FlowCloseEvent).flowId });
      expect(msgs[1]!["payload"]).toMatchObject({ source: "ebpf", side: "client", pid: cli.pid, bytesSent: 321, bytesReceived: 321 });
      // Only client sockets: the accepted end of the same connection is filtered in the kernel.
      expect(seen["out"]!.every((m) => (m["payload"] as FlowEvent & { side?: string }).side === "client")).toBe(true);
      await until(() => statuses.some((s) => s.text === "ebpf · open 1 · closed 1"), "ebpf status with its event counts", 3000);
      expect(bpfFds()["bpf_link"] ?? 0).toBeGreaterThan(before["bpf_link"] ?? 0);
      await helper.unload();
      expect(bpfFds()).toEqual(before);
    } finally {
      await srv.close();
    }
  });

  it("batches events into arrays every N ms", async () => {
    const srv = await echoServer();
    try {
      await helper.load(registerFlowSource, [
        { id: "fs", type: "flow source", mode: "ebpf", ports: String(srv.port), delivery: "batch", batchMs: 300, eventOpen: false, eventClose: true, wires: [["out"]] },
        { id: "out", type: "helper" },
      ]);
      const seen = collect({ out: helper.getNode("out") });
      const clients = await Promise.all([1, 2, 3].map((n) => runClient("127.0.0.1", srv.port, n)));
      const closes = (): FlowCloseEvent[] => seen["out"]!.flatMap((m) => m["payload"] as FlowEvent[]).filter((e): e is FlowCloseEvent => e.type === "flow-close");
      // Three connections, two sockets each.
      await until(() => closes().length >= 6, "six close events", 5000);
      expect(seen["out"]!.every((m) => m["topic"] === "flow-batch" && Array.isArray(m["payload"]))).toBe(true);
      expect(seen["out"]!.length).toBeLessThan(6);
      expectValidPayloads(seen["out"]!);
      for (const c of clients) expect(closes().find((e) => e.localPort === c.localPort)).toMatchObject({ side: "client", bytesSent: c.received });
    } finally {
      await srv.close();
    }
  });

  it("reports lost events as messages and in its status", async () => {
    const child = spawn(process.execPath, [path.join(FIXTURES, "burst.js"), "1000"], { stdio: ["pipe", "pipe", "inherit"] });
    let out = "";
    child.stdout!.on("data", (c) => (out += c.toString()));
    try {
      await until(() => /ready \d+/.test(out), "burst connections", 20_000);
      const port = /ready (\d+)/.exec(out)![1]!;
      await helper.load(registerFlowSource, [
        { id: "fs", type: "flow source", mode: "ebpf", ports: port, eventOpen: false, eventClose: true, ringKiB: 4, delivery: "event", wires: [["out"]] },
        { id: "out", type: "helper" },
      ]);
      const node = helper.getNode("fs");
      const statuses: Array<{ text?: string }> = [];
      onCall(node, "status", (st) => statuses.push(st as { text?: string }));
      const seen = collect({ out: helper.getNode("out") });
      child.stdin!.write("go\n");
      await until(() => seen["out"]!.some((m) => m["topic"] === "lost"), "a lost message", 5000);
      const lost = seen["out"]!.filter((m) => m["topic"] === "lost").reduce((n, m) => n + (m["payload"] as { count: number }).count, 0);
      expectValidPayloads(seen["out"]!);
      expect(seen["out"]!.find((m) => m["topic"] === "lost")!["payload"]).toMatchObject({ type: "lost", capture: "ebpf" });
      await until(() => statuses.some((st) => new RegExp(`^ebpf · closed \\d+ · lost ${lost}$`).test(st.text ?? "")), `status "ebpf · closed N · lost ${lost}"`, 5000);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  it("a bad configuration gives a red status and an error, not a crash", async () => {
    await helper.load(registerFlowSource, [{ id: "fs", type: "flow source", mode: "ebpf", ports: "", cidrs: "not-a-cidr", wires: [[]] }]);
    const node = helper.getNode("fs") as Node;
    expect(node).toBeTruthy();
    // The error was logged during construction (the helper's log spy keeps it).
    const logged = (helper as unknown as { log(): { args: Array<[{ level: number; id?: string; msg?: unknown }]> } }).log().args.map((a) => a[0]);
    const errors = logged.filter((l) => l.level === 20 && l.id === "fs");
    expect(String(errors[0]?.msg)).toMatch(/flow source not started: .*not-a-cidr/);
    await helper.unload();
  });
});

run("flow source node in a full Node-RED", () => {
  let userDir = "";
  let red: Awaited<ReturnType<typeof env.startNodeRed>> | null = null;
  let outFile = "";
  let srv: Awaited<ReturnType<typeof echoServer>> | null = null;

  beforeAll(async () => {
    srv = await echoServer();
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-flow-red-"));
    outFile = path.join(userDir, "events.ndjson");
    const port = await freePort();
    env.prepareUserDir(userDir, {
      port,
      flows: [
        { id: "tab1", type: "tab", label: "flows" },
        { id: "fs1", z: "tab1", type: "flow source", mode: "auto", ports: String(srv.port), delivery: "event", eventOpen: true, eventClose: true, wires: [["file1"]] },
        { id: "file1", z: "tab1", type: "file", filename: outFile, filenameType: "str", appendNewline: true, createDir: false, overwriteFile: "false", encoding: "none", wires: [] },
      ],
    });
    red = await env.startNodeRed(userDir, { port });
  }, 90_000);

  afterAll(async () => {
    if (red !== null) await env.stopNodeRed(red.child);
    await srv?.close();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  it("delivers close events into a deployed flow (written by a core file node)", async () => {
    const cli = await runClient("127.0.0.1", srv!.port, 1234);
    const events = (): FlowEvent[] =>
      fs.existsSync(outFile)
        ? fs
            .readFileSync(outFile, "utf8")
            .split("\n")
            .filter((l) => l !== "")
            .map((l) => JSON.parse(l) as FlowEvent)
        : [];
    await until(() => events().filter((e) => e.type === "flow-close").length >= 2, `close events in ${outFile}; log:\n${red!.log()}`, 10_000);
    for (const e of events()) assertValidEvent(e);
    const client = events().find((e): e is FlowCloseEvent => e.type === "flow-close" && e.localPort === cli.localPort);
    expect(client).toMatchObject({ source: "ebpf", side: "client", pid: cli.pid, bytesSent: 1234, bytesReceived: 1234 });
    const server = events().find((e): e is FlowCloseEvent => e.type === "flow-close" && e.side === "server" && e.remotePort === cli.localPort);
    expect(server).toMatchObject({ pid: process.pid, bytesSent: 1234, bytesReceived: 1234 });
  }, 30_000);
});

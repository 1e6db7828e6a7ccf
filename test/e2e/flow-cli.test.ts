import { spawn, spawnSync } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { assertValidEvent } from "../support/events";
import type { FlowCloseEvent, FlowEvent } from "../../src/events/types";

import { IS_ROOT, skipWithout } from "../support/system";
import { until } from "../support/wait";

const root = path.resolve(__dirname, "..", "..");
const cli = path.join(root, "bin", "traffic-policy.js");
const drop = ["--bounding-set", "-bpf,-perfmon,-sys_admin", "--inh-caps", "-bpf,-perfmon,-sys_admin", "--"];

describe("traffic-policy CLI", () => {
  it("doctor --json reports the capability report and every flow capture probe", () => {
    const r = spawnSync(process.execPath, [cli, "doctor", "--json"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as { capabilities: Array<{ feature: string }>; flow: Array<{ feature: string; available: boolean; detail: string }> };
    expect(report.capabilities.map((c) => c.feature)).toContain("eBPF flow source");
    const names = report.flow.map((f) => f.feature);
    for (const f of ["tp_btf/inet_sock_set_state", "sk_storage", "ring buffer", "cgroup v2", "eBPF capture loads and attaches"]) expect(names).toContain(f);
  });

  it("doctor as root finds that the eBPF capture loads and attaches", (ctx) => {
    ctx.skip(!IS_ROOT, "loading eBPF needs root");
    const r = spawnSync(process.execPath, [cli, "doctor", "--json"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as { flow: Array<{ feature: string; available: boolean; detail: string }> };
    expect(report.flow.find((f) => f.feature === "eBPF capture loads and attaches")).toMatchObject({ available: true });
  });

  it("doctor without CAP_BPF says why eBPF does not load", (ctx) => {
    ctx.skip(!IS_ROOT, "dropping capabilities from a child needs root");
    const setpriv = skipWithout(ctx, "setpriv");
    const r = spawnSync(setpriv, [...drop, process.execPath, cli, "doctor"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/no +eBPF capture loads and attaches: not permitted: needs CAP_BPF \+ CAP_PERFMON/);
    expect(r.stdout).toMatch(/yes +sock_diag destroy multicast/);
  });

  it("flows prints one JSON event per line for a connection made while it runs", async () => {
    const server = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const child = spawn(process.execPath, [cli, "flows", "--ports", String(port), "--side", "client", "--duration", "3"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout!.on("data", (c) => (out += c.toString()));
    child.stderr!.on("data", (c) => (err += c.toString()));
    try {
      await until(() => err.includes("capturing with"), "flows start-up", 10_000);
      const sock = net.connect(port, "127.0.0.1", () => sock.end("ping"));
      sock.resume();
      const localPort = await new Promise<number>((r) => sock.once("connect", () => r(sock.localPort!)));
      await new Promise((r) => sock.once("close", r));
      await until(() => out.includes('"flow-close"'), `close event; stderr: ${err}`, 5000);
      const events = out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as FlowEvent);
      // The NDJSON lines are the package's events: each valid against its schema.
      for (const e of events) assertValidEvent(e);
      const close = events.find((e): e is FlowCloseEvent => e.type === "flow-close" && e.localPort === localPort);
      expect(close).toMatchObject({ side: "client", remotePort: port, bytesSent: 4, pid: process.pid });
      expect(err).toMatch(IS_ROOT ? /capturing with ebpf/ : /capturing with sockdiag/);
      await new Promise((r) => child.once("exit", r));
      expect(child.exitCode).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGINT");
      await new Promise((r) => server.close(r));
    }
  });
});

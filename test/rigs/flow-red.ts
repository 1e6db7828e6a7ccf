/**
 * A full Node-RED (scripts/node-red-env.js, this package loaded as an installed module)
 * whose deployed flow counts the close events a `flow source` node delivers: flow source
 * → a function node that tallies per side into flow context, read back through an HTTP
 * endpoint of the same flow. Used by bench/flow.bench.ts and the flow load test, so the
 * bar and the test count alike. Node-RED loads the built package (dist/).
 */
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT } from "./root";
import { freePort } from "./free-port";

/** What the flow counted so far. */
export interface FlowTally {
  /** Close events with side client whose remote port is the generator's server port. */
  readonly client: number;
  /** Close events with side server whose local port is the generator's server port. */
  readonly server: number;
  /** Close events of this namespace whose known side does not match their ports (must stay 0). */
  readonly mismatched: number;
  /**
   * Close events of other sockets that carry the port: another network namespace, or a
   * socket seen only after it opened (side unknown), such as a client whose ephemeral port
   * equals the service port once the service stopped listening. The capture is host-wide.
   */
  readonly foreign: number;
  /** Messages the counter received (one per batch when batched). */
  readonly messages: number;
  /** Totals of `lost` events by where the loss happened. */
  readonly lostKernel: number;
  readonly lostJs: number;
  /** State changes the kernel ran no program for: closes are still recovered, so not a loss of closes. */
  readonly skipped: number;
  /** The flow source node's latest status text, from a Status node ("" before the first). */
  readonly status: string;
}

export interface FlowDelivery {
  /** `batch`: one message per `batchMs` with an array of events; `event`: one message each. */
  readonly delivery: "event" | "batch";
  readonly batchMs?: number;
}

/** A running Node-RED that counts flow-source closes. */
export interface CountingRed {
  readonly pid: number;
  /** Deploys (full) the counting flow filtered to `port`; resolves once the source runs in eBPF mode. */
  deploy(port: number, delivery: FlowDelivery): Promise<void>;
  /** What the deployed flow counted. */
  tally(): Promise<FlowTally>;
  /**
   * Waits until the flow counted `client` and `server` closes (at most `timeoutMs`), then
   * past the source's next lost-count check; returns the final tally.
   */
  settledTally(client: number, server: number, timeoutMs?: number): Promise<FlowTally>;
  /** Deploys an empty flow (the source stops and frees its capture). */
  clear(): Promise<void>;
  /** Stops Node-RED by its pid and removes its user dir; safe to call twice. */
  stop(): Promise<void>;
  /** Node-RED's output so far, for failure messages. */
  log(): string;
}

interface NodeRedEnv {
  prepareUserDir(dir: string, options: { port: number; flows: object[] }): void;
  startNodeRed(dir: string, options: { port: number; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<{ child: ChildProcess; url: string; log(): string }>;
  stopNodeRed(child: ChildProcess, timeoutMs?: number): Promise<void>;
}

function nodeRedEnv(): NodeRedEnv {
  const found = path.join(ROOT, "scripts", "node-red-env.js");
  return require(found) as NodeRedEnv;
}

// The flow source node checks its lost counters at this interval (FlowSource's default).
const LOST_CHECK_MS = 1000;


// The counter: closes per side (checked against the generator's port), lost events by
// source, and the source node's status. Kept in flow context for the HTTP endpoint.
const COUNTER = `
const c = flow.get("tally") || { client: 0, server: 0, mismatched: 0, foreign: 0, messages: 0, lostKernel: 0, lostJs: 0, skipped: 0, status: "" };
if (msg.status !== undefined) {
  c.status = String(msg.status.text || "");
} else {
  c.messages++;
  const events = Array.isArray(msg.payload) ? msg.payload : [msg.payload];
  for (const e of events) {
    if (e.type === "flow-close") {
      if (e.netns !== NETNS || e.side === "unknown") c.foreign++;
      else if (e.side === "client" && e.remotePort === PORT) c.client++;
      else if (e.side === "server" && e.localPort === PORT) c.server++;
      else c.mismatched++;
    } else if (e.type === "lost") {
      if (/skipped/.test(e.reason || "")) c.skipped += e.count;
      else if (e.source === "js") c.lostJs += e.count;
      else c.lostKernel += e.count;
    }
  }
}
flow.set("tally", c);
return null;`;

const REPORT = `msg.payload = flow.get("tally") || null;\nreturn msg;`;

/** The counting flow on its own tab (a new tab id per deploy, so no context carries over). */
function countingFlow(port: number, { delivery, batchMs = 100 }: FlowDelivery): object[] {
  const z = `count-${port}`;
  const fn = (id: string, name: string, func: string, wires: string[][]): object => ({ id, z, type: "function", name, func, outputs: 1, timeout: 0, noerr: 0, initialize: "", finalize: "", libs: [], wires });
  return [
    { id: z, type: "tab", label: `closes of port ${port}` },
    {
      id: `${z}-source`,
      z,
      type: "flow source",
      mode: "ebpf",
      eventOpen: false,
      eventClose: true,
      eventState: false,
      ports: String(port),
      cidrs: "",
      side: "any",
      cgroupId: "",
      delivery,
      batchMs,
      ringKiB: 4096,
      dumpMs: 1000,
      firstBytes: 0,
      wires: [[`${z}-counter`]],
    },
    { id: `${z}-status`, z, type: "status", scope: [`${z}-source`], wires: [[`${z}-counter`]] },
    fn(`${z}-counter`, "count closes", `const PORT = ${port};\nconst NETNS = ${fs.statSync("/proc/self/ns/net").ino};\n${COUNTER}`, [[]]),
    { id: `${z}-http`, z, type: "http in", url: "/flow-tally", method: "get", upload: false, swaggerDoc: "", wires: [[`${z}-report`]] },
    fn(`${z}-report`, "report tally", REPORT, [[`${z}-response`]]),
    { id: `${z}-response`, z, type: "http response", statusCode: "", headers: {}, wires: [] },
  ];
}

async function postFlows(url: string, flows: object[]): Promise<void> {
  const res = await fetch(`${url}/flows`, {
    method: "POST",
    headers: { "content-type": "application/json", "Node-RED-Deployment-Type": "full" },
    body: JSON.stringify(flows),
    signal: AbortSignal.timeout(30_000),
  });
  if (!res.ok) throw new Error(`deploy failed: ${res.status} ${await res.text()}`);
}

/** Starts Node-RED with no flows; the caller must stop() it (also when it fails). */
export async function startCountingRed(): Promise<CountingRed> {
  const env = nodeRedEnv();
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "tp-flow-red-"));
  let red: Awaited<ReturnType<NodeRedEnv["startNodeRed"]>>;
  try {
    const port = await freePort();
    // Log level info: startNodeRed waits for the "Started flows" line.
    env.prepareUserDir(userDir, { port, flows: [] });
    red = await env.startNodeRed(userDir, { port, env: { ...process.env, HOME: userDir }, timeoutMs: 90_000 });
  } catch (err) {
    fs.rmSync(userDir, { recursive: true, force: true });
    throw err;
  }
  const { child, url } = red;
  let stopped = false;
  const tally = async (): Promise<FlowTally> => {
    const res = await fetch(`${url}/flow-tally`, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`tally: ${res.status}`);
    const t = (await res.json()) as FlowTally | null;
    return t ?? { client: 0, server: 0, mismatched: 0, foreign: 0, messages: 0, lostKernel: 0, lostJs: 0, skipped: 0, status: "" };
  };
  return {
    pid: child.pid!,
    async deploy(port, delivery) {
      await postFlows(url, countingFlow(port, delivery));
      // The node sets its status once the capture runs (again when the flows have started).
      const end = Date.now() + 20_000;
      for (;;) {
        // The endpoint belongs to the new flow: until it runs, a 404 (read as no status).
        const status = await tally().then((t) => t.status, () => "");
        if (status === "ebpf") return;
        if (status !== "" || Date.now() > end) throw new Error(`flow source status "${status}", not ebpf:\n${red.log().slice(-4000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    tally,
    async settledTally(client, server, timeoutMs = 15_000) {
      const end = Date.now() + timeoutMs;
      let t = await tally();
      while ((t.client < client || t.server < server) && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 200));
        t = await tally();
      }
      // One more lost-count check of the source (every second) and one more batch.
      await new Promise((r) => setTimeout(r, LOST_CHECK_MS + 500));
      return tally();
    },
    clear: () => postFlows(url, []),
    async stop() {
      if (stopped) return;
      stopped = true;
      await env.stopNodeRed(child, 20_000);
      fs.rmSync(userDir, { recursive: true, force: true });
    },
    log: () => red.log(),
  };
}

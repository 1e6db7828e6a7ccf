// Prometheus metrics of a running Node-RED: 10,000 connections through a real flow
// (transparent in → classify → forward to an upstream on loopback), then the scrape at
// /traffic-policy/metrics must equal, exactly, the sums of the forward summaries the flow
// itself received, and what the clients sent and got. promtool lints the live scrape.
import { spawnSync } from "node:child_process";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/net";
import { ensureBuilt } from "../support/netns";
import { ProbedNodeRed } from "../support/node-red-probe";
import { skipWithout } from "../support/system";

const CONNECTIONS = 10_000;
const CONCURRENCY = 64;

/** What the flow's own sum node saw in the forward summaries. */
interface Sums {
  count: number;
  toUpstream: number;
  toClient: number;
  durationMs: number;
  ends: Record<string, number>;
}

// A function node that adds every forward summary to global context (these nodes sit on no tab), and one that serves the sums.
const SUM = `const s = global.get("sums") || { count: 0, toUpstream: 0, toClient: 0, durationMs: 0, ends: {} };
s.count++; s.toUpstream += msg.payload.bytesToUpstream; s.toClient += msg.payload.bytesToClient; s.durationMs += msg.payload.durationMs;
s.ends[msg.payload.end] = (s.ends[msg.payload.end] || 0) + 1;
global.set("sums", s);
return null;`;
const SERVE = 'msg.payload = global.get("sums") || { count: 0, toUpstream: 0, toClient: 0, durationMs: 0, ends: {} };\nreturn msg;';

/** The value of one sample line `name{labels} value` in a scrape; 0 when absent. */
function sample(text: string, name: string, labels: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** Sum of every sample of `name` whose labels contain `labelPart`. */
function total(text: string, name: string, labelPart: string): number {
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`) && l.includes(labelPart))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

/** One client: sends an HTTP/1 request of a length that depends on `i`, reads the reply to the end. */
function dial(port: number, i: number): Promise<{ sent: number; received: number }> {
  return new Promise((resolve, reject) => {
    const request = `GET /${"x".repeat(i % 300)} HTTP/1.1\r\nHost: metrics.example\r\n\r\n`;
    const socket = net.connect({ port, host: "127.0.0.1" }, () => socket.end(request));
    let received = 0;
    socket.on("data", (c: Buffer) => (received += c.length));
    socket.on("end", () => {
      socket.destroy();
      resolve({ sent: Buffer.byteLength(request), received });
    });
    socket.on("error", reject);
    socket.setTimeout(20_000, () => socket.destroy(new Error(`connection ${i} hung`)));
  });
}

describe("metrics after 10,000 connections through a flow", () => {
  let red: ProbedNodeRed | null = null;
  let upstream: net.Server | null = null;
  let listenPort = 0;

  beforeAll(async () => {
    ensureBuilt();
    // The upstream reads the whole request and answers with twice its length.
    upstream = net.createServer((c) => {
      let n = 0;
      c.on("data", (chunk: Buffer) => (n += chunk.length));
      c.on("end", () => c.end(Buffer.alloc(n * 2, 0x61)));
      c.on("error", () => undefined);
    });
    await new Promise<void>((r) => upstream!.listen(0, "127.0.0.1", r));
    const upstreamPort = (upstream.address() as net.AddressInfo).port;
    listenPort = await freePort();
    red = await ProbedNodeRed.start([
      { id: "tin", type: "transparent in", port: listenPort, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 64, unclaimedTimeout: 10, unclaimedAction: "close", wires: [["cls"]] },
      { id: "cls", type: "classify", input: "auto", property: "payload", maxBytes: 16384, timeoutMs: 2000, serverFirstMs: 1000, rules: [{ name: "web", protocols: "http1" }], outputs: 2, wires: [["fw"], ["fw"]] },
      { id: "fw", type: "forward", action: "forward", targetType: "fixed", host: "127.0.0.1", port: upstreamPort, identity: "none", connectTimeout: 5, pump: "auto", wires: [["sum"]] },
      { id: "sum", type: "function", func: SUM, outputs: 1, wires: [[]] },
      { id: "sums-in", type: "http in", url: "/metrics-test/sums", method: "get", wires: [["serve"]] },
      { id: "serve", type: "function", func: SERVE, outputs: 1, wires: [["sums-out"]] },
      { id: "sums-out", type: "http response", wires: [] },
    ]);
    expect(await red.settledStatus("tin")).toMatchObject({ fill: "green" });
  }, 120_000);

  afterAll(async () => {
    await red?.stop();
    await new Promise((r) => (upstream === null ? r(undefined) : upstream.close(r)));
  });

  it("counts every connection, byte and duration the forward summaries report", async (ctx) => {
    const promtool = skipWithout(ctx, "promtool");
    let sent = 0;
    let received = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < CONNECTIONS) {
        const r = await dial(listenPort, next++);
        sent += r.sent;
        received += r.received;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    expect(received).toBe(sent * 2);

    // The summaries reach the sum node shortly after the clients see their close.
    let sums: Sums = { count: 0, toUpstream: 0, toClient: 0, durationMs: 0, ends: {} };
    const deadline = Date.now() + 30_000;
    while (sums.count < CONNECTIONS && Date.now() < deadline) {
      sums = (await (await fetch(`${red!.url}/metrics-test/sums`, { signal: AbortSignal.timeout(10_000) })).json()) as Sums;
      if (sums.count < CONNECTIONS) await new Promise((r) => setTimeout(r, 100));
    }
    expect(sums.count).toBe(CONNECTIONS);
    expect(sums.ends).toEqual({ closed: CONNECTIONS });
    expect(sums.toUpstream).toBe(sent);
    expect(sums.toClient).toBe(received);

    const res = await fetch(`${red!.url}/traffic-policy/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain;.*version=0\.0\.4/);
    const text = await res.text();
    expect(sample(text, "traffic_connections_accepted_total", 'node="tin"')).toBe(CONNECTIONS);
    expect(sample(text, "traffic_connections_total", 'node="fw",end="closed"')).toBe(sums.ends.closed);
    expect(total(text, "traffic_connections_total", 'node="fw"')).toBe(sums.count);
    expect(sample(text, "traffic_bytes_total", 'node="fw",direction="to_upstream"')).toBe(sums.toUpstream);
    expect(sample(text, "traffic_bytes_total", 'node="fw",direction="to_client"')).toBe(sums.toClient);
    expect(sample(text, "traffic_connection_duration_seconds_count", 'node="fw"')).toBe(sums.count);
    expect(sample(text, "traffic_connection_duration_seconds_bucket", 'le="+Inf",node="fw"')).toBe(sums.count);
    // A sum of floating-point seconds: equal to the summaries' milliseconds up to rounding.
    expect(sample(text, "traffic_connection_duration_seconds_sum", 'node="fw"')).toBeCloseTo(sums.durationMs / 1000, 3);
    expect(sample(text, "traffic_classify_results_total", 'node="cls",protocol="http1",rule="web"')).toBe(CONNECTIONS);
    expect(sample(text, "traffic_connections_live", 'node="tin"') + sample(text, "traffic_connections_live", 'node="fw"')).toBe(0);
    // Bounded: a handful of series per node, whatever the number of clients.
    expect(text).not.toContain("127.0.0.1");
    expect(text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).length).toBeLessThan(40);

    const lint = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8" });
    expect(`${lint.stdout}${lint.stderr}`.trim()).toBe("");
    expect(lint.status).toBe(0);
  }, 300_000);
});

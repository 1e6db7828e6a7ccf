import { spawn, type ChildProcess } from "node:child_process";
import { afterEach, expect, it } from "vitest";
import { FlowSource } from "../../src/flow/source";
import type { FlowEvent } from "../../src/events/types";
import { loadgenBinary, runLoadClient, startLoadServer, type LoadResult } from "../rigs/loadgen";
import { startCountingRed } from "../rigs/flow-red";
import { skipWithout } from "../support/system";
import { ebpfDescribe } from "./flow-support";
import { assertValidEvent } from "../support/events";
import { stopProcess } from "../support/net";
import { poll } from "../support/wait";

// Bounded connection load from the native generator (test/rigs/loadgen.c) against the eBPF
// flow source: every connection's two close events must arrive, and nothing may be lost.
const run = ebpfDescribe("flow load");

const RATE = 20_000;
const SECONDS = 3;

// biome-ignore lint/suspicious/noConfusingVoidType: a cleanup is sync (returns nothing) or async.
const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Tally {
  clientCloses: number;
  serverCloses: number;
  clientPids: Set<number | null>;
  serverPids: Set<number | null>;
  lost: number;
  skippedReported: number;
  checked: number;
}

/** A flow source counting the close events of one server port, both ends; every 500th event schema-checked. */
function countingSource(port: number): { source: FlowSource; tally: Tally } {
  const tally: Tally = { clientCloses: 0, serverCloses: 0, clientPids: new Set(), serverPids: new Set(), lost: 0, skippedReported: 0, checked: 0 };
  let seen = 0;
  const source = new FlowSource({ mode: "ebpf", ports: [port], open: false, close: true, reportExisting: false, lostCheckMs: 200 }, (events: FlowEvent[]) => {
    for (const e of events) {
      if (++seen % 500 === 1) {
        assertValidEvent(e);
        tally.checked++;
      }
      if (e.type === "flow-close") {
        if (e.localPort === port) {
          tally.serverCloses++;
          tally.serverPids.add(e.pid);
        } else if (e.remotePort === port) {
          tally.clientCloses++;
          tally.clientPids.add(e.pid);
        }
      } else if (e.type === "lost") {
        if (e.reason?.includes("skipped")) tally.skippedReported += e.count;
        else tally.lost += e.count;
      }
    }
  });
  source.start();
  cleanups.push(() => source.stop());
  return { source, tally };
}

/** Runs the generator against its own server with a source attached; returns what each side counted. */
async function loadRun(rate: number, seconds: number): Promise<{ load: LoadResult; accepted: number; serverPid: number; tally: Tally; stats: ReturnType<FlowSource["stats"]> }> {
  const server = await startLoadServer();
  let stopped = false;
  cleanups.push(() => (stopped ? undefined : server.stop()));
  const { source, tally } = countingSource(server.port);
  const load = await runLoadClient(server.port, rate, seconds);
  const accepted = await server.stop();
  stopped = true;
  // Each client socket closes once (connected, refused or cut at exit); each accepted one too.
  await poll(() => tally.clientCloses >= load.attempted && tally.serverCloses >= accepted, 10_000);
  await new Promise((r) => setTimeout(r, 400)); // a last lost-count check, and nothing extra
  return { load, accepted, serverPid: server.pid, tally, stats: source.stats() };
}

run("eBPF flow source under connection load (native generator)", () => {
  it(`${RATE} connections/s for ${SECONDS} s paced (or the most this machine sustains): every close of both ends delivered, nothing lost`, { timeout: 60_000 }, async (ctx) => {
    skipWithout(ctx, "cc");
    loadgenBinary();
    const r = await loadRun(RATE, SECONDS);
    console.log(
      `load: ${r.load.rate.toFixed(0)} conn/s achieved (${r.load.connected} connected, ${r.load.failed} failed, ${r.load.unfinished} unfinished); ` +
        `closes ${r.tally.clientCloses} client + ${r.tally.serverCloses} server; lost ${r.tally.lost}; ` +
        `kernel skipped ${r.stats.kernelSkipped} state changes, ${r.tally.skippedReported} reported`,
    );
    expect(r.load.connected).toBeGreaterThan(0);
    expect(r.load.unfinished).toBe(0);
    expect(r.tally.lost).toBe(0);
    expect(r.stats.kernelLost).toBe(0);
    expect(r.stats.jsLost).toBe(0);
    expect(r.tally.clientCloses).toBe(r.load.attempted);
    expect(r.tally.serverCloses).toBe(r.accepted);
    expect(r.accepted).toBe(r.load.connected);
    // The owners are the generator's two processes, taken in process context.
    expect([...r.tally.clientPids]).toEqual([r.load.pid]);
    expect([...r.tally.serverPids]).toEqual([r.serverPid]);
    expect(r.tally.checked).toBeGreaterThan(0);
  });

  it("with every core busy (CPU-bound processes beside the load): closes of sockets whose state changes the kernel skipped still arrive", { timeout: 60_000 }, async (ctx) => {
    skipWithout(ctx, "cc");
    // Busy loops keep interrupts landing inside process-context program runs, where the
    // kernel skips the nested run of the same program.
    const hogs: ChildProcess[] = [];
    cleanups.push(async () => {
      for (const h of hogs) await stopProcess(h);
    });
    for (let i = 0; i < 2; i++) hogs.push(spawn("sh", ["-c", "while :; do :; done"], { stdio: "ignore" }));
    const r = await loadRun(10_000, SECONDS);
    console.log(
      `under busy loops: ${r.load.rate.toFixed(0)} conn/s; closes ${r.tally.clientCloses} client + ${r.tally.serverCloses} server of ${r.load.attempted} + ${r.accepted}; ` +
        `kernel skipped ${r.stats.kernelSkipped} state changes; closes recovered at destruction ${r.stats.closeAtDestroy}`,
    );
    expect(r.tally.lost).toBe(0);
    expect(r.tally.clientCloses).toBe(r.load.attempted);
    expect(r.tally.serverCloses).toBe(r.accepted);
  });

  it(`into a Node-RED flow: ${RATE} connections/s for ${SECONDS} s, batched delivery, every close reaches the flow's counter node, nothing lost`, { timeout: 180_000 }, async (ctx) => {
    skipWithout(ctx, "cc");
    loadgenBinary();
    // A full Node-RED loading the built package: flow source (eBPF, closes of the generator's
    // port, batched) → a function node counting per side, read back over the flow's HTTP endpoint.
    const red = await startCountingRed();
    cleanups.push(() => red.stop());
    const server = await startLoadServer();
    let stopped = false;
    cleanups.push(() => (stopped ? undefined : server.stop()));
    await red.deploy(server.port, { delivery: "batch", batchMs: 100 });
    const load = await runLoadClient(server.port, RATE, SECONDS);
    const accepted = await server.stop();
    stopped = true;
    const t = await red.settledTally(load.attempted, accepted);
    console.log(
      `into Node-RED: ${load.rate.toFixed(0)} conn/s achieved (${load.connected} connected, ${load.failed} failed); ` +
        `closes in the flow ${t.client} client + ${t.server} server of ${load.attempted} + ${accepted} in ${t.messages} messages; ` +
        `lost kernel ${t.lostKernel}, js ${t.lostJs}; skipped state changes ${t.skipped}; other sockets on the port ${t.foreign}; status "${t.status}"`,
    );
    expect(load.connected).toBeGreaterThan(0);
    expect(load.unfinished).toBe(0);
    expect(accepted).toBe(load.connected);
    expect(t.lostKernel).toBe(0);
    expect(t.lostJs).toBe(0);
    expect(t.mismatched).toBe(0);
    expect(t.client).toBe(load.attempted);
    expect(t.server).toBe(accepted);
    // Batched: far fewer messages than events.
    expect(t.messages).toBeLessThan((t.client + t.server) / 10);
    await red.clear();
  });
});

import type net from "node:net";
import { formatEndpoint } from "../net/ip";
import { socketFd, type NativeAddon, type SplicePumpHandle, type SystemCallError } from "../native";
import { connectFailed, type Ending, type ForwardControl, type UpstreamPlan } from "./connect";

/** Payload bytes each way, as the summary counts them. */
export interface Sides {
  bytesToUpstream: number;
  bytesToClient: number;
}

/** What both pumps need besides the sockets. */
export interface PumpContext {
  readonly control: ForwardControl;
  /** Counted by the pump; holds the replayed bytes already when it starts. */
  readonly counts: Sides;
  /** Sent upstream before anything the client sends now: the PROXY header and the replayed bytes. */
  readonly initial: Buffer;
  readonly idleMs: number;
  readonly noDelay: boolean;
  /** Replaces how the connection table reads the live counts (the splice pump asks the addon). */
  setLiveCounts(read: () => Sides): void;
  /** Called when the upstream socket's local port is known. */
  setUpstreamLocalPort(port: number): void;
}

/** Pipe size for the splice pump: 1 MiB moves a full socket buffer per wake-up. */
const PIPE_SIZE = 1 << 20;

function idleEnding(idleMs: number): Ending {
  return { end: "idle-timeout", error: { code: "ETIMEDOUT", message: `no bytes either way for ${idleMs} ms` } };
}

/**
 * Node streams with pipe() backpressure and half-close, until both sockets have closed.
 * A reset on one side is passed on to the other as a reset.
 */
export function pumpWithStreams(client: net.Socket, upstream: net.Socket, target: { address: string; port: number }, ctx: PumpContext): Promise<Ending> {
  const { counts, idleMs } = ctx;
  upstream.on("error", () => undefined);
  // Half-close: a FIN from one side must not end our write side towards it.
  client.allowHalfOpen = true;
  if (ctx.noDelay) upstream.setNoDelay(true);
  return new Promise((resolve) => {
    let clientError: NodeJS.ErrnoException | null = null;
    let upstreamError: NodeJS.ErrnoException | null = null;
    let idle = false;
    let closedSockets = 0;
    const idleTimer = idleMs > 0 ? setTimeout(() => {
      idle = true;
      upstream.destroy();
      client.destroy();
    }, idleMs) : null;
    idleTimer?.unref();
    const onClosed = (): void => {
      if (++closedSockets < 2) return;
      if (idleTimer !== null) clearTimeout(idleTimer);
      ctx.control.stopper = null;
      if (ctx.control.stopped) resolve({ end: "stopped" });
      else if (idle) resolve(idleEnding(idleMs));
      else if (clientError !== null) resolve({ end: "client-reset", error: { code: clientError.code ?? "ERR_FORWARD", message: `client: ${clientError.message}` } });
      else if (upstreamError !== null) resolve({ end: "upstream-reset", error: { code: upstreamError.code ?? "ERR_FORWARD", message: `upstream ${formatEndpoint(target.address, target.port)}: ${upstreamError.message}` } });
      else resolve({ end: "closed" });
    };
    client.once("close", onClosed);
    upstream.once("close", onClosed);
    client.on("error", (err: NodeJS.ErrnoException) => {
      clientError ??= err;
      // Pass the reset on rather than pretending an orderly end.
      if (!upstream.destroyed) upstream.resetAndDestroy();
    });
    upstream.on("error", (err: NodeJS.ErrnoException) => {
      upstreamError ??= err;
      if (!client.destroyed) client.resetAndDestroy();
    });
    ctx.control.stopper = () => {
      upstream.destroy();
      client.destroy();
    };
    client.on("data", (chunk: Buffer) => {
      counts.bytesToUpstream += chunk.length;
      idleTimer?.refresh();
    });
    upstream.on("data", (chunk: Buffer) => {
      counts.bytesToClient += chunk.length;
      idleTimer?.refresh();
    });
    // Once both directions have ended, nothing more can come: close both.
    let ends = 0;
    const onWriteDone = (): void => {
      if (++ends === 2) {
        client.destroy();
        upstream.destroy();
      }
    };
    client.once("finish", onWriteDone);
    upstream.once("finish", onWriteDone);
    // The replay bytes go first, in order; pipe() then takes over both ways.
    if (ctx.initial.length > 0) upstream.write(ctx.initial);
    client.pipe(upstream);
    upstream.pipe(client);
    if (client.readableEnded) upstream.end();
  });
}

/**
 * The addon connects (binding and marking as the plan says) and splices both ways on its
 * own threads: no Node socket for the upstream, and Node stops reading the client.
 */
export function pumpWithSplice(native: NativeAddon, client: net.Socket, plan: UpstreamPlan, ctx: PumpContext): Promise<Ending> {
  const { counts, idleMs } = ctx;
  let clientFd: number;
  try {
    clientFd = socketFd(client);
  } catch (err) {
    return Promise.resolve({ end: "client-reset", error: { code: "ECONNRESET", message: (err as Error).message } });
  }
  // Bytes Node already read past the replay (libuv reads ahead into the stream buffer
  // of a paused socket) go first too; then libuv must stop reading this fd for good.
  // Drain first: read() may restart libuv's reading, which readStop() below ends
  // before the loop turns (no read can happen in between).
  const buffered: Buffer[] = [];
  for (let chunk = client.read() as Buffer | null; chunk !== null; chunk = client.read() as Buffer | null) buffered.push(chunk);
  stopReading(client);
  const extra = buffered.length === 0 ? null : Buffer.concat(buffered);
  const firstBytes = extra === null ? ctx.initial : Buffer.concat([ctx.initial, extra]);
  const prefixToUpstream = counts.bytesToUpstream + (extra?.length ?? 0);
  return new Promise((resolve) => {
    let idle = false;
    let ended = false;
    let idleTicker: NodeJS.Timeout | null = null;
    let pump: SplicePumpHandle;
    const upstream = { ...plan.native, noDelay: ctx.noDelay };
    try {
      pump = new native.SplicePump(clientFd, upstream, PIPE_SIZE, firstBytes, (err, result) => {
        ended = true;
        ctx.control.stopper = null;
        if (idleTicker !== null) clearInterval(idleTicker);
        if (result.localPort !== 0) ctx.setUpstreamLocalPort(result.localPort);
        const side = (err as (SystemCallError & { side?: string }) | null)?.side === "a" ? "client" : "upstream";
        if (!result.connected && !result.stopped) {
          // Nothing reached the upstream: the replayed bytes were never sent.
          counts.bytesToUpstream = 0;
          if (err !== null && side === "client") resolve({ end: "client-reset", error: { code: err.code, message: "the client went away while connecting upstream" } });
          else resolve(connectFailed(err ?? { code: "ECONNABORTED", message: "the connect ended without an answer" }, plan));
          return;
        }
        counts.bytesToUpstream = result.connected ? prefixToUpstream + result.aToB : 0;
        counts.bytesToClient = result.bToA;
        if (result.stopped) resolve(idle ? idleEnding(idleMs) : { end: "stopped" });
        else if (err === null) resolve({ end: "closed" });
        else if (side === "client") resolve({ end: "client-reset", error: { code: err.code, message: `client: ${err.code}` } });
        else resolve({ end: "upstream-reset", error: { code: err.code, message: `upstream ${formatEndpoint(plan.target.address, plan.target.port)}: ${err.code}` } });
      });
    } catch (err) {
      resolve({ end: "error", error: { code: (err as SystemCallError).code, message: (err as Error).message } });
      return;
    }
    ctx.control.stopper = () => pump.stop();
    ctx.setLiveCounts(() => {
      if (ended) return counts;
      const c = pump.counts();
      return { bytesToUpstream: prefixToUpstream + c.aToB, bytesToClient: c.bToA };
    });
    if (idleMs > 0) {
      let last = -1;
      let lastChange = Date.now();
      idleTicker = setInterval(() => {
        const c = pump.counts();
        const sum = c.aToB + c.bToA;
        if (sum !== last) {
          last = sum;
          lastChange = Date.now();
        } else if (Date.now() - lastChange >= idleMs) {
          idle = true;
          pump.stop();
        }
      }, Math.max(50, Math.min(1000, Math.floor(idleMs / 4))));
      idleTicker.unref();
    }
  });
}

/** Stops libuv reading a socket for good: the addon's thread owns its bytes from now on. */
function stopReading(socket: net.Socket): void {
  const handle = (socket as unknown as { _handle: { reading?: boolean; readStop?: () => number } | null })._handle;
  if (handle !== null && typeof handle.readStop === "function") {
    handle.reading = false;
    handle.readStop();
  }
}

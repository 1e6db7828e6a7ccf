import dns from "node:dns";
import net from "node:net";
import os from "node:os";
import type { ConnectionInfo } from "../connection";
import { TrafficError } from "../errors";
import { formatEndpoint, tryParseIp } from "../net/ip";
import { loadNative, nativeAvailability, socketFd, type NativeAddon, type NativeConnectOptions, type SplicePumpHandle, type SystemCallError } from "../native";
import { encodeProxyHeaderV1, encodeProxyHeaderV2 } from "../proxy-protocol/encode";
import type { ForwardEnd, ForwardIdentity } from "../events/types";
import { connectionTable, type ClaimedConnection } from "../connection-table";

// How the upstream learns who the client is (ForwardIdentity) and how a connection ended
// (ForwardEnd) are part of the event contract (forward-summary): declared there, once.
export type { ForwardIdentity, ForwardEnd } from "../events/types";

/** How a rejected connection ends: an orderly FIN, or a reset. */
export type RejectMode = "fin" | "rst";

/** Who moves the bytes once both sockets are up: the addon's splice thread, or Node streams. */
export type PumpChoice = "auto" | "native" | "js";

/** An upstream address; `address` may be a host name for a fixed target. */
export interface ForwardTarget {
  readonly address: string;
  readonly port: number;
}

/** What `forwardConnection` does with one connection. */
export interface ForwardOptions {
  /** `original`: where the client meant to go (the connection's `originalDst`). */
  readonly target: ForwardTarget | "original";
  readonly identity?: ForwardIdentity;
  /** With `transparent`: bind the client's own port too (falls back to any port when taken). */
  readonly keepClientPort?: boolean;
  /** SO_MARK on upstream packets, so the listener's rules (its "skip mark") never capture them again. 0: none. */
  readonly mark?: number;
  /** Default 10 s; 0: the kernel's own limit. */
  readonly connectTimeoutMs?: number;
  /** Ends a connection with no bytes either way for this long; 0 (default): never. */
  readonly idleTimeoutMs?: number;
  /** TCP_NODELAY on both sockets (default true: a proxy should not add Nagle delays). */
  readonly noDelay?: boolean;
  readonly pump?: PumpChoice;
  /** PROXY v2 TLVs: the authority (SNI or Host) and the negotiated/offered ALPN. */
  readonly authority?: string;
  readonly alpn?: string;
}

/** The record of one handled connection: sent on close for the MQTT stage. */
export interface ForwardSummary {
  readonly id: string;
  readonly action: "forward" | "reject";
  readonly client: { readonly address: string; readonly port: number };
  /** The resolved upstream; null for a reject or when none could be chosen. */
  readonly target: { readonly address: string; readonly port: number } | null;
  readonly identity: ForwardIdentity;
  /** Who moved the bytes; null when no upstream connection was made. */
  readonly pump: "native" | "js" | null;
  /** Payload bytes client → upstream (sniffed bytes included, PROXY header not). */
  readonly bytesToUpstream: number;
  /** Payload bytes upstream → client. */
  readonly bytesToClient: number;
  readonly startedAt: number;
  readonly durationMs: number;
  readonly end: ForwardEnd;
  /** Why it failed: `code` is the errno name (ECONNREFUSED, ETIMEDOUT, EPERM, …) or an ERR_FORWARD_ code. */
  readonly error?: { readonly code: string; readonly message: string };
  /** The local port of the upstream socket, when known (with `transparent`: on the client's address). */
  readonly upstreamLocalPort?: number;
  /** Absent: `tcp`. */
  readonly protocol?: "tcp" | "udp";
  /** UDP: datagrams client → upstream, upstream → client, and client datagrams not sent on. */
  readonly datagramsToUpstream?: number;
  readonly datagramsToClient?: number;
  readonly datagramsDropped?: number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Pipe size for the splice pump: 1 MiB moves a full socket buffer per wake-up. */
const PIPE_SIZE = 1 << 20;

/** Which pump `auto` means; set from the benchmark's verdict (bench/forward.bench.ts). */
let autoPump: "native" | "js" = "native";

/** Chooses what `pump: "auto"` uses (the benchmark measures both). */
export function setAutoPump(choice: "native" | "js"): void {
  autoPump = choice;
}

function nativeOrNull(): NativeAddon | null {
  try {
    return loadNative();
  } catch {
    return null;
  }
}

function isLocalAddress(address: string): boolean {
  const ip = tryParseIp(address);
  if (ip === null) return false;
  const text = ip.text;
  if (text === "0.0.0.0" || text === "::" || text === "::1" || text.startsWith("127.")) return true;
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.address === text) return true;
  }
  return false;
}

/**
 * Why forwarding `info` to `target` would dial the listener itself, or null. Under
 * REDIRECT and plain the accepting socket's address is the listener's own; a target on
 * this host at that port comes straight back. (Under TPROXY the local address is the
 * original destination, and the upstream socket leaves through OUTPUT, which the TPROXY
 * rule does not see.)
 */
export function loopReason(info: ConnectionInfo, target: { address: string; port: number }): string | null {
  if (info.mode === "tproxy" || target.port !== info.localPort) return null;
  const same = tryParseIp(target.address)?.text === tryParseIp(info.localAddress)?.text;
  if (same || isLocalAddress(target.address)) {
    return `the target ${formatEndpoint(target.address, target.port)} is the listener itself (it accepted this connection on ${formatEndpoint(info.localAddress, info.localPort)}): forwarding would loop`;
  }
  return null;
}

/** The address the upstream should see as the client: a PROXY header's source when the listener read one, else the socket peer. */
export function clientOf(info: ConnectionInfo): { address: string; port: number } {
  const p = info.proxy;
  if (p !== undefined && p.command === "proxy" && p.sourceAddress !== undefined && p.sourcePort !== undefined) {
    return { address: p.sourceAddress, port: p.sourcePort };
  }
  return { address: info.remoteAddress, port: info.remotePort };
}

/** The upstream address of a target: the original destination, an IP address, or a host name looked up. */
export async function resolveTarget(info: ConnectionInfo, target: ForwardOptions["target"]): Promise<{ address: string; port: number }> {
  if (target === "original") {
    if (info.originalDst === undefined) {
      const why = info.originalDstError === undefined ? `mode ${info.mode} has none` : `${info.originalDstError.code}: ${info.originalDstError.message}`;
      throw new TrafficError("ERR_FORWARD_TARGET", `the connection has no original destination (${why}); choose a fixed target`, "target");
    }
    return { address: info.originalDst.address, port: info.originalDst.port };
  }
  if (typeof target !== "object" || target === null) throw new TrafficError("ERR_FORWARD_TARGET", "must be \"original\" or { address, port }", "target");
  const { address, port } = target;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TrafficError("ERR_FORWARD_TARGET", `port must be 1-65535, got ${JSON.stringify(port)}`, "target");
  if (typeof address !== "string" || address === "" || address.length > 253) throw new TrafficError("ERR_FORWARD_TARGET", "address must be an IP address or host name", "target");
  const ip = tryParseIp(address.replace(/^\[(.*)\]$/, "$1"));
  if (ip !== null) return { address: ip.text, port };
  if (!/^[A-Za-z0-9.-]+$/.test(address)) throw new TrafficError("ERR_FORWARD_TARGET", `not an IP address or host name: ${JSON.stringify(address.slice(0, 64))}`, "target");
  try {
    const found = await dns.promises.lookup(address);
    return { address: found.address, port };
  } catch (err) {
    throw new TrafficError("ERR_FORWARD_TARGET", `cannot resolve ${address}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, "target");
  }
}

/** The PROXY header to send first, or an empty buffer. */
export function identityHeader(identity: ForwardIdentity, info: ConnectionInfo, options: Pick<ForwardOptions, "authority" | "alpn">): Buffer {
  if (identity !== "proxy-v1" && identity !== "proxy-v2") return Buffer.alloc(0);
  const source = clientOf(info);
  const destination = info.originalDst ?? { address: info.localAddress, port: info.localPort };
  const endpoints = { source, destination: { address: destination.address, port: destination.port } };
  if (identity === "proxy-v1") return encodeProxyHeaderV1(endpoints);
  return encodeProxyHeaderV2({
    ...endpoints,
    ...(options.authority === undefined || options.authority === "" ? {} : { authority: options.authority }),
    ...(options.alpn === undefined || options.alpn === "" ? {} : { alpn: options.alpn }),
  });
}

/** Words a failed connect for an operator: what the errno means here and what to do. */
export function describeConnectError(err: { code?: string; message: string }, target: { address: string; port: number }, identity: ForwardIdentity, client: { address: string }): string {
  const to = formatEndpoint(target.address, target.port);
  switch (err.code) {
    case "ECONNREFUSED":
      return `upstream ${to} refused the connection (nothing listens there)`;
    case "ETIMEDOUT":
      return identity === "transparent"
        ? `no answer from upstream ${to}: with source preservation its replies go to ${client.address}, so they must be routed back through this host ` +
            "(the upstream's route to the client must point at this gateway, and the TPROXY rules that deliver packets of transparent sockets locally must be in place)"
        : `no answer from upstream ${to} within the connect timeout`;
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return `upstream ${to} is unreachable from this host (${err.code}): no route`;
    case "EPERM":
    case "EACCES":
      return identity === "transparent"
        ? "binding the client's address (IP_TRANSPARENT) and marking sockets (SO_MARK) need CAP_NET_ADMIN (or CAP_NET_RAW): run Node-RED with AmbientCapabilities=CAP_NET_ADMIN, or use identity none/PROXY"
        : `connecting to ${to} was not permitted (${err.code}): SO_MARK needs CAP_NET_ADMIN (or CAP_NET_RAW), or a firewall rule rejects it`;
    case "EADDRNOTAVAIL":
      return `cannot bind ${client.address} for ${to}: address not available (EADDRNOTAVAIL)`;
    default:
      return `connecting to ${to} failed: ${err.message}`;
  }
}

interface Sides {
  bytesToUpstream: number;
  bytesToClient: number;
}

/** A running forward: stop() ends it at once (summary end "stopped"). */
export interface ForwardSession {
  readonly id: string;
  readonly done: Promise<ForwardSummary>;
  stop(): void;
}

/**
 * Forwards a claimed connection: resolves the target, refuses a loop, connects (with the
 * chosen client identity), writes the PROXY header and the replay bytes first, then moves
 * bytes both ways with backpressure and half-close until both sides are done. Never
 * rejects: every failure ends in the summary, and the client socket is always closed.
 */
export function forwardConnection(conn: ClaimedConnection, options: ForwardOptions): ForwardSession {
  const startedAt = Date.now();
  const info = conn.info;
  const client = conn.socket;
  const identity = options.identity ?? "none";
  const counts: Sides = { bytesToUpstream: 0, bytesToClient: 0 };
  /** Bytes so far: the JS pump counts as it goes; the native pump is asked (see runNativePump). */
  let liveCounts = (): Sides => counts;
  let target: { address: string; port: number } | null = null;
  let pumpUsed: "native" | "js" | null = null;
  let upstreamLocalPort: number | undefined;
  let stopper: (() => void) | null = null;
  let stopped = false;
  let settle: (s: ForwardSummary) => void = () => undefined;
  const done = new Promise<ForwardSummary>((resolve) => (settle = resolve));
  let finished = false;
  // Errors of the client socket must never go uncaught while we are connecting.
  const swallow = (): void => undefined;
  client.on("error", swallow);

  const finish = (end: ForwardEnd, error?: { code?: string; message: string }): void => {
    if (finished) return;
    finished = true;
    if (!client.destroyed) client.destroy();
    settle({
      id: conn.id,
      action: "forward",
      client: clientOf(info),
      target,
      identity,
      pump: pumpUsed,
      bytesToUpstream: counts.bytesToUpstream,
      bytesToClient: counts.bytesToClient,
      startedAt,
      durationMs: Date.now() - startedAt,
      end,
      ...(error === undefined ? {} : { error: { code: error.code ?? "ERR_FORWARD", message: error.message } }),
      ...(upstreamLocalPort === undefined ? {} : { upstreamLocalPort }),
    });
  };

  const run = async (): Promise<void> => {
    try {
      target = await resolveTarget(info, options.target);
    } catch (err) {
      finish("no-target", err as TrafficError);
      return;
    }
    if (stopped) {
      finish("stopped");
      return;
    }
    const loop = loopReason(info, target);
    if (loop !== null) {
      finish("loop", new TrafficError("ERR_FORWARD_LOOP", loop, "target"));
      return;
    }
    const who = clientOf(info);
    const targetFamily = net.isIPv6(target.address) ? 6 : 4;
    if (identity === "transparent" && (net.isIPv6(who.address) ? 6 : 4) !== targetFamily) {
      finish("connect-failed", new TrafficError("ERR_FORWARD_TARGET", `cannot preserve the IPv${targetFamily === 6 ? 4 : 6} client ${who.address} towards the IPv${targetFamily} upstream ${formatEndpoint(target.address, target.port)}`, "identity"));
      return;
    }
    let header: Buffer;
    try {
      header = identityHeader(identity, info, options);
    } catch (err) {
      finish("error", err as TrafficError);
      return;
    }
    const native = nativeOrNull();
    const choice = options.pump ?? "auto";
    const wantNativePump = choice === "native" || (choice === "auto" && autoPump === "native");
    const mark = options.mark ?? 0;
    const needsNative = identity === "transparent" || mark !== 0 || choice === "native";
    // Only a bind to the client's address or a mark needs the addon's connect; a plain
    // connect is cheaper through libuv, and its fd can still go to the native pump.
    const nativeConnect = identity === "transparent" || mark !== 0;
    if (needsNative && native === null) {
      const why = nativeAvailability();
      const what = identity === "transparent" ? "source preservation" : mark !== 0 ? "SO_MARK" : "the native pump";
      finish("error", new TrafficError("ERR_NATIVE_UNAVAILABLE", `${what} needs the native addon: ${why.available ? "" : why.reason}`, "native addon"));
      return;
    }
    const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const noDelay = options.noDelay !== false;
    if (noDelay && !client.destroyed) client.setNoDelay(true);
    const initial = conn.replay.length > 0 ? (header.length > 0 ? Buffer.concat([header, conn.replay]) : conn.replay) : header;
    counts.bytesToUpstream = conn.replay.length;

    const useNativePump = native !== null && wantNativePump;
    if (native !== null && useNativePump) {
      // The addon connects and pumps on its own threads: no Node socket for the upstream.
      runNativePump(native, {
        address: target.address,
        port: target.port,
        ...(identity === "transparent" ? { localAddress: who.address, localPort: options.keepClientPort === true ? who.port : 0, transparent: true } : {}),
        mark,
        timeoutMs,
        noDelay,
      }, initial, who);
      return;
    }
    if (native !== null && nativeConnect) {
      let fd: number;
      try {
        const connected = await native.connectUpstream({
          address: target.address,
          port: target.port,
          ...(identity === "transparent" ? { localAddress: who.address, localPort: options.keepClientPort === true ? who.port : 0, transparent: true } : {}),
          mark,
          timeoutMs,
        });
        fd = connected.fd;
        upstreamLocalPort = connected.localPort;
      } catch (err) {
        const e = err as SystemCallError;
        finish("connect-failed", { code: e.code, message: describeConnectError(e, target, identity, who) });
        return;
      }
      if (stopped || client.destroyed) {
        native.closeFd(fd);
        finish(stopped ? "stopped" : "client-reset", stopped ? undefined : { code: "ECONNRESET", message: "the client went away while connecting upstream" });
        return;
      }
      const upstream = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
      runJsPump(upstream, initial);
      return;
    }
    // Plain connect from Node: no bind, no mark.
    const upstream = net.connect({ host: target.address, port: target.port, allowHalfOpen: true });
    upstream.on("error", swallow);
    const t = target;
    // The connect phase's listeners go once it is over: an error later in the stream
    // (a reset) belongs to the pump, which passes it on to the client.
    let detach = (): void => undefined;
    const ok = await new Promise<boolean>((resolve) => {
      const timer = timeoutMs > 0 ? setTimeout(() => upstream.destroy(Object.assign(new Error("connect timed out"), { code: "ETIMEDOUT" })), timeoutMs) : null;
      stopper = () => upstream.destroy();
      const onConnect = (): void => {
        if (timer !== null) clearTimeout(timer);
        resolve(true);
      };
      const onClose = (): void => {
        if (timer !== null) clearTimeout(timer);
        resolve(false);
      };
      const onError = (err: NodeJS.ErrnoException): void => {
        if (timer !== null) clearTimeout(timer);
        if (!stopped) finish("connect-failed", { code: err.code ?? "ERR_FORWARD", message: describeConnectError({ code: err.code, message: err.message }, t, identity, who) });
        resolve(false);
      };
      upstream.once("connect", onConnect);
      upstream.once("close", onClose);
      upstream.once("error", onError);
      detach = () => {
        upstream.off("connect", onConnect);
        upstream.off("close", onClose);
        upstream.off("error", onError);
      };
    });
    detach();
    if (!ok) {
      if (stopped) finish("stopped");
      else finish("connect-failed", { code: "ECONNABORTED", message: `connecting to ${formatEndpoint(t.address, t.port)} was aborted` });
      return;
    }
    if (client.destroyed) {
      upstream.destroy();
      finish("client-reset", { code: "ECONNRESET", message: "the client went away while connecting upstream" });
      return;
    }
    upstreamLocalPort = upstream.localPort;
    runJsPump(upstream, initial);
  };

  // ---- the JS pump: Node streams with pipe() backpressure ----
  const runJsPump = (upstream: net.Socket, initial: Buffer): void => {
    pumpUsed = "js";
    upstream.on("error", swallow);
    // Half-close: a FIN from one side must not end our write side towards it.
    client.allowHalfOpen = true;
    if (options.noDelay !== false) upstream.setNoDelay(true);
    let clientError: NodeJS.ErrnoException | null = null;
    let upstreamError: NodeJS.ErrnoException | null = null;
    let idle = false;
    let closedSockets = 0;
    const idleMs = options.idleTimeoutMs ?? 0;
    const idleTimer = idleMs > 0 ? setTimeout(() => {
      idle = true;
      upstream.destroy();
      client.destroy();
    }, idleMs) : null;
    idleTimer?.unref();
    const onClosed = (): void => {
      if (++closedSockets < 2) return;
      if (idleTimer !== null) clearTimeout(idleTimer);
      if (stopped) finish("stopped");
      else if (idle) finish("idle-timeout", { code: "ETIMEDOUT", message: `no bytes either way for ${idleMs} ms` });
      else if (clientError !== null) finish("client-reset", { code: clientError.code ?? "ERR_FORWARD", message: `client: ${clientError.message}` });
      else if (upstreamError !== null) finish("upstream-reset", { code: upstreamError.code ?? "ERR_FORWARD", message: `upstream ${formatEndpoint(target!.address, target!.port)}: ${upstreamError.message}` });
      else finish("closed");
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
    stopper = () => {
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
    if (initial.length > 0) upstream.write(initial);
    client.pipe(upstream);
    upstream.pipe(client);
    if (client.readableEnded) upstream.end();
  };

  // ---- the native pump: the addon connects, then splices on its threads ----
  const runNativePump = (native: NativeAddon, upstream: NativeConnectOptions & { noDelay: boolean }, initial: Buffer, who: { address: string; port: number }): void => {
    pumpUsed = "native";
    let clientFd: number;
    try {
      clientFd = socketFd(client);
    } catch (err) {
      finish("client-reset", { code: "ECONNRESET", message: (err as Error).message });
      return;
    }
    // Bytes Node already read past the replay (libuv reads ahead into the stream buffer
    // of a paused socket) go first too; then libuv must stop reading this fd for good.
    // Drain first: read() may restart libuv's reading, which readStop() below ends
    // before the loop turns (no read can happen in between).
    const buffered: Buffer[] = [];
    for (let chunk = client.read() as Buffer | null; chunk !== null; chunk = client.read() as Buffer | null) buffered.push(chunk);
    stopReading(client);
    const extra = buffered.length === 0 ? null : Buffer.concat(buffered);
    const firstBytes = extra === null ? initial : Buffer.concat([initial, extra]);
    const prefixToUpstream = counts.bytesToUpstream + (extra?.length ?? 0);
    const idleMs = options.idleTimeoutMs ?? 0;
    let idle = false;
    let idleTicker: NodeJS.Timeout | null = null;
    let pump: SplicePumpHandle;
    try {
      pump = new native.SplicePump(clientFd, upstream, PIPE_SIZE, firstBytes, (err, result) => {
        if (idleTicker !== null) clearInterval(idleTicker);
        if (result.localPort !== 0) upstreamLocalPort = result.localPort;
        if (!result.connected && !result.stopped) {
          // Nothing reached the upstream: the replayed bytes were never sent.
          counts.bytesToUpstream = 0;
          if (err !== null && (err as SystemCallError & { side?: string }).side === "a") {
            finish("client-reset", { code: err.code, message: "the client went away while connecting upstream" });
          } else {
            const e = err ?? { code: "ECONNABORTED", message: "the connect ended without an answer" };
            finish("connect-failed", { code: e.code, message: describeConnectError(e, target!, identity, who) });
          }
          return;
        }
        counts.bytesToUpstream = result.connected ? prefixToUpstream + result.aToB : 0;
        counts.bytesToClient = result.bToA;
        if (result.stopped) {
          if (idle) finish("idle-timeout", { code: "ETIMEDOUT", message: `no bytes either way for ${idleMs} ms` });
          else finish("stopped");
        } else if (err !== null) {
          const side = (err as SystemCallError & { side?: string }).side === "a" ? "client" : "upstream";
          finish(side === "client" ? "client-reset" : "upstream-reset", { code: err.code, message: `${side === "client" ? "client" : `upstream ${formatEndpoint(target!.address, target!.port)}`}: ${err.code}` });
        } else {
          finish("closed");
        }
      });
    } catch (err) {
      finish("error", { code: (err as SystemCallError).code, message: (err as Error).message });
      return;
    }
    stopper = () => pump.stop();
    liveCounts = () => {
      if (finished) return counts;
      const c = pump.counts();
      return { bytesToUpstream: prefixToUpstream + c.aToB, bytesToClient: c.bToA };
    };
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
  };

  const stop = (): void => {
    if (finished || stopped) return;
    stopped = true;
    if (stopper !== null) stopper();
  };
  // The table (a listener closing, a redeploy) ends this connection through stop(): the
  // native pump holds its own duplicate of the client's fd, and closing Node's socket
  // alone would leave it pumping.
  connectionTable().onEnd(conn.id, conn.owner, stop);
  connectionTable().onBytes(conn.id, conn.owner, () => {
    const c = liveCounts();
    return { toUpstream: c.bytesToUpstream, toClient: c.bytesToClient };
  });
  void run();
  return { id: conn.id, done, stop };
}

/** Stops libuv reading a socket for good: the addon's thread owns its bytes from now on. */
function stopReading(socket: net.Socket): void {
  const handle = (socket as unknown as { _handle: { reading?: boolean; readStop?: () => number } | null })._handle;
  if (handle !== null && typeof handle.readStop === "function") {
    handle.reading = false;
    handle.readStop();
  }
}

/**
 * Rejects a claimed connection: `fin` sends an orderly end (unread client bytes are read
 * and dropped so the kernel does not answer them with a reset), `rst` resets it.
 */
export function rejectConnection(conn: ClaimedConnection, mode: RejectMode): Promise<ForwardSummary> {
  const startedAt = Date.now();
  const client = conn.socket;
  const summary = (): ForwardSummary => ({
    id: conn.id,
    action: "reject",
    client: clientOf(conn.info),
    target: null,
    identity: "none",
    pump: null,
    bytesToUpstream: 0,
    bytesToClient: 0,
    startedAt,
    durationMs: Date.now() - startedAt,
    end: "rejected",
  });
  return new Promise((resolve) => {
    client.on("error", () => undefined);
    if (client.destroyed) {
      resolve(summary());
      return;
    }
    client.once("close", () => resolve(summary()));
    if (mode === "rst") {
      client.resetAndDestroy();
      return;
    }
    // A peer that never closes its side must not hold the socket: end it after a while.
    const timer = setTimeout(() => client.destroy(), 5000);
    timer.unref();
    client.once("close", () => clearTimeout(timer));
    client.allowHalfOpen = true;
    client.on("data", () => undefined);
    client.once("end", () => client.destroy());
    client.end();
    client.resume();
  });
}

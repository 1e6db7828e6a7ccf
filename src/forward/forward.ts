import dns from "node:dns";
import net from "node:net";
import os from "node:os";
import type { ConnectionInfo } from "../connection";
import { TrafficError } from "../errors";
import { formatEndpoint, tryParseIp } from "../net/ip";
import { loadNative, nativeAvailability, type NativeAddon } from "../native";
import { encodeProxyHeaderV1, encodeProxyHeaderV2 } from "../proxy-protocol/encode";
import type { ForwardEnd, ForwardIdentity } from "../events/types";
import { connectionTable, type ClaimedConnection } from "../connection-table";
import { connectWithAddon, connectWithNode, isEnding, type Ending, type ForwardControl, type UpstreamPlan } from "./connect";
import { pumpWithSplice, pumpWithStreams, type PumpContext, type Sides } from "./pumps";

export { describeConnectError } from "./connect";

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

/** A running forward: stop() ends it at once (summary end "stopped"). */
export interface ForwardSession {
  readonly id: string;
  readonly done: Promise<ForwardSummary>;
  stop(): void;
}

/** What a forward decided before any upstream socket exists: the connect strategy and the pump. */
interface ForwardPlan extends UpstreamPlan {
  /** The splice pump (the addon connects too), or Node streams after `connect`. */
  readonly pump: "native" | "js";
  /** Only a bind to the client's address or a mark needs the addon's connect; a plain connect is cheaper through libuv. */
  readonly connect: "addon" | "node";
  readonly addon: NativeAddon | null;
  readonly initial: Buffer;
}

/** Checks and choices before connecting: the target, the loop guard, the client's identity, the addon. */
async function planForward(conn: ClaimedConnection, options: ForwardOptions, control: ForwardControl, resolved: (target: { address: string; port: number }) => void): Promise<ForwardPlan | Ending> {
  const info = conn.info;
  const identity = options.identity ?? "none";
  let target: { address: string; port: number };
  try {
    target = await resolveTarget(info, options.target);
  } catch (err) {
    return { end: "no-target", error: err as TrafficError };
  }
  resolved(target);
  if (control.stopped) return { end: "stopped" };
  const loop = loopReason(info, target);
  if (loop !== null) return { end: "loop", error: new TrafficError("ERR_FORWARD_LOOP", loop, "target") };
  const who = clientOf(info);
  const targetFamily = net.isIPv6(target.address) ? 6 : 4;
  if (identity === "transparent" && (net.isIPv6(who.address) ? 6 : 4) !== targetFamily) {
    return { end: "connect-failed", error: new TrafficError("ERR_FORWARD_TARGET", `cannot preserve the IPv${targetFamily === 6 ? 4 : 6} client ${who.address} towards the IPv${targetFamily} upstream ${formatEndpoint(target.address, target.port)}`, "identity") };
  }
  let header: Buffer;
  try {
    header = identityHeader(identity, info, options);
  } catch (err) {
    return { end: "error", error: err as TrafficError };
  }
  const addon = nativeOrNull();
  const choice = options.pump ?? "auto";
  const mark = options.mark ?? 0;
  const needsNative = identity === "transparent" || mark !== 0 || choice === "native";
  if (needsNative && addon === null) {
    const why = nativeAvailability();
    const what = identity === "transparent" ? "source preservation" : mark !== 0 ? "SO_MARK" : "the native pump";
    return { end: "error", error: new TrafficError("ERR_NATIVE_UNAVAILABLE", `${what} needs the native addon: ${why.available ? "" : why.reason}`, "native addon") };
  }
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const wantNativePump = choice === "native" || (choice === "auto" && autoPump === "native");
  return {
    target,
    who,
    identity,
    timeoutMs,
    native: {
      address: target.address,
      port: target.port,
      ...(identity === "transparent" ? { localAddress: who.address, localPort: options.keepClientPort === true ? who.port : 0, transparent: true } : {}),
      mark,
      timeoutMs,
    },
    pump: addon !== null && wantNativePump ? "native" : "js",
    connect: addon !== null && (identity === "transparent" || mark !== 0) ? "addon" : "node",
    addon,
    initial: conn.replay.length > 0 ? (header.length > 0 ? Buffer.concat([header, conn.replay]) : conn.replay) : header,
  };
}

/**
 * Forwards a claimed connection: resolves the target, refuses a loop, connects (with the
 * chosen client identity), writes the PROXY header and the replay bytes first, then moves
 * bytes both ways with backpressure and half-close until both sides are done. Never
 * rejects: every failure ends in the summary, and the client socket is always closed.
 * The steps (plan, connect strategy, pump) each return how the forward ended, so the
 * summary is written in one place.
 */
export function forwardConnection(conn: ClaimedConnection, options: ForwardOptions): ForwardSession {
  const startedAt = Date.now();
  const client = conn.socket;
  const counts: Sides = { bytesToUpstream: 0, bytesToClient: 0 };
  /** Bytes so far: the JS pump counts as it goes; the splice pump is asked. */
  let liveCounts = (): Sides => counts;
  let target: { address: string; port: number } | null = null;
  let pumpUsed: "native" | "js" | null = null;
  let upstreamLocalPort: number | undefined;
  const control: ForwardControl = { stopped: false, stopper: null };
  let finished = false;
  // Errors of the client socket must never go uncaught while we are connecting.
  client.on("error", () => undefined);

  const summary = (ending: Ending): ForwardSummary => {
    finished = true;
    if (!client.destroyed) client.destroy();
    const error = ending.error;
    return {
      id: conn.id,
      action: "forward",
      client: clientOf(conn.info),
      target,
      identity: options.identity ?? "none",
      pump: pumpUsed,
      bytesToUpstream: counts.bytesToUpstream,
      bytesToClient: counts.bytesToClient,
      startedAt,
      durationMs: Date.now() - startedAt,
      end: ending.end,
      ...(error === undefined ? {} : { error: { code: error.code ?? "ERR_FORWARD", message: error.message } }),
      ...(upstreamLocalPort === undefined ? {} : { upstreamLocalPort }),
    };
  };

  const run = async (): Promise<Ending> => {
    const plan = await planForward(conn, options, control, (t) => (target = t));
    if (isEnding(plan)) return plan;
    if (options.noDelay !== false && !client.destroyed) client.setNoDelay(true);
    counts.bytesToUpstream = conn.replay.length;
    const ctx: PumpContext = {
      control,
      counts,
      initial: plan.initial,
      idleMs: options.idleTimeoutMs ?? 0,
      noDelay: options.noDelay !== false,
      setLiveCounts: (read) => (liveCounts = read),
      setUpstreamLocalPort: (port) => (upstreamLocalPort = port),
    };
    if (plan.pump === "native") {
      pumpUsed = "native";
      return pumpWithSplice(plan.addon!, client, plan, ctx);
    }
    const connected = plan.connect === "addon" ? await connectWithAddon(plan.addon!, plan, client, control) : await connectWithNode(plan, client, control);
    if (isEnding(connected)) return connected;
    upstreamLocalPort = connected.localPort;
    pumpUsed = "js";
    return pumpWithStreams(client, connected.upstream, plan.target, ctx);
  };

  const stop = (): void => {
    if (finished || control.stopped) return;
    control.stopped = true;
    control.stopper?.();
  };
  // The table (a listener closing, a redeploy) ends this connection through stop(): the
  // native pump holds its own duplicate of the client's fd, and closing Node's socket
  // alone would leave it pumping.
  connectionTable().onEnd(conn.id, conn.owner, stop);
  connectionTable().onBytes(conn.id, conn.owner, () => {
    const c = liveCounts();
    return { toUpstream: c.bytesToUpstream, toClient: c.bytesToClient };
  });
  const done = run().then(summary, (err: Error) => summary({ end: "error", error: { message: err.message } }));
  return { id: conn.id, done, stop };
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

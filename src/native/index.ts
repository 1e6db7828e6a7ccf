import fs from "node:fs";
import type net from "node:net";
import path from "node:path";
import { TrafficError } from "../errors";
import { addonFile, prebuildTarget } from "./addon-dir";

/** An address and port as the kernel reports it; IPv4-mapped IPv6 is given as IPv4. */
export interface SocketAddress {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** Options of a listening socket made by the addon. */
export interface NativeListenOptions {
  /** IPv4 or IPv6 address to bind; "::" with `v6Only: false` is dual-stack. */
  readonly address: string;
  readonly port: number;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT: accept connections for foreign addresses (TPROXY). Needs CAP_NET_ADMIN. */
  readonly transparent?: boolean;
  /** IP_FREEBIND: bind an address not (yet) configured on this host. */
  readonly freebind?: boolean;
  /** SO_REUSEADDR, on by default like Node's own listeners. */
  readonly reuseAddr?: boolean;
  /** SO_REUSEPORT: several listeners share the port, the kernel spreads connections. */
  readonly reusePort?: boolean;
  /** IPV6_V6ONLY for IPv6 addresses (default false: dual-stack). */
  readonly v6Only?: boolean;
  readonly backlog?: number;
  /** A bound UDP socket instead of a listening TCP one (with `transparent`, IP_RECVORIGDSTADDR set too), for a UdpRelay. */
  readonly udp?: boolean;
}

/** Socket options read back from a socket. */
export interface SocketOptionFlags {
  readonly transparent: boolean;
  readonly freebind: boolean;
  readonly reuseAddr: boolean;
  readonly reusePort: boolean;
  readonly v6Only: boolean;
}

/**
 * An error of a system call in the addon: `code` is the errno name (ENOENT, EPERM, …),
 * the message ends with what the operator can do about it.
 */
export interface SystemCallError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
}

/** The addon's surface (native/transparent.cc). */
export interface NativeAddon {
  createListener(options: NativeListenOptions): number;
  getOriginalDst(fd: number): SocketAddress;
  getLocalAddress(fd: number): SocketAddress;
  getPeerAddress(fd: number): SocketAddress;
  /** "family,address,port" of local and peer, then errno and the original destination: see native/transparent.cc. */
  acceptedInfo(fd: number, readOriginalDst: boolean): string;
  describeErrno(errno: number, syscall: string): { code: string; message: string };
  closeFd(fd: number): void;
  socketOptions(fd: number): SocketOptionFlags;
  /**
   * A connected non-blocking TCP socket (optionally transparent-bound and marked): see
   * native/connect.cc. The handshake is awaited on the event loop, not on a pool thread.
   */
  connectUpstream(options: NativeConnectOptions): Promise<NativeConnected>;
  /** TCP_NODELAY on a raw socket fd. */
  setNoDelay(fd: number): void;
  /** Drops bytes the peer sent that nobody read (so a close sends FIN, not RST); returns how many. */
  discardInput(fd: number): number;
  /**
   * Starts a splice pump on the addon's shared pump threads between the socket `fdA` and
   * either the connected socket `fdB` or an upstream connection the pump makes itself. The
   * pump works on its own duplicates of `fdA` and `fdB` (and on the socket it connected)
   * and closes only those at its end: the caller still closes its own fds, and closing them
   * early does not end the pump; `stop()` does.
   */
  readonly SplicePump: new (fdA: number, fdB: number | (NativeConnectOptions & { readonly noDelay?: boolean }), pipeSize: number, initialForB: Buffer, callback: (err: SystemCallError | null, result: SplicePumpResult) => void) => SplicePumpHandle;
  /** UDP sessions on a socket from createListener({ udp: true }): see native/udp.cc. Takes the fd over. */
  readonly UdpRelay: new (fd: number, options: UdpRelayOptions, callback: (events: UdpRelayEvent[]) => void) => UdpRelayHandle;
  /**
   * Draws the tables of the ClientHello fingerprint cache key (once per process) and gives
   * the shape slots (src/classify/fingerprint.ts, 20 of them) that helloKey reads: this
   * environment's memory. Throws ENOSYS without getrandom.
   */
  helloKeyInit(): Int32Array;
  /**
   * The fingerprint cache keys of a ClientHello whose parts the shape slots locate, written
   * to slots 16-19, with 1 in slot 15 (0 when a recorded range lies outside `hello`).
   */
  helloKey(hello: Buffer): void;
  readonly abiVersion: number;
}

/** Limits of a UdpRelay. */
export interface UdpRelayOptions {
  /** The socket is transparent (TPROXY): replies leave from a socket bound to the original destination. */
  readonly transparent: boolean;
  readonly idleTimeoutMs: number;
  readonly maxSessions: number;
  /** Datagrams of an undecided session copied to JS (the first comes with the session). */
  readonly sniffDatagrams: number;
}

/** What a UdpRelay reports, in batches. */
export type UdpRelayEvent =
  | { readonly type: "session"; readonly id: number; readonly client: SocketAddress; readonly dst: SocketAddress; readonly datagram: Buffer }
  | { readonly type: "datagram"; readonly id: number; readonly datagram: Buffer }
  | UdpSessionEnd;

/** A UDP session ended: why, and its counts. */
export interface UdpSessionEnd {
  readonly type: "end";
  readonly id: number;
  readonly reason: "idle" | "closed" | "listener-closed";
  readonly datagramsFromClient: number;
  readonly bytesFromClient: number;
  readonly datagramsToClient: number;
  readonly bytesToClient: number;
  /** Client datagrams not sent on (rejected, over the queue while undecided, refused by the kernel). */
  readonly dropped: number;
}

/** A running UdpRelay. */
export interface UdpRelayHandle {
  /** Connects the session upstream (NativeConnectOptions, without timeoutMs) and relays both ways; false when the session is gone. */
  forward(id: number, options: NativeConnectOptions): { readonly localPort: number; readonly portFellBack: boolean } | false;
  /** Drops the session's datagrams until it idles out; with `icmp`, answers them with port unreachable. False when gone. */
  reject(id: number, icmp: boolean): boolean;
  /** Ends a session now; its summary, or null when it is gone. */
  end(id: number): UdpSessionEnd | null;
  /** Ends every session and closes the socket; their summaries. */
  close(): UdpSessionEnd[];
  stats(): { readonly sessions: number; readonly datagrams: number; readonly overCap: number; readonly queueDropped: number; readonly noOriginalDst: number } | null;
  address(): SocketAddress | null;
  setLimits(idleTimeoutMs: number, maxSessions: number): void;
}

/** Options of a native upstream connect. */
export interface NativeConnectOptions {
  readonly address: string;
  readonly port: number;
  /** Bind this local address first (with `transparent`, a foreign one: the client's). */
  readonly localAddress?: string;
  /** 0 (default): any port; else this port, falling back to any when it is taken and `portFallback`. */
  readonly localPort?: number;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT before bind: needs CAP_NET_ADMIN. */
  readonly transparent?: boolean;
  /** SO_MARK on every packet of the socket (0: none): needs CAP_NET_ADMIN. */
  readonly mark?: number;
  readonly portFallback?: boolean;
  /** 0: the kernel's own SYN retry limit. */
  readonly timeoutMs?: number;
}

/** A connected upstream socket made by the addon. */
export interface NativeConnected {
  readonly fd: number;
  readonly localPort: number;
  /** True when the client's port was asked for but taken, and another was used. */
  readonly portFellBack: boolean;
}

/** Bytes a splice pump moved, and whether it was stopped from JS. */
export interface SplicePumpResult {
  readonly aToB: number;
  readonly bToA: number;
  readonly stopped: boolean;
  /** False when the pump made the upstream connection and it never completed (the error says why). */
  readonly connected: boolean;
  /** The upstream socket's local port when the pump connected it, else 0. */
  readonly localPort: number;
  readonly portFellBack: boolean;
}

/** A running splice pump. */
export interface SplicePumpHandle {
  stop(): void;
  counts(): { aToB: number; bToA: number };
}

/** Facts about an accepted socket, read in one native call. */
export interface AcceptedSocket {
  readonly local: SocketAddress;
  readonly peer: SocketAddress;
  /** Present when asked for and found (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST). */
  readonly originalDst?: SocketAddress;
  /** Why the original destination could not be read: errno name and what to do. */
  readonly originalDstError?: { readonly code: string; readonly message: string };
}

/** Local address, peer and (optionally) original destination of an accepted socket; throws only when the socket is gone. */
export function acceptedSocketInfo(target: number | net.Socket, readOriginalDst: boolean): AcceptedSocket {
  const addon = loadNative();
  // "family,address,port" for local and peer, then errno and the original destination.
  const t = addon.acceptedInfo(fdOf(target), readOriginalDst).split(",");
  const local: SocketAddress = { family: t[0] === "6" ? 6 : 4, address: t[1]!, port: Number(t[2]) };
  const peer: SocketAddress = { family: t[3] === "6" ? 6 : 4, address: t[4]!, port: Number(t[5]) };
  if (t.length === 6) return { local, peer };
  const errno = Number(t[6]);
  if (errno !== 0) {
    const syscall = local.family === 6 ? "getsockopt IP6T_SO_ORIGINAL_DST" : "getsockopt SO_ORIGINAL_DST";
    return { local, peer, originalDstError: addon.describeErrno(errno, syscall) };
  }
  return { local, peer, originalDst: { family: t[7] === "6" ? 6 : 4, address: t[8]!, port: Number(t[9]) } };
}

const ADDON_NAME = "traffic_native.node";

/** The package root: the nearest directory above this module that holds binding.gyp. */
function packageRoot(): string | null {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, "binding.gyp"))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

function onPath(command: string): boolean {
  for (const dir of (process.env["PATH"] ?? "").split(":")) {
    if (dir !== "" && fs.existsSync(path.join(dir, command))) return true;
  }
  return false;
}

/** Says, in one sentence, why the addon is not there and how to get it. */
function diagnose(root: string | null, loadError: unknown): string {
  if (process.platform !== "linux") {
    return `the native addon is Linux-only (this is ${process.platform}): transparent in and original dst cannot run here`;
  }
  if (root === null) return "the native addon's build files (binding.gyp) are missing from the package: reinstall it";
  const { file, prebuilt } = addonFile(root, ADDON_NAME);
  if (!fs.existsSync(file)) {
    const missing = ["c++", "make", "python3"].filter((c) => !onPath(c));
    const tools = missing.length > 0 ? `; missing build tools: ${missing.join(", ")} (Debian: apt-get install g++ make python3)` : "";
    return `the native addon was not built (${file} is missing) and no prebuilt addon fits ${prebuildTarget()}: run \`npm rebuild\` in ${root}${tools}`;
  }
  const why = loadError instanceof Error ? loadError.message : String(loadError);
  if (prebuilt) return `the prebuilt native addon ${file} failed to load (${why.split("\n")[0]}): compile it for this system with \`npm rebuild --build-from-source\` in ${root}`;
  if (/NODE_MODULE_VERSION|undefined symbol/.test(why)) {
    return `the native addon was built for another Node.js: run \`npm rebuild\` in ${root} (${why.split("\n")[0]})`;
  }
  return `the native addon ${file} failed to load: ${why.split("\n")[0]}`;
}

let cached: NativeAddon | TrafficError | null = null;

/** The loaded addon; throws ERR_NATIVE_UNAVAILABLE naming what is missing. Loads once. */
export function loadNative(): NativeAddon {
  if (cached === null) {
    const root = packageRoot();
    try {
      if (process.platform !== "linux" || root === null) throw new Error("not loadable");
      const addon = require(addonFile(root, ADDON_NAME).file) as NativeAddon;
      cached = addon;
    } catch (err) {
      cached = new TrafficError("ERR_NATIVE_UNAVAILABLE", diagnose(root, err), "native addon");
    }
  }
  if (cached instanceof TrafficError) throw cached;
  return cached;
}

/** Whether the addon loads, and if not why, without throwing (for status and doctor). */
export function nativeAvailability(): { readonly available: true } | { readonly available: false; readonly reason: string } {
  try {
    loadNative();
    return { available: true };
  } catch (err) {
    return { available: false, reason: (err as TrafficError).reason };
  }
}

/**
 * The file descriptor behind a TCP net.Socket or net.Server. Node does not expose it in
 * its API; libuv keeps it in the handle, which is `_handle.fd` for TCP on Linux.
 */
/**
 * Closes a socket in order: bytes the peer sent that were never read (a socket accepted
 * paused keeps them in the kernel) are dropped first, so the peer sees a FIN rather than
 * the reset the kernel sends for unread data.
 */
export function closeOrderly(socket: net.Socket): void {
  if (!socket.destroyed) {
    try {
      loadNative().discardInput(socketFd(socket));
    } catch {
      // No addon, or no fd any more: a plain close is all there is.
    }
  }
  socket.destroy();
}

export function socketFd(socket: net.Socket | net.Server): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== "number" || !Number.isInteger(fd) || fd < 0) {
    throw new TrafficError(
      "ERR_NO_FD",
      handle === null || handle === undefined
        ? "the socket has no handle: it is closed or not yet connected"
        : "the socket has no file descriptor: it is not a TCP socket on Linux",
      "socket",
    );
  }
  return fd;
}

function fdOf(target: number | net.Socket): number {
  return typeof target === "number" ? target : socketFd(target);
}

/** Creates a listening TCP socket with options Node cannot set before bind; returns its fd for `server.listen({ fd })`. */
export function createListenerFd(options: NativeListenOptions): number {
  return loadNative().createListener(options);
}

/** The destination a REDIRECT/DNAT rule rewrote (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST); ENOENT when conntrack has no entry. */
export function getOriginalDst(target: number | net.Socket): SocketAddress {
  return loadNative().getOriginalDst(fdOf(target));
}

/** The socket's own address (getsockname); under TPROXY this is the original destination. */
export function getLocalAddress(target: number | net.Socket): SocketAddress {
  return loadNative().getLocalAddress(fdOf(target));
}

/** The socket peer as the kernel reports it (getpeername). */
export function getPeerAddress(target: number | net.Socket): SocketAddress {
  return loadNative().getPeerAddress(fdOf(target));
}

/** Transparent/freebind/reuse flags actually set on a socket. */
export function socketOptions(target: number | net.Socket | net.Server): SocketOptionFlags {
  return loadNative().socketOptions(typeof target === "number" ? target : socketFd(target));
}

/** Closes a listener fd that never reached a net.Server (Node owns it after `listen({ fd })`). */
export function closeListenerFd(fd: number): void {
  loadNative().closeFd(fd);
}

/** True for errors the addon raised from a system call (code = errno name). */
export function isSystemCallError(err: unknown): err is SystemCallError {
  return err instanceof Error && typeof (err as { code?: unknown }).code === "string" && typeof (err as { syscall?: unknown }).syscall === "string";
}

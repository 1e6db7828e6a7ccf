import { TrafficError } from "../errors";
import { compileRanges, parseRangeList, type RangeMatcher } from "../net/cidr";
import { tryParseIp } from "../net/ip";
import type { UnclaimedAction } from "../connection-table";

/** How connections reach the listener, which decides where the original destination comes from. */
export type ListenerMode = "redirect" | "tproxy" | "plain";
/** Address families the listener accepts. */
export type ListenerFamily = "ipv4" | "ipv6" | "dual";
/** Which transports the listener captures: TCP connections, UDP sessions, or both on one port. */
export type ListenerProtocol = "tcp" | "udp" | "both";
/** Whether a PROXY protocol header is read from peers in `proxyFrom`. */
export type ProxyProtocolMode = "off" | "optional" | "required";

/** Listener settings as a caller (editor or library user) gives them. */
export interface TransparentListenerConfig {
  readonly port: number;
  /** Default `tcp`. UDP works in modes tproxy and plain only (see listenerSettings). */
  readonly protocol?: ListenerProtocol;
  /** Bind address; empty or absent: any address of the family. */
  readonly address?: string;
  readonly family?: ListenerFamily;
  readonly mode?: ListenerMode;
  /** Most connections accepted at once (0: no limit); the kernel queue holds the rest. */
  readonly maxConnections?: number;
  /** How many first bytes to read and keep before the message is sent (0: none). */
  readonly sniffBytes?: number;
  readonly sniffTimeoutMs?: number;
  readonly proxyProtocol?: ProxyProtocolMode;
  /** CIDRs (or named ranges) whose connections carry a PROXY header. */
  readonly proxyFrom?: string | readonly string[];
  readonly proxyTimeoutMs?: number;
  /** How long a connection waits to be claimed downstream (0: forever). */
  readonly unclaimedTimeoutMs?: number;
  readonly unclaimedAction?: UnclaimedAction;
  /** On close, leave connections that a downstream node owns running. */
  readonly keepClaimedOnClose?: boolean;
  readonly reusePort?: boolean;
  readonly freebind?: boolean;
  /** A UDP session with no datagram either way for this long ends (default 30 s). */
  readonly udpIdleTimeoutMs?: number;
  /** Most UDP sessions at once (default 65536): datagrams of further clients are dropped and counted. */
  readonly maxUdpSessions?: number;
}

/** Checked, defaulted settings. */
export interface ListenerSettings {
  readonly port: number;
  readonly protocol: ListenerProtocol;
  readonly address: string;
  readonly v6Only: boolean;
  readonly family: ListenerFamily;
  readonly mode: ListenerMode;
  readonly maxConnections: number;
  readonly sniffBytes: number;
  readonly sniffTimeoutMs: number;
  readonly proxyProtocol: ProxyProtocolMode;
  readonly proxyFrom: RangeMatcher;
  readonly proxyTimeoutMs: number;
  readonly unclaimedTimeoutMs: number;
  readonly unclaimedAction: UnclaimedAction;
  readonly keepClaimedOnClose: boolean;
  readonly reusePort: boolean;
  readonly freebind: boolean;
  readonly udpIdleTimeoutMs: number;
  readonly maxUdpSessions: number;
}

/** Largest sniff buffer: a post-quantum TLS ClientHello fits in 16 KiB with room. */
export const MAX_SNIFF_BYTES = 65536;

function bad(field: string, why: string): TrafficError {
  return new TrafficError("ERR_LISTENER_CONFIG", why, field);
}

function int(value: unknown, field: string, min: number, max: number, fallback: number): number {
  if (value === undefined || value === null || value === "") return fallback;
  const n = typeof value === "string" ? Number(value.trim()) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
    throw bad(field, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined || value === null || value === "") return fallback;
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw bad(field, `must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

/** Checks and defaults listener settings; throws ERR_LISTENER_CONFIG naming the field. */
export function listenerSettings(config: TransparentListenerConfig): ListenerSettings {
  const port = int(config.port, "port", 1, 65535, -1);
  if (port < 0) throw bad("port", "is required");
  const mode = oneOf(config.mode, "mode", ["redirect", "tproxy", "plain"] as const, "redirect");
  const protocol = oneOf(config.protocol, "protocol", ["tcp", "udp", "both"] as const, "tcp");
  if (protocol !== "tcp" && mode === "redirect") {
    // Checked on Linux 6.18: after a REDIRECT, IP_RECVORIGDSTADDR reports the rewritten
    // (local) address, and SO_ORIGINAL_DST answers ENOPROTOOPT for anything but TCP/SCTP.
    throw bad("mode", "UDP needs mode tproxy (or plain): after a REDIRECT the kernel does not tell a UDP socket the original destination");
  }
  let family = oneOf(config.family, "family", ["ipv4", "ipv6", "dual"] as const, "ipv4");
  const text = typeof config.address === "string" ? config.address.trim() : "";
  let address: string;
  if (text === "") {
    address = family === "ipv4" ? "0.0.0.0" : "::";
  } else {
    const ip = tryParseIp(text);
    if (ip === null || text.includes("%")) throw bad("address", `not an IP address: ${JSON.stringify(text.slice(0, 64))}`);
    // tryParseIp unwraps ::ffff: mapped addresses; bind what the operator wrote.
    const written = text.includes(":") ? 6 : 4;
    if (family === "ipv4" && written === 6) throw bad("address", "an IPv6 address needs family ipv6 or dual");
    if (family !== "ipv4" && written === 4) family = "ipv4";
    address = written === 4 ? ip.text : text.toLowerCase();
  }
  const proxyProtocol = oneOf(config.proxyProtocol, "proxyProtocol", ["off", "optional", "required"] as const, "off");
  let proxyFrom: RangeMatcher = () => false;
  if (proxyProtocol !== "off") {
    const list = config.proxyFrom ?? "";
    let ranges;
    try {
      ranges = parseRangeList(list);
    } catch (err) {
      throw bad("proxyFrom", (err as TrafficError).reason ?? String(err));
    }
    if (ranges.length === 0) throw bad("proxyFrom", "name the CIDRs of the proxies that send PROXY headers");
    proxyFrom = compileRanges(ranges);
  }
  return {
    port,
    protocol,
    address,
    v6Only: family === "ipv6",
    family,
    mode,
    maxConnections: int(config.maxConnections, "maxConnections", 0, 1_000_000, 0),
    sniffBytes: int(config.sniffBytes, "sniffBytes", 0, MAX_SNIFF_BYTES, 0),
    sniffTimeoutMs: int(config.sniffTimeoutMs, "sniffTimeoutMs", 1, 600_000, 1000),
    proxyProtocol,
    proxyFrom,
    proxyTimeoutMs: int(config.proxyTimeoutMs, "proxyTimeoutMs", 1, 600_000, 3000),
    unclaimedTimeoutMs: int(config.unclaimedTimeoutMs, "unclaimedTimeoutMs", 0, 86_400_000, 10_000),
    unclaimedAction: oneOf(config.unclaimedAction, "unclaimedAction", ["close", "forward"] as const, "close"),
    keepClaimedOnClose: config.keepClaimedOnClose === undefined ? true : config.keepClaimedOnClose === true,
    reusePort: config.reusePort === true,
    freebind: config.freebind === true,
    udpIdleTimeoutMs: int(config.udpIdleTimeoutMs, "udpIdleTimeoutMs", 1, 86_400_000, 30_000),
    maxUdpSessions: int(config.maxUdpSessions, "maxUdpSessions", 1, 10_000_000, 65_536),
  };
}

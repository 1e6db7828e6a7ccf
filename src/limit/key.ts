// What a limit counts per: the client address (whole, or its network), a name the
// classifier read (SNI, HTTP host), the classify rule, or any message value. Pure: the
// Node-RED node reads the message and hands values here.

import { TrafficError } from "../errors";
import { maskOf, maskV6 } from "../net/cidr";
import { formatIPv4, formatIPv6, tryParseIp } from "../net/ip";

/** What a limiter's key is taken from. */
export type LimitKeyKind = "client-ip" | "sni" | "host" | "rule" | "property";

/** Every key kind, for validation. */
export const LIMIT_KEY_KINDS: readonly LimitKeyKind[] = ["client-ip", "sni", "host", "rule", "property"];

/**
 * The key of messages that carry no value for the chosen kind. They share one bucket, so
 * leaving the value out is no way around the limit.
 */
export const NO_KEY = "(none)";

/** Longest key kept: a message property can hold anything. */
const MAX_KEY_LENGTH = 256;

/** Prefix lengths that group client addresses into one key. */
export interface AddressGrouping {
  /** IPv4 prefix length, 1-32 (32: each address its own key). */
  readonly v4Prefix: number;
  /** IPv6 prefix length, 1-128; 64 by default, since one host commonly holds a whole /64. */
  readonly v6Prefix: number;
}

/** Checks prefix lengths, throwing ERR_LIMIT_CONFIG for one out of range. */
export function checkGrouping(grouping: AddressGrouping): AddressGrouping {
  const { v4Prefix, v6Prefix } = grouping;
  if (!Number.isInteger(v4Prefix) || v4Prefix < 1 || v4Prefix > 32) {
    throw new TrafficError("ERR_LIMIT_CONFIG", `IPv4 prefix must be an integer 1-32, got ${String(v4Prefix)}`, "v4Prefix");
  }
  if (!Number.isInteger(v6Prefix) || v6Prefix < 1 || v6Prefix > 128) {
    throw new TrafficError("ERR_LIMIT_CONFIG", `IPv6 prefix must be an integer 1-128, got ${String(v6Prefix)}`, "v6Prefix");
  }
  return grouping;
}

/**
 * The key of a client address: the address itself at a full-length prefix, else its
 * network in CIDR form (`2001:db8:1:2::/64`). IPv4-mapped IPv6 counts as IPv4. Null
 * when `address` is not an IP address.
 */
export function addressKey(address: unknown, grouping: AddressGrouping): string | null {
  if (typeof address !== "string") return null;
  const ip = tryParseIp(address);
  if (ip === null) return null;
  if (ip.family === 4) {
    if (grouping.v4Prefix === 32) return ip.text;
    return `${formatIPv4((ip.v4 & maskOf(grouping.v4Prefix)) >>> 0)}/${grouping.v4Prefix}`;
  }
  // The zone index names a local link, not a client: fe80::1%eth0 and %eth1 are two hosts
  // only when the prefix keeps the whole address, which is rare enough to ignore.
  if (grouping.v6Prefix === 128) return formatIPv6(ip.v6!);
  return `${formatIPv6(maskV6(ip.v6!, grouping.v6Prefix))}/${grouping.v6Prefix}`;
}

/** The key of an arbitrary value: strings and finite numbers as text, capped; anything else none. */
export function valueKey(value: unknown): string | null {
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  if (typeof value !== "string" || value === "") return null;
  return value.length > MAX_KEY_LENGTH ? value.slice(0, MAX_KEY_LENGTH) : value;
}

/** The parts of a message the built-in key kinds read. */
export interface LimitKeyMessage {
  /** `real ip`'s result: its `address` wins over the socket peer. */
  readonly realIp?: unknown;
  /** A `transparent in` connection: `remoteAddress` is the socket peer. */
  readonly payload?: unknown;
  /** Set by `real ip` and used by `ip filter`. */
  readonly clientIp?: unknown;
  /** Set by `classify`: `sni`, `host`, `rule`. */
  readonly classification?: unknown;
}

function field(value: unknown, name: string): unknown {
  return value !== null && typeof value === "object" ? (value as Record<string, unknown>)[name] : undefined;
}

/** The client address of a message: `real ip`'s answer when present, else the socket peer, else `clientIp`. */
export function clientAddressOf(msg: LimitKeyMessage): unknown {
  const real = field(msg.realIp, "address");
  if (typeof real === "string") return real;
  const peer = field(msg.payload, "remoteAddress");
  if (typeof peer === "string") return peer;
  return msg.clientIp;
}

/**
 * The key of a message for a built-in kind (not `property`, whose value the caller
 * reads), or NO_KEY when the message has none. `host` falls back to the SNI and drops
 * an HTTP port, so one name is one key whether it came by TLS or plain HTTP.
 */
export function messageKey(kind: Exclude<LimitKeyKind, "property">, msg: LimitKeyMessage, grouping: AddressGrouping): string {
  let key: string | null;
  switch (kind) {
    case "client-ip":
      key = addressKey(clientAddressOf(msg), grouping);
      break;
    case "sni":
      key = valueKey(field(msg.classification, "sni"));
      break;
    case "host": {
      const host = field(msg.classification, "host");
      const name = typeof host === "string" ? host.replace(/:\d+$/, "") : field(msg.classification, "sni");
      key = valueKey(typeof name === "string" ? name.toLowerCase() : name);
      break;
    }
    case "rule":
      key = valueKey(field(msg.classification, "rule"));
      break;
  }
  return key ?? NO_KEY;
}

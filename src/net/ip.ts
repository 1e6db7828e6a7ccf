import ipaddr from "ipaddr.js";
import { TrafficError } from "../errors";

/** An IP address in canonical form: IPv4 dotted quad, or RFC 5952 IPv6 text. */
export interface IpAddress {
  readonly family: 4 | 6;
  /** Canonical text: IPv4-mapped IPv6 is unwrapped to IPv4, IPv6 is compressed lower case. */
  readonly text: string;
  /** IPv4 as an unsigned 32-bit integer (0 for IPv6). */
  readonly v4: number;
  /** IPv6 parsed (null for IPv4). */
  readonly v6: ipaddr.IPv6 | null;
}

const DOT = 46;
const ZERO = 48;
const NINE = 57;

/**
 * Parses strict four-part decimal IPv4 ("192.0.2.1"): no leading zeros, no octal,
 * hex, or short forms such as "1231233" that ipaddr.js's isValid accepts. Returns
 * the address as an unsigned integer, or -1 when the text is not such an address.
 */
export function parseIPv4Strict(text: string, start = 0, end = text.length): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  let leadingZero = false;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c >= ZERO && c <= NINE) {
      if (leadingZero) return -1;
      if (digits === 0 && c === ZERO) leadingZero = true;
      part = part * 10 + (c - ZERO);
      if (++digits > 3 || part > 255) return -1;
    } else if (c === DOT) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      leadingZero = false;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}

/** Formats an unsigned 32-bit IPv4 value as a dotted quad. */
export function formatIPv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

function fromIPv6(v6: ipaddr.IPv6): IpAddress {
  if (v6.isIPv4MappedAddress()) {
    const b = v6.toIPv4Address().octets;
    const v4 = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
    return { family: 4, text: formatIPv4(v4), v4, v6: null };
  }
  return { family: 6, text: v6.toString(), v4: 0, v6 };
}

/**
 * Parses an IP address strictly, or returns null. IPv4 must be four-part decimal;
 * IPv6 may carry a zone ("fe80::1%eth0"); IPv4-mapped IPv6 becomes IPv4.
 */
export function tryParseIp(text: string): IpAddress | null {
  const v4 = parseIPv4Strict(text);
  if (v4 >= 0) return { family: 4, text: text, v4, v6: null };
  if (text.indexOf(":") < 0) return null;
  // ipaddr.js accepts an embedded IPv4 tail in any legacy form; insist on four-part decimal.
  const zone = text.indexOf("%");
  const address = zone >= 0 ? text.slice(0, zone) : text;
  const tail = address.slice(address.lastIndexOf(":") + 1);
  if (tail.indexOf(".") >= 0 && parseIPv4Strict(tail) < 0) return null;
  if (!ipaddr.IPv6.isValid(text)) return null;
  return fromIPv6(ipaddr.IPv6.parse(text));
}

/** Parses an IP address strictly, throwing ERR_BAD_ADDRESS with the offending text. */
export function parseIp(text: string, input = "address"): IpAddress {
  const ip = tryParseIp(text);
  if (ip === null) {
    throw new TrafficError("ERR_BAD_ADDRESS", `not an IP address: ${JSON.stringify(clip(text))}`, input);
  }
  return ip;
}

/** Parses a decimal TCP/UDP port (0-65535, 1-5 digits), or returns -1. */
export function parsePort(text: string, start = 0, end = text.length): number {
  const len = end - start;
  if (len < 1 || len > 5) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < ZERO || c > NINE) return -1;
    value = value * 10 + (c - ZERO);
  }
  return value > 65535 ? -1 : value;
}

/** Shortens untrusted text for an error message. */
export function clip(text: string, max = 64): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

import { TrafficError } from "../errors";

/** An IP address in canonical form: IPv4 dotted quad, or RFC 5952 IPv6 text. */
export interface IpAddress {
  readonly family: 4 | 6;
  /** Canonical text: IPv4-mapped IPv6 is unwrapped to IPv4, IPv6 is RFC 5952 (compressed, lower case). */
  readonly text: string;
  /** IPv4 as an unsigned 32-bit integer (0 for IPv6). */
  readonly v4: number;
  /** IPv6 as eight 16-bit groups (null for IPv4). */
  readonly v6: Uint16Array | null;
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

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/**
 * Parses IPv6 text into eight groups, or returns null: hex groups of 1-4 digits, at most
 * one "::", an optional four-part-decimal IPv4 tail, an optional zone ("%eth0", letters
 * and digits). The same language ipaddr.js accepts, without its legacy IPv4 tail forms.
 */
export function parseIPv6(text: string, end = text.length): { groups: Uint16Array; zone: string } | null {
  let stop = end;
  let zone = "";
  const pct = text.indexOf("%");
  if (pct >= 0 && pct < end) {
    if (pct === end - 1) return null;
    for (let i = pct + 1; i < end; i++) {
      const c = text.charCodeAt(i);
      if (!((c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57))) return null;
    }
    zone = text.slice(pct, end);
    stop = pct;
  }
  const groups = new Uint16Array(8);
  let n = 0;
  let gap = -1;
  let i = 0;
  if (stop >= 2 && text.charCodeAt(0) === 58 && text.charCodeAt(1) === 58) {
    gap = 0;
    i = 2;
    if (i === stop) return { groups, zone };
  } else if (text.charCodeAt(0) === 58) return null;
  for (;;) {
    // One group, or an IPv4 tail.
    const start = i;
    let value = 0;
    while (i < stop) {
      const h = hexValue(text.charCodeAt(i));
      if (h < 0) break;
      value = value * 16 + h;
      i++;
    }
    if (i < stop && text.charCodeAt(i) === 46) {
      if (n > 6) return null;
      const v4 = parseIPv4Strict(text, start, stop);
      if (v4 < 0) return null;
      groups[n++] = v4 >>> 16;
      groups[n++] = v4 & 0xffff;
      i = stop;
      break;
    }
    const digits = i - start;
    if (digits === 0 || digits > 4 || n === 8) return null;
    groups[n++] = value;
    if (i === stop) break;
    if (text.charCodeAt(i) !== 58) return null;
    i++;
    if (i < stop && text.charCodeAt(i) === 58) {
      if (gap >= 0) return null;
      gap = n;
      i++;
      if (i === stop) break;
    } else if (i === stop) return null;
  }
  if (gap < 0) return n === 8 ? { groups, zone } : null;
  if (n > 7) return null;
  const tail = n - gap;
  for (let k = 0; k < tail; k++) groups[7 - k] = groups[n - 1 - k]!;
  for (let k = gap; k < 8 - tail; k++) groups[k] = 0;
  return { groups, zone };
}

/** Formats eight groups as RFC 5952 text: lower case, no leading zeros, the longest zero run (≥ 2) as "::". */
export function formatIPv6(g: Uint16Array): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  let out = "";
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += i === 0 ? "::" : ":";
      i += bestLen - 1;
      continue;
    }
    out += g[i]!.toString(16);
    if (i < 7) out += ":";
  }
  return out;
}

function isMapped(g: Uint16Array): boolean {
  return g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff;
}

/**
 * Parses an IP address strictly, or returns null. IPv4 must be four-part decimal;
 * IPv6 may carry a zone ("fe80::1%eth0"); IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4.
 * The deprecated IPv4-compatible form "::a.b.c.d" (::/96) stays IPv6: the kernel accepts
 * TCP from such sources, so reading "::127.0.0.1" as loopback would let a remote IPv6
 * peer pass for a local one (proxy-addr reads it as IPv6 too).
 */
export function tryParseIp(text: string): IpAddress | null {
  const v4 = parseIPv4Strict(text);
  if (v4 >= 0) return { family: 4, text, v4, v6: null };
  const parsed = text.indexOf(":") >= 0 ? parseIPv6(text) : null;
  if (parsed === null) return null;
  const g = parsed.groups;
  if (isMapped(g)) {
    const value = ((g[6]! << 16) | g[7]!) >>> 0;
    return { family: 4, text: formatIPv4(value), v4: value, v6: null };
  }
  return { family: 6, text: formatIPv6(g) + parsed.zone, v4: 0, v6: g };
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

/** An address and port as written in URLs and logs: `192.0.2.1:80`, `[2001:db8::1]:443`. */
export function formatEndpoint(address: string, port: number | null | undefined): string {
  const host = address.includes(":") ? `[${address}]` : address;
  return port === null || port === undefined ? host : `${host}:${port}`;
}

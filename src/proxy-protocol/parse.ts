import { isUtf8 } from "node:buffer";
import { TrafficError } from "../errors";
import { clip, formatIPv4, parseIPv4Strict, tryParseIp } from "../net/ip";
import { crc32c, crc32cZeros } from "./crc32c";
import type { ProxyHeader, ProxyParseResult, ProxySslInfo, ProxyTlv } from "./types";

/** Registered PROXY v2 TLV types (proxy-protocol.txt 2.2). */
export const PP2_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  NETNS: 0x30,
} as const;

/** Second-level TLV types inside PP2_TYPE_SSL (proxy-protocol.txt 2.2.6). */
export const PP2_SUBTYPE_SSL = {
  VERSION: 0x21,
  CN: 0x22,
  CIPHER: 0x23,
  SIG_ALG: 0x24,
  KEY_ALG: 0x25,
} as const;

/** Bits of ProxySslInfo.client (proxy-protocol.txt 2.2.6). */
export const PP2_CLIENT = {
  SSL: 0x01,
  CERT_CONN: 0x02,
  CERT_SESS: 0x04,
} as const;

/** The 12-byte block every v2 header starts with (proxy-protocol.txt 2.2). Private: a shared Buffer could be mutated. */
const V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);

/** Longest v1 line, CRLF included (proxy-protocol.txt 2.1, the UNKNOWN worst case). */
export const PROXY_V1_MAX_LENGTH = 107;

/** Longest v2 header the wire format can express: 16 fixed bytes plus a 16-bit length. */
export const PROXY_V2_MAX_LENGTH = 16 + 0xffff;

export interface ProxyParseOptions {
  /**
   * Largest v2 header, in bytes including the 16-byte fixed part, to accept;
   * a longer declared length is rejected as soon as the length field arrives,
   * so a peer cannot make the caller buffer more than this. Default
   * PROXY_V2_MAX_LENGTH (no cap beyond the wire format's own).
   */
  readonly maxV2Length?: number;
}

const INCOMPLETE_0: ProxyParseResult = Object.freeze({ kind: "incomplete", version: 0 });
const INCOMPLETE_1: ProxyParseResult = Object.freeze({ kind: "incomplete", version: 1 });
const INCOMPLETE_2: ProxyParseResult = Object.freeze({ kind: "incomplete", version: 2 });
const NOT_PROXY: ProxyParseResult = Object.freeze({ kind: "not-proxy" });
const NO_TLVS: readonly ProxyTlv[] = Object.freeze([]);

const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const COLON = 0x3a;
const ZERO = 0x30;
const NINE = 0x39;

/** "PROXY " — v1 is recognised by these six bytes (proxy-protocol.txt 2.1). */
const V1_PREFIX = Buffer.from("PROXY ", "latin1");
const V1_INPUT = "PROXY v1 header";
const V2_INPUT = "PROXY v2 header";

/** Protocol tokens of v1, as bytes, for prefix checks on partial input. */
const TOKEN_TCP4 = Buffer.from("TCP4", "latin1");
const TOKEN_TCP6 = Buffer.from("TCP6", "latin1");
const TOKEN_UNKNOWN = Buffer.from("UNKNOWN", "latin1");

/** Longest IPv4 text ("255.255.255.255") and IPv6 text (with an IPv4 tail). */
const IPV4_TEXT_MAX = 15;
const IPV6_TEXT_MAX = 45;

const FIELD_NAMES = ["source address", "destination address", "source port", "destination port"] as const;

function v1Error(reason: string): never {
  throw new TrafficError("ERR_PROXY_V1", reason, V1_INPUT);
}

function v2Error(reason: string): never {
  throw new TrafficError("ERR_PROXY_V2", reason, V2_INPUT);
}

/** Untrusted bytes as printable text for an error message. */
function show(data: Buffer, start: number, end: number): string {
  return JSON.stringify(clip(data.toString("latin1", start, Math.min(end, start + 80))));
}

function hex(value: number, digits = 2): string {
  return `0x${value.toString(16).padStart(digits, "0")}`;
}

/**
 * Parses the PROXY protocol header (haproxy's proxy-protocol.txt, v1 or v2) at
 * the start of `data`, the bytes received so far on a connection.
 *
 * Returns `incomplete` while `data` is a valid prefix (call again with more
 * bytes), `not-proxy` when the stream does not start like a PROXY header, or
 * `header` with `header.length` bytes consumed; anything after them is payload.
 * Throws TrafficError (ERR_PROXY_V1 / ERR_PROXY_V2) for a malformed header, as
 * early as the bytes allow. Work and memory are bounded by min(data.length,
 * 107) for v1 and by the declared length (capped by maxV2Length) for v2.
 */
export function parseProxyHeader(data: Buffer, options?: ProxyParseOptions): ProxyParseResult {
  const n = data.length;
  if (n === 0) return INCOMPLETE_0;
  const first = data[0];
  if (first === 0x50) {
    const m = n < 6 ? n : 6;
    for (let i = 1; i < m; i++) if (data[i] !== V1_PREFIX[i]) return NOT_PROXY;
    return n < 6 ? INCOMPLETE_1 : parseV1(data);
  }
  if (first === 0x0d) {
    const m = n < 12 ? n : 12;
    for (let i = 1; i < m; i++) if (data[i] !== V2_SIGNATURE[i]) return NOT_PROXY;
    if (n < 12) return INCOMPLETE_2;
    let max = PROXY_V2_MAX_LENGTH;
    if (options !== undefined && options.maxV2Length !== undefined) {
      max = options.maxV2Length;
      if (!Number.isInteger(max) || max < 16) {
        throw new RangeError(`maxV2Length must be an integer >= 16, got ${String(max)}`);
      }
    }
    return parseV2(data, max);
  }
  return NOT_PROXY;
}

// ---------------------------------------------------------------------------
// Version 1

function parseV1(data: Buffer): ProxyParseResult {
  const n = data.length;
  // The CRLF must end within 107 bytes, so the CR sits at index 105 at the latest.
  const crLimit = n < PROXY_V1_MAX_LENGTH - 1 ? n : PROXY_V1_MAX_LENGTH - 1;
  let cr = -1;
  for (let i = 6; i < crLimit; i++) {
    const c = data[i];
    if (c === CR) {
      cr = i;
      break;
    }
    // 2.1: "The receiver must not tolerate a single CR or LF character to end the line".
    if (c === LF) v1Error(`line feed at byte ${i} without a carriage return before it; the line must end with CRLF`);
  }
  if (cr >= 0) {
    if (cr + 1 < n && data[cr + 1] !== LF) {
      v1Error(`carriage return at byte ${cr} not followed by a line feed; the line must end with CRLF`);
    }
    const header = parseV1Line(data, cr, true);
    // The line is valid so far; the LF that completes it has not arrived yet.
    return cr + 1 < n && header !== null ? { kind: "header", header } : INCOMPLETE_1;
  }
  // No CR yet: check what has arrived, so a bad line fails before the limit is reached.
  parseV1Line(data, crLimit, false);
  // 2.1: "If the CRLF sequence is not found in the first 107 characters, the
  // receiver should declare the line invalid."
  if (n >= PROXY_V1_MAX_LENGTH - 1) v1Error(`no CRLF within the first ${PROXY_V1_MAX_LENGTH} bytes`);
  return INCOMPLETE_1;
}

/**
 * Parses the v1 line in data[0, end). When `complete` is false, `end` is where
 * the received bytes stop and the last field may be cut short: it is checked
 * as a prefix and null is returned if nothing is wrong yet. When `complete`,
 * `end` is the CR and the header (of length end + 2) is returned.
 */
function parseV1Line(data: Buffer, end: number, complete: boolean): ProxyHeader | null {
  let i = 6;
  while (i < end && data[i] !== SP) i++;
  const protoEnd = i;
  if (protoEnd === end && !complete) {
    if (!isTokenPrefix(data, 6, end)) v1Error(`unsupported protocol ${show(data, 6, end)}; expected TCP4, TCP6 or UNKNOWN`);
    return null;
  }
  let family: "tcp4" | "tcp6";
  const protoLen = protoEnd - 6;
  if (protoLen === 4 && matches(data, 6, TOKEN_TCP4)) {
    family = "tcp4";
  } else if (protoLen === 4 && matches(data, 6, TOKEN_TCP6)) {
    family = "tcp6";
  } else if (protoLen === 7 && matches(data, 6, TOKEN_UNKNOWN)) {
    // 2.1: for UNKNOWN "the receiver must ignore anything presented before the CRLF".
    if (!complete) return null;
    return { version: 1, command: "proxy", family: "unspec", tlvs: NO_TLVS, length: end + 2 };
  } else if (protoLen === 0) {
    v1Error("expected the protocol after exactly one space following PROXY");
  } else {
    v1Error(`unsupported protocol ${show(data, 6, protoEnd)}; expected TCP4, TCP6 or UNKNOWN`);
  }
  if (protoEnd === end) v1Error(`missing source address after ${family === "tcp4" ? "TCP4" : "TCP6"}`);

  let sourceAddress = "";
  let destinationAddress = "";
  let sourcePort = 0;
  let destinationPort = 0;
  i = protoEnd + 1;
  for (let field = 0; field < 4; field++) {
    const start = i;
    while (i < end && data[i] !== SP) i++;
    const fieldEnd = i;
    const spaced = fieldEnd < end;
    if (!spaced && !complete) {
      checkFieldPrefix(data, start, fieldEnd, field, family);
      return null;
    }
    if (fieldEnd === start) {
      v1Error(`empty ${FIELD_NAMES[field]}: fields are separated by exactly one space`);
    }
    switch (field) {
      case 0:
        sourceAddress = v1Address(data, start, fieldEnd, family, field);
        break;
      case 1:
        destinationAddress = v1Address(data, start, fieldEnd, family, field);
        break;
      case 2:
        sourcePort = v1Port(data, start, fieldEnd, field);
        break;
      default:
        destinationPort = v1Port(data, start, fieldEnd, field);
        if (spaced) v1Error(`unexpected data after the destination port: ${show(data, fieldEnd, end)}`);
    }
    if (field < 3 && !spaced) v1Error(`missing ${FIELD_NAMES[field + 1]}`);
    i = fieldEnd + 1;
  }
  return {
    version: 1,
    command: "proxy",
    family,
    sourceAddress,
    sourcePort,
    destinationAddress,
    destinationPort,
    tlvs: NO_TLVS,
    length: end + 2,
  };
}

function matches(data: Buffer, at: number, token: Buffer): boolean {
  for (let k = 0; k < token.length; k++) if (data[at + k] !== token[k]) return false;
  return true;
}

/** True when data[start, end) can still grow into TCP4, TCP6 or UNKNOWN. */
function isTokenPrefix(data: Buffer, start: number, end: number): boolean {
  const len = end - start;
  return (
    (len <= 4 && (prefixOf(data, start, len, TOKEN_TCP4) || prefixOf(data, start, len, TOKEN_TCP6))) ||
    (len <= 7 && prefixOf(data, start, len, TOKEN_UNKNOWN))
  );
}

function prefixOf(data: Buffer, start: number, len: number, token: Buffer): boolean {
  for (let k = 0; k < len; k++) if (data[start + k] !== token[k]) return false;
  return true;
}

/** Rejects a field cut short by the end of the received bytes if no suffix can make it valid. */
function checkFieldPrefix(data: Buffer, start: number, end: number, field: number, family: "tcp4" | "tcp6"): void {
  if (field < 2) {
    const ok = family === "tcp4" ? isIPv4Prefix(data, start, end) : isIPv6Prefix(data, start, end);
    if (!ok) v1Error(`bad ${FIELD_NAMES[field]} ${show(data, start, end)} for ${family === "tcp4" ? "TCP4" : "TCP6"}`);
  } else if (!isPortPrefix(data, start, end)) {
    v1Error(`bad ${FIELD_NAMES[field]} ${show(data, start, end)}`);
  }
}

/** Same rules as parseIPv4Strict, applied to a prefix: digits and dots, no part above 255 or with a leading zero. */
function isIPv4Prefix(data: Buffer, start: number, end: number): boolean {
  if (end - start > IPV4_TEXT_MAX) return false;
  let part = 0;
  let digits = 0;
  let dots = 0;
  let leadingZero = false;
  for (let i = start; i < end; i++) {
    const c = data[i]!;
    if (c >= ZERO && c <= NINE) {
      if (leadingZero) return false;
      if (digits === 0 && c === ZERO) leadingZero = true;
      part = part * 10 + (c - ZERO);
      if (++digits > 3 || part > 255) return false;
    } else if (c === DOT) {
      if (digits === 0 || ++dots > 3) return false;
      part = 0;
      digits = 0;
      leadingZero = false;
    } else {
      return false;
    }
  }
  return true;
}

function isIPv6Char(c: number): boolean {
  return (c >= ZERO && c <= NINE) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46) || c === COLON || c === DOT;
}

/** A cheap necessary condition: IPv6 text characters only, within the longest form. */
function isIPv6Prefix(data: Buffer, start: number, end: number): boolean {
  if (end - start > IPV6_TEXT_MAX) return false;
  for (let i = start; i < end; i++) if (!isIPv6Char(data[i]!)) return false;
  return true;
}

/** 2.1: ports are decimal 0..65535, "Heading zeroes are not permitted". */
function isPortPrefix(data: Buffer, start: number, end: number): boolean {
  const len = end - start;
  if (len > 5) return false;
  let value = 0;
  for (let i = start; i < end; i++) {
    const c = data[i]!;
    if (c < ZERO || c > NINE) return false;
    value = value * 10 + (c - ZERO);
  }
  if (len > 1 && data[start] === ZERO) return false;
  return value <= 65535;
}

function v1Port(data: Buffer, start: number, end: number, field: number): number {
  const len = end - start;
  let value = 0;
  let ok = len >= 1 && len <= 5 && !(len > 1 && data[start] === ZERO);
  for (let i = start; ok && i < end; i++) {
    const c = data[i]!;
    if (c < ZERO || c > NINE) ok = false;
    else value = value * 10 + (c - ZERO);
  }
  if (!ok || value > 65535) {
    v1Error(`bad ${FIELD_NAMES[field]} ${show(data, start, end)}: expected decimal 0-65535 without sign or leading zeros`);
  }
  return value;
}

/** 2.1: the address "matches the same family" as the protocol token, in canonical text. */
function v1Address(data: Buffer, start: number, end: number, family: "tcp4" | "tcp6", field: number): string {
  const len = end - start;
  if (family === "tcp4") {
    if (len <= IPV4_TEXT_MAX) {
      const text = data.toString("latin1", start, end);
      // Strict four-part decimal is already canonical text.
      if (parseIPv4Strict(text) >= 0) return text;
    }
    v1Error(`bad ${FIELD_NAMES[field]} ${show(data, start, end)} for TCP4: expected four-part decimal IPv4`);
  }
  // Only IPv6 text characters: no zone ("%eth0"), which has no meaning on the far side.
  let colon = false;
  let ok = len <= IPV6_TEXT_MAX;
  for (let i = start; ok && i < end; i++) {
    const c = data[i]!;
    if (c === COLON) colon = true;
    else if (!isIPv6Char(c)) ok = false;
  }
  if (ok && colon) {
    const ip = tryParseIp(data.toString("latin1", start, end));
    if (ip !== null) return ip.text;
  }
  return v1Error(`bad ${FIELD_NAMES[field]} ${show(data, start, end)} for TCP6: expected IPv6 text`);
}

// ---------------------------------------------------------------------------
// Version 2

type V2Family = ProxyHeader["family"];

function parseV2(data: Buffer, maxLength: number): ProxyParseResult {
  const n = data.length;
  if (n < 13) return INCOMPLETE_2;
  const verCmd = data[12]!;
  // 2.2: the version nibble "must always be sent as \x2 and the receiver must only accept this value".
  if (verCmd >>> 4 !== 2) v2Error(`protocol version ${verCmd >>> 4}; only version 2 is defined`);
  const command = verCmd & 0x0f;
  // 2.2: "Receivers must drop connections presenting unexpected values here."
  if (command > 1) v2Error(`unassigned command ${command}; expected 0 (LOCAL) or 1 (PROXY)`);
  const local = command === 0;
  if (n < 14) return INCOMPLETE_2;
  const fam = data[13]!;
  let family: V2Family = "unspec";
  let addressLength = 0;
  // 2.2: for LOCAL the receiver must "discard the protocol block including the family which is ignored".
  if (!local) {
    switch (fam) {
      case 0x00:
        break;
      case 0x11:
        family = "tcp4";
        addressLength = 12;
        break;
      case 0x12:
        family = "udp4";
        addressLength = 12;
        break;
      case 0x21:
        family = "tcp6";
        addressLength = 36;
        break;
      case 0x22:
        family = "udp6";
        addressLength = 36;
        break;
      case 0x31:
        family = "unix-stream";
        addressLength = 216;
        break;
      case 0x32:
        family = "unix-dgram";
        addressLength = 216;
        break;
      default:
        // 2.2: other family and transport values "must be rejected as invalid by receivers".
        v2Error(`unsupported address family and transport byte ${hex(fam)}`);
    }
  }
  if (n < 16) return INCOMPLETE_2;
  const len = (data[14]! << 8) | data[15]!;
  const total = 16 + len;
  if (total > maxLength) v2Error(`header of ${total} bytes exceeds the configured maximum of ${maxLength}`);
  if (len < addressLength) {
    v2Error(`length ${len} is shorter than the ${addressLength}-byte ${family} address block`);
  }
  // 2.2: "The receiver must not start to parse an address before the whole address block is received."
  if (n < total) return INCOMPLETE_2;
  if (local) {
    // 2.2: "Receivers MUST always consider this field to skip the appropriate number of bytes".
    return { kind: "header", header: { version: 2, command: "local", family: "unspec", tlvs: NO_TLVS, length: total } };
  }

  const header: {
    version: 2;
    command: "proxy";
    family: V2Family;
    sourceAddress?: string;
    sourcePort?: number;
    destinationAddress?: string;
    destinationPort?: number;
    tlvs: readonly ProxyTlv[];
    alpn?: string;
    authority?: string;
    uniqueId?: Buffer;
    netns?: string;
    ssl?: ProxySslInfo;
    length: number;
  } = { version: 2, command: "proxy", family, tlvs: NO_TLVS, length: total };

  switch (addressLength) {
    case 12:
      header.sourceAddress = formatIPv4(data.readUInt32BE(16));
      header.destinationAddress = formatIPv4(data.readUInt32BE(20));
      header.sourcePort = (data[24]! << 8) | data[25]!;
      header.destinationPort = (data[26]! << 8) | data[27]!;
      break;
    case 36:
      header.sourceAddress = formatIPv6(data, 16);
      header.destinationAddress = formatIPv6(data, 32);
      header.sourcePort = (data[48]! << 8) | data[49]!;
      header.destinationPort = (data[50]! << 8) | data[51]!;
      break;
    case 216:
      header.sourceAddress = unixPath(data, 16);
      header.destinationAddress = unixPath(data, 124);
      break;
    default:
      break;
  }

  const tlvStart = 16 + addressLength;
  if (tlvStart < total) parseTlvs(data, tlvStart, total, header);
  return { kind: "header", header };
}

/** 2.2: AF_UNIX addresses are "exactly 108 bytes each", a NUL-padded sun_path. */
function unixPath(data: Buffer, at: number): string {
  const limit = at + 108;
  let end = at;
  while (end < limit && data[end] !== 0) end++;
  return data.toString("utf8", at, end);
}

/**
 * IPv6 bytes as the project's canonical text, identical to tryParseIp(...).text:
 * IPv4-mapped addresses become dotted quads, others RFC 5952 (lower case, the
 * longest run of two or more zero groups, leftmost on a tie, as "::").
 */
function formatIPv6(data: Buffer, at: number): string {
  let mapped = data[at + 10] === 0xff && data[at + 11] === 0xff;
  for (let k = 0; mapped && k < 10; k++) if (data[at + k] !== 0) mapped = false;
  if (mapped) return formatIPv4(data.readUInt32BE(at + 12));
  let bestStart = -1;
  let bestLen = 1;
  let runStart = -1;
  for (let g = 0; g < 8; g++) {
    const zero = data[at + 2 * g] === 0 && data[at + 2 * g + 1] === 0;
    if (zero) {
      if (runStart < 0) runStart = g;
      if (g - runStart + 1 >= bestLen) {
        bestLen = g - runStart + 1;
        bestStart = runStart;
      }
    } else {
      runStart = -1;
    }
  }
  let text = "";
  for (let g = 0; g < 8; g++) {
    if (g === bestStart) {
      text += "::";
      g += bestLen - 1;
      continue;
    }
    if (text.length > 0 && text.charCodeAt(text.length - 1) !== COLON) text += ":";
    text += ((data[at + 2 * g]! << 8) | data[at + 2 * g + 1]!).toString(16);
  }
  return text;
}

interface TlvTarget {
  tlvs: readonly ProxyTlv[];
  alpn?: string;
  authority?: string;
  uniqueId?: Buffer;
  netns?: string;
  ssl?: ProxySslInfo;
}

/** Bit per decoded TLV type, to refuse a second copy. */
const SEEN_ALPN = 1;
const SEEN_AUTHORITY = 2;
const SEEN_CRC32C = 4;
const SEEN_UNIQUE_ID = 8;
const SEEN_SSL = 16;
const SEEN_NETNS = 32;

/**
 * Parses the TLVs in data[start, end) (end is also the header length). Every
 * TLV must lie wholly inside the header. A decoded type may appear once: with
 * two, proxies that keep the first and ones that keep the last would disagree
 * about the same header.
 */
function parseTlvs(data: Buffer, start: number, end: number, target: TlvTarget): void {
  // One copy of the TLV block: values must not alias the caller's read buffer,
  // which may be reused or may hold a large payload that should not be retained.
  const block = Buffer.from(data.subarray(start, end));
  const tlvs: ProxyTlv[] = [];
  let seen = 0;
  let p = start;
  while (p < end) {
    if (end - p < 3) v2Error(`truncated TLV at byte ${p}: ${end - p} bytes left, a TLV needs at least 3`);
    const type = data[p]!;
    const valueStart = p + 3;
    const valueEnd = valueStart + ((data[p + 1]! << 8) | data[p + 2]!);
    if (valueEnd > end) {
      v2Error(`TLV ${hex(type)} at byte ${p} declares ${valueEnd - valueStart} bytes, only ${end - valueStart} left in the header`);
    }
    const value = block.subarray(valueStart - start, valueEnd - start);
    tlvs.push({ type, value });
    let bit = 0;
    switch (type) {
      case PP2_TYPE.ALPN:
        bit = SEEN_ALPN;
        // 2.2.1: an opaque byte sequence; latin1 maps each byte to one character, losslessly.
        target.alpn = value.toString("latin1");
        break;
      case PP2_TYPE.AUTHORITY:
        bit = SEEN_AUTHORITY;
        // 2.2.2: "the host name value passed by the client, as an UTF8-encoded string".
        if (!isUtf8(value)) v2Error("PP2_TYPE_AUTHORITY is not valid UTF-8");
        target.authority = value.toString("utf8");
        break;
      case PP2_TYPE.CRC32C:
        bit = SEEN_CRC32C;
        verifyCrc32c(data, valueStart, valueEnd - valueStart, end);
        break;
      case PP2_TYPE.UNIQUE_ID:
        bit = SEEN_UNIQUE_ID;
        // 2.2.5: "an opaque byte sequence of up to 128 bytes".
        if (value.length > 128) v2Error(`PP2_TYPE_UNIQUE_ID of ${value.length} bytes exceeds 128`);
        target.uniqueId = value;
        break;
      case PP2_TYPE.SSL:
        bit = SEEN_SSL;
        target.ssl = parseSsl(value);
        break;
      case PP2_TYPE.NETNS:
        bit = SEEN_NETNS;
        // 2.2.7: "the US-ASCII string representation of the namespace's name".
        target.netns = ascii(value, "PP2_TYPE_NETNS");
        break;
      default:
        // NOOP (2.2.4) and unregistered types: kept raw in `tlvs` only.
        break;
    }
    if (bit !== 0) {
      if ((seen & bit) !== 0) v2Error(`TLV ${hex(type)} appears more than once`);
      seen |= bit;
    }
    p = valueEnd;
  }
  target.tlvs = tlvs;
}

/**
 * 2.2.3: the receiver must "replace the 32 bits of the checksum field in the
 * received PROXY header with all '0's and calculate a CRC32c checksum value of
 * the whole PROXY header", and treat a mismatch as invalid.
 */
function verifyCrc32c(data: Buffer, valueStart: number, valueLength: number, total: number): void {
  if (valueLength !== 4) v2Error(`PP2_TYPE_CRC32C must be 4 bytes, got ${valueLength}`);
  const expected = data.readUInt32BE(valueStart);
  let crc = crc32c(data, 0, 0, valueStart);
  crc = crc32cZeros(4, crc);
  crc = crc32c(data, crc, valueStart + 4, total);
  if (crc !== expected) {
    v2Error(`CRC32C mismatch: header carries ${hex(expected, 8)}, computed ${hex(crc, 8)}`);
  }
}

function ascii(value: Buffer, name: string): string {
  for (let i = 0; i < value.length; i++) {
    if (value[i]! > 0x7f) v2Error(`${name} is not US-ASCII (byte ${hex(value[i]!)} at ${i})`);
  }
  return value.toString("latin1");
}

/** 2.2.6: struct pp2_tlv_ssl { uint8_t client; uint32_t verify; struct pp2_tlv sub_tlv[0]; }. */
function parseSsl(value: Buffer): ProxySslInfo {
  if (value.length < 5) v2Error(`PP2_TYPE_SSL of ${value.length} bytes is shorter than its 5-byte client and verify fields`);
  const ssl: {
    client: number;
    verify: number;
    version?: string;
    cn?: string;
    cipher?: string;
    sigAlg?: string;
    keyAlg?: string;
  } = { client: value[0]!, verify: value.readUInt32BE(1) };
  const end = value.length;
  let seen = 0;
  let p = 5;
  while (p < end) {
    if (end - p < 3) v2Error(`truncated PP2_TYPE_SSL sub-TLV: ${end - p} bytes left, a TLV needs at least 3`);
    const type = value[p]!;
    const valueStart = p + 3;
    const valueEnd = valueStart + ((value[p + 1]! << 8) | value[p + 2]!);
    if (valueEnd > end) {
      v2Error(`PP2_TYPE_SSL sub-TLV ${hex(type)} declares ${valueEnd - valueStart} bytes, only ${end - valueStart} left`);
    }
    const sub = value.subarray(valueStart, valueEnd);
    if (type >= PP2_SUBTYPE_SSL.VERSION && type <= PP2_SUBTYPE_SSL.KEY_ALG) {
      const bit = 1 << (type - PP2_SUBTYPE_SSL.VERSION);
      if ((seen & bit) !== 0) v2Error(`PP2_TYPE_SSL sub-TLV ${hex(type)} appears more than once`);
      seen |= bit;
      switch (type) {
        case PP2_SUBTYPE_SSL.VERSION:
          ssl.version = ascii(sub, "PP2_SUBTYPE_SSL_VERSION");
          break;
        case PP2_SUBTYPE_SSL.CN:
          // 2.2.6: the Common Name is "the string representation (in UTF8)".
          if (!isUtf8(sub)) v2Error("PP2_SUBTYPE_SSL_CN is not valid UTF-8");
          ssl.cn = sub.toString("utf8");
          break;
        case PP2_SUBTYPE_SSL.CIPHER:
          ssl.cipher = ascii(sub, "PP2_SUBTYPE_SSL_CIPHER");
          break;
        case PP2_SUBTYPE_SSL.SIG_ALG:
          ssl.sigAlg = ascii(sub, "PP2_SUBTYPE_SSL_SIG_ALG");
          break;
        default:
          ssl.keyAlg = ascii(sub, "PP2_SUBTYPE_SSL_KEY_ALG");
          break;
      }
    }
    // Other sub-types are skipped: the raw PP2_TYPE_SSL value stays in `tlvs`.
    p = valueEnd;
  }
  return ssl;
}

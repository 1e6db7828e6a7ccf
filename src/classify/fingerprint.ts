import { hash } from "node:crypto";
import { u16 } from "./bytes";

/** How the ClientHello travelled: `t` TLS over TCP, `q` QUIC (JA4's first character). */
export type HelloTransport = "t" | "q";

/** TLS client fingerprints of one ClientHello. */
export interface TlsFingerprints {
  /** JA4 (FoxIO JA4 specification): `t13d1516h2_8daaf6152771_e5627efa2ab1`. */
  readonly ja4: string;
  /** JA3 text: `version,ciphers,extensions,groups,point formats`, decimal, GREASE left out. */
  readonly ja3: string;
  /** MD5 of the JA3 text, lower-case hex: what older tools and block lists carry. */
  readonly ja3Hash: string;
}

/**
 * Where a ClientHello's fingerprinted parts lie in its buffer: offsets, not copies, so a
 * parse that nobody fingerprints costs nothing extra.
 */
export interface HelloShape {
  legacyVersion: number;
  /** Highest non-GREASE supported_versions entry, or 0 without that extension. */
  maxVersion: number;
  ciphersStart: number;
  ciphersEnd: number;
  /** Extension types in the order sent, GREASE included (left out when fingerprinting). */
  extensions: number[];
  hasSni: boolean;
  /** First ALPN value, [start, end), or -1 when there is no ALPN extension. */
  alpnStart: number;
  alpnEnd: number;
  /** signature_algorithms list body, or -1. */
  sigAlgsStart: number;
  sigAlgsEnd: number;
  /** supported_groups list body, or -1. */
  groupsStart: number;
  groupsEnd: number;
  /** ec_point_formats list body, or -1. */
  pointFormatsStart: number;
  pointFormatsEnd: number;
}

/** A fresh shape with nothing found yet. */
export function emptyHelloShape(): HelloShape {
  return {
    legacyVersion: 0,
    maxVersion: 0,
    ciphersStart: 0,
    ciphersEnd: 0,
    extensions: [],
    hasSni: false,
    alpnStart: -1,
    alpnEnd: -1,
    sigAlgsStart: -1,
    sigAlgsEnd: -1,
    groupsStart: -1,
    groupsEnd: -1,
    pointFormatsStart: -1,
    pointFormatsEnd: -1,
  };
}

/** RFC 8701: GREASE values look like 0x?a?a and must be ignored. */
export function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
}

const HEX4: string[] = [];
for (let i = 0; i < 0x10000; i++) HEX4.push(i.toString(16).padStart(4, "0"));

// JA4 "Unknown = 00"; SSL 2.0 never reaches here (its hello has another record format).
function versionCode(v: number): string {
  switch (v) {
    case 0x0304:
      return "13";
    case 0x0303:
      return "12";
    case 0x0302:
      return "11";
    case 0x0301:
      return "10";
    case 0x0300:
      return "s3";
    case 0xfeff:
      return "d1";
    case 0xfefd:
      return "d2";
    case 0xfefc:
      return "d3";
    default:
      return "00";
  }
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

// JA4 ALPN part: first and last character of the first value; either one not alphanumeric
// makes it the first and last hex digit of the whole value instead.
function alpnCode(b: Buffer, s: HelloShape): string {
  if (s.alpnStart < 0 || s.alpnEnd <= s.alpnStart) return "00";
  const first = b[s.alpnStart]!;
  const last = b[s.alpnEnd - 1]!;
  if (isAlnum(first) && isAlnum(last)) return String.fromCharCode(first, last);
  return first.toString(16).padStart(2, "0")[0]! + last.toString(16).padStart(2, "0")[1]!;
}

function twoDigits(n: number): string {
  return n > 99 ? "99" : n < 10 ? `0${n}` : String(n);
}

function u16List(b: Buffer, start: number, end: number): Uint16Array {
  const out = new Uint16Array(Math.max(0, (end - start) >> 1));
  let n = 0;
  for (let p = start; p + 1 < end; p += 2) {
    const v = u16(b, p);
    if (!isGrease(v)) out[n++] = v;
  }
  return out.subarray(0, n);
}

function truncatedSha256(text: string): string {
  return hash("sha256", text, "hex").slice(0, 12);
}

function hexList(values: Uint16Array): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) parts[i] = HEX4[values[i]!]!;
  return parts.join(",");
}

/** Computes JA4, JA3 and the JA3 hash. */
export function computeFingerprints(b: Buffer, s: HelloShape, transport: HelloTransport): TlsFingerprints {
  const ciphers = u16List(b, s.ciphersStart, s.ciphersEnd);
  const extensions = new Uint16Array(s.extensions.length);
  let count = 0;
  for (const e of s.extensions) if (!isGrease(e)) extensions[count++] = e;
  const exts = extensions.subarray(0, count);
  const version = s.maxVersion !== 0 ? s.maxVersion : s.legacyVersion;
  const a = `${transport}${versionCode(version)}${s.hasSni ? "d" : "i"}${twoDigits(ciphers.length)}${twoDigits(exts.length)}${alpnCode(b, s)}`;
  // Typed arrays sort numerically, without a comparator.
  const part2 = ciphers.length === 0 ? "000000000000" : truncatedSha256(hexList(ciphers.slice().sort()));
  // SNI and ALPN are already in part a; leaving them out keeps part c the same whether the
  // client dials a name or an address.
  const hashed = exts.filter((e) => e !== 0x0000 && e !== 0x0010).sort();
  let part3 = "000000000000";
  if (hashed.length > 0) {
    const sigAlgs = s.sigAlgsStart < 0 ? new Uint16Array(0) : u16List(b, s.sigAlgsStart, s.sigAlgsEnd);
    part3 = truncatedSha256(sigAlgs.length === 0 ? hexList(hashed) : `${hexList(hashed)}_${hexList(sigAlgs)}`);
  }
  const groups = s.groupsStart < 0 ? new Uint16Array(0) : u16List(b, s.groupsStart, s.groupsEnd);
  const pointFormats: number[] = [];
  for (let p = s.pointFormatsStart; p >= 0 && p < s.pointFormatsEnd; p++) pointFormats.push(b[p]!);
  const ja3 = `${s.legacyVersion},${ciphers.join("-")},${exts.join("-")},${groups.join("-")},${pointFormats.join("-")}`;
  return { ja4: `${a}_${part2}_${part3}`, ja3, ja3Hash: hash("md5", ja3, "hex") };
}

// Clients of one software build send the same ciphers, extensions and algorithms on every
// connection, so the hashes are remembered by those bytes. Bounded: when full it starts over.
const CACHE_LIMIT = 4096;
const cache = new Map<number, { readonly key: Uint8Array; readonly prints: TlsFingerprints }>();
// The fingerprinted parts of one hello, laid out one after the other with their lengths;
// never longer than the hello itself plus the fixed head.
let scratch = Buffer.allocUnsafe(4096);

// Appends b[from, to) (nothing when from < 0) after its 16-bit length. A byte loop: the
// ranges are tens of bytes, where a native copy costs more than it saves.
function appendRange(k: Buffer, n: number, b: Buffer, from: number, to: number): number {
  const len = from < 0 ? 0 : to - from;
  k[n++] = len >> 8;
  k[n++] = len & 0xff;
  for (let i = from; i < to; i++) k[n++] = b[i]!;
  return n;
}

/** The fingerprints of a parsed ClientHello, from the bounded cache when these exact parts were seen before. */
export function helloFingerprints(b: Buffer, s: HelloShape, transport: HelloTransport): TlsFingerprints {
  const exts = s.extensions;
  const need = 20 + 2 * exts.length + (s.ciphersEnd - s.ciphersStart) + (s.alpnEnd - s.alpnStart) + (s.sigAlgsEnd - s.sigAlgsStart) + (s.groupsEnd - s.groupsStart) + (s.pointFormatsEnd - s.pointFormatsStart);
  if (need > scratch.length) scratch = Buffer.allocUnsafe(need * 2);
  const k = scratch;
  k[0] = transport === "q" ? 1 : 0;
  k[1] = s.legacyVersion >> 8;
  k[2] = s.legacyVersion & 0xff;
  k[3] = s.maxVersion >> 8;
  k[4] = s.maxVersion & 0xff;
  k[5] = s.hasSni ? 1 : 0;
  k[6] = exts.length;
  let n = 7;
  for (let i = 0; i < exts.length; i++) {
    k[n++] = exts[i]! >> 8;
    k[n++] = exts[i]! & 0xff;
  }
  n = appendRange(k, n, b, s.ciphersStart, s.ciphersEnd);
  n = appendRange(k, n, b, s.alpnStart, s.alpnEnd);
  n = appendRange(k, n, b, s.sigAlgsStart, s.sigAlgsEnd);
  n = appendRange(k, n, b, s.groupsStart, s.groupsEnd);
  n = appendRange(k, n, b, s.pointFormatsStart, s.pointFormatsEnd);
  // A 30-bit FNV-style hash (a small integer key keeps the map fast); the bytes decide equality.
  let h = 0x811c9dc5 ^ n;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ k[i]!, 0x01000193);
  const id = h & 0x3fffffff;
  const hit = cache.get(id);
  if (hit !== undefined && hit.key.length === n) {
    const key = hit.key;
    let i = 0;
    while (i < n && key[i] === k[i]) i++;
    if (i === n) return hit.prints;
  }
  const prints = computeFingerprints(b, s, transport);
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(id, { key: Uint8Array.prototype.slice.call(k, 0, n), prints });
  return prints;
}

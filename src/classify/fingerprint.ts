import { hash, randomFillSync } from "node:crypto";
import { loadNative } from "../native";

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
 * parse that nobody fingerprints costs nothing extra. Slots of one Int32Array, which the
 * addon's key (native/hello-key.cc, same layout) reads in place; a range is -1 when the
 * hello lacks it.
 */
export type HelloShape = Int32Array;

export const HELLO_LEGACY_VERSION = 0;
/** Highest non-GREASE supported_versions entry, or 0 without that extension. */
export const HELLO_MAX_VERSION = 1;
/** HELLO_SNI | HELLO_QUIC | HELLO_ALPN. */
export const HELLO_FLAGS = 2;
/** First and last byte of the first ALPN value (first << 8 | last), when there is one. */
export const HELLO_ALPN_ENDS = 3;
export const HELLO_CIPHERS_START = 4;
export const HELLO_CIPHERS_END = 5;
/** signature_algorithms list body. */
export const HELLO_SIG_ALGS_START = 6;
export const HELLO_SIG_ALGS_END = 7;
/** supported_groups list body. */
export const HELLO_GROUPS_START = 8;
export const HELLO_GROUPS_END = 9;
/** ec_point_formats list body. */
export const HELLO_POINT_FORMATS_START = 10;
export const HELLO_POINT_FORMATS_END = 11;
/** The extensions block after its length: type, length, body, in the order sent (GREASE included). */
export const HELLO_EXTENSIONS_START = 12;
export const HELLO_EXTENSIONS_END = 13;
// 15-19: what helloKeys() writes (KEYS_DONE, SET_A … ORD_B below).
const HELLO_SLOTS = 20;

export const HELLO_SNI = 1;
export const HELLO_QUIC = 2;
export const HELLO_ALPN = 4;

// One shape at a time: the parsers are synchronous and fingerprint a hello before they
// return. With the addon the slots are its memory (the key reads them in place).
let shape: HelloShape = new Int32Array(HELLO_SLOTS);

/**
 * The shared shape, emptied: no version, no lists found. Valid until the next call. A parse
 * that will fingerprint says so (`fingerprinting`): the first one loads the addon's key,
 * whose slots then become the shape.
 */
export function resetHelloShape(fingerprinting: boolean): HelloShape {
  if (fingerprinting && nativeKey === undefined) nativeKey = loadNativeKey();
  // Stores, not fill(): fill is a call into the runtime, several times slower for 14 slots.
  const s = shape;
  s[HELLO_LEGACY_VERSION] = 0;
  s[HELLO_MAX_VERSION] = 0;
  s[HELLO_FLAGS] = 0;
  s[HELLO_ALPN_ENDS] = 0;
  for (let i = HELLO_CIPHERS_START; i <= HELLO_EXTENSIONS_END; i++) s[i] = -1;
  return s;
}

/** RFC 8701: GREASE values look like 0x?a?a and must be ignored. */
export function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
}

const HEX = Buffer.from("0123456789abcdef", "latin1");
const NO_HASH = "000000000000";

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
function alpnCode(first: number, last: number): string {
  if (isAlnum(first) && isAlnum(last)) return String.fromCharCode(first, last);
  return String.fromCharCode(HEX[first >> 4]!, HEX[last & 0x0f]!);
}

function twoDigits(n: number): string {
  return n > 99 ? "99" : n < 10 ? `0${n}` : String(n);
}

// One fingerprint is computed at a time (the parsers are synchronous), so the inputs and
// the hashed text live in two scratch areas that only grow. A hello is at most 16 KiB, so
// no list holds more than 8192 values.
let values = new Uint16Array(512);
let text = Buffer.allocUnsafe(4096);

function valuesRoom(n: number): void {
  if (n > values.length) {
    const next = new Uint16Array(Math.max(n, values.length * 2));
    next.set(values);
    values = next;
  }
}

function textRoom(n: number): void {
  if (n > text.length) text = Buffer.allocUnsafe(Math.max(n, text.length * 2));
}

// Copies the non-GREASE 16-bit values of b[start, end) to values[at, …); returns how many.
// (The hot loops read the scratch array through a local: a module binding is looked up
// on every access.)
function readList(b: Buffer, start: number, end: number, at: number): number {
  const a = values;
  let n = 0;
  for (let p = start; p + 1 < end; p += 2) {
    const v = (b[p]! << 8) | b[p + 1]!;
    if (!isGrease(v)) a[at + n++] = v;
  }
  return n;
}

// Sorts values[from, to) numerically: insertion sort for a short list (Chrome's 15
// ciphers, most extension lists), the typed array's own sort from 17 entries on (OpenSSL's
// 31 ciphers, and a hostile hello with thousands), where it is faster.
function sortValues(from: number, to: number): void {
  const a = values;
  if (to - from > 16) {
    a.subarray(from, to).sort();
    return;
  }
  for (let i = from + 1; i < to; i++) {
    const v = a[i]!;
    let j = i - 1;
    let w: number;
    while (j >= from && (w = a[j]!) > v) {
      a[j + 1] = w;
      j--;
    }
    a[j + 1] = v;
  }
}

// Writes values[from, to) as 4-digit lower-case hex joined by commas at text[at]; returns the end.
function writeHexList(from: number, to: number, at: number): number {
  textRoom(at + (to - from) * 5);
  let n = at;
  for (let i = from; i < to; i++) {
    const v = values[i]!;
    if (i > from) text[n++] = 0x2c;
    text[n++] = HEX[v >> 12]!;
    text[n++] = HEX[(v >> 8) & 0x0f]!;
    text[n++] = HEX[(v >> 4) & 0x0f]!;
    text[n++] = HEX[v & 0x0f]!;
  }
  return n;
}

// Writes values[from, to) in decimal joined by `-` at text[at]; returns the end.
function writeDecimalList(from: number, to: number, at: number): number {
  textRoom(at + (to - from) * 6 + 1);
  let n = at;
  for (let i = from; i < to; i++) {
    if (i > from) text[n++] = 0x2d;
    n = writeDecimal(values[i]!, n);
  }
  return n;
}

function writeDecimal(v: number, at: number): number {
  let n = at;
  if (v >= 10000) text[n++] = 0x30 + ((v / 10000) | 0);
  if (v >= 1000) text[n++] = 0x30 + (((v / 1000) | 0) % 10);
  if (v >= 100) text[n++] = 0x30 + (((v / 100) | 0) % 10);
  if (v >= 10) text[n++] = 0x30 + (((v / 10) | 0) % 10);
  text[n++] = 0x30 + (v % 10);
  return n;
}

/** The first 12 hex digits of the SHA-256 of text[0, n): JA4's truncated hash. */
function truncatedSha256(n: number): string {
  return hash("sha256", text.subarray(0, n), "hex").slice(0, 12);
}

// Copies the extension types of the shape's block, GREASE left out, to values[at, …);
// with `hashedOnly` also without SNI and ALPN. Returns how many; `counted` (when given)
// receives the count of non-GREASE types.
function readExtensions(b: Buffer, s: HelloShape, at: number, hashedOnly: boolean): number {
  const a = values;
  const end = s[HELLO_EXTENSIONS_END]!;
  let n = 0;
  extensionCount = 0;
  for (let p = s[HELLO_EXTENSIONS_START]!; p >= 0 && p + 4 <= end; p += 4 + ((b[p + 2]! << 8) | b[p + 3]!)) {
    const e = (b[p]! << 8) | b[p + 1]!;
    if (isGrease(e)) continue;
    extensionCount++;
    // SNI and ALPN are already in JA4's part a; leaving them out keeps part c the same
    // whether the client dials a name or an address.
    if (!hashedOnly || (e !== 0x0000 && e !== 0x0010)) a[at + n++] = e;
  }
  return n;
}

let extensionCount = 0;

// Room in `values` for the lists of a shape: every extension header is 4 bytes.
function shapeRoom(s: HelloShape, head: number): void {
  const lists =
    s[HELLO_CIPHERS_END]! -
    s[HELLO_CIPHERS_START]! +
    Math.max(0, s[HELLO_SIG_ALGS_END]! - s[HELLO_SIG_ALGS_START]!) +
    Math.max(0, s[HELLO_GROUPS_END]! - s[HELLO_GROUPS_START]!) +
    Math.max(0, s[HELLO_POINT_FORMATS_END]! - s[HELLO_POINT_FORMATS_START]!) +
    Math.max(0, s[HELLO_EXTENSIONS_END]! - s[HELLO_EXTENSIONS_START]!);
  valuesRoom(head + lists);
}

// Layout of the JA4 inputs in `values`: a fixed head, then the sorted ciphers, the sorted
// extensions without SNI and ALPN, and the signature algorithms in the order sent.
const JA4_HEAD = 9;

/** The JA4 of a parsed ClientHello (FoxIO JA4 specification). */
export function helloJa4(b: Buffer, s: HelloShape, transport: HelloTransport): string {
  shapeRoom(s, JA4_HEAD);
  const flags = s[HELLO_FLAGS]!;
  const hasSni = (flags & HELLO_SNI) !== 0;
  const hasAlpn = (flags & HELLO_ALPN) !== 0;
  const alpnEnds = s[HELLO_ALPN_ENDS]!;
  const version = s[HELLO_MAX_VERSION] !== 0 ? s[HELLO_MAX_VERSION]! : s[HELLO_LEGACY_VERSION]!;
  let at = JA4_HEAD;
  const ciphers = readList(b, s[HELLO_CIPHERS_START]!, s[HELLO_CIPHERS_END]!, at);
  sortValues(at, at + ciphers);
  at += ciphers;
  const hashed = readExtensions(b, s, at, true);
  const extCount = extensionCount;
  sortValues(at, at + hashed);
  at += hashed;
  const sigAlgs = hashed > 0 && s[HELLO_SIG_ALGS_START]! >= 0 ? readList(b, s[HELLO_SIG_ALGS_START]!, s[HELLO_SIG_ALGS_END]!, at) : 0;
  at += sigAlgs;
  const a = `${transport}${versionCode(version)}${hasSni ? "d" : "i"}${twoDigits(ciphers)}${twoDigits(extCount)}${hasAlpn ? alpnCode(alpnEnds >> 8, alpnEnds & 0xff) : "00"}`;
  const part2 = ciphers === 0 ? NO_HASH : truncatedSha256(writeHexList(JA4_HEAD, JA4_HEAD + ciphers, 0));
  let part3 = NO_HASH;
  if (hashed > 0) {
    const extsFrom = JA4_HEAD + ciphers;
    let n = writeHexList(extsFrom, extsFrom + hashed, 0);
    if (sigAlgs > 0) {
      text[n++] = 0x5f; // "_"
      n = writeHexList(extsFrom + hashed, at, n);
    }
    part3 = truncatedSha256(n);
  }
  return `${a}_${part2}_${part3}`;
}

// Layout of the JA3 inputs in `values`: the lists in the order sent.
const JA3_HEAD = 0;

/** JA3 text and its MD5 of a parsed ClientHello. */
export function helloJa3(b: Buffer, s: HelloShape): { readonly ja3: string; readonly ja3Hash: string } {
  shapeRoom(s, JA3_HEAD);
  let at = JA3_HEAD;
  const ciphers = readList(b, s[HELLO_CIPHERS_START]!, s[HELLO_CIPHERS_END]!, at);
  at += ciphers;
  const extCount = readExtensions(b, s, at, false);
  at += extCount;
  const groups = s[HELLO_GROUPS_START]! < 0 ? 0 : readList(b, s[HELLO_GROUPS_START]!, s[HELLO_GROUPS_END]!, at);
  at += groups;
  let pointFormats = 0;
  for (let p = s[HELLO_POINT_FORMATS_START]!; p >= 0 && p < s[HELLO_POINT_FORMATS_END]!; p++) values[at + pointFormats++] = b[p]!;
  at += pointFormats;
  textRoom(8);
  let n = writeDecimal(s[HELLO_LEGACY_VERSION]!, 0);
  let from = JA3_HEAD;
  for (const count of [ciphers, extCount, groups, pointFormats]) {
    textRoom(n + 1);
    text[n++] = 0x2c; // ","
    n = writeDecimalList(from, from + count, n);
    from += count;
  }
  const ja3 = text.toString("latin1", 0, n);
  return { ja3, ja3Hash: hash("md5", text.subarray(0, n), "hex") };
}

/** Which fingerprints a ClientHello parse adds to its fields: all three, JA4 alone (what JA4 rules read), or none. */
export type FingerprintSet = "all" | "ja4" | "none";

// A repeat client sends the same ciphers, extensions and algorithms on every connection:
// its fingerprints are looked up by a 62-bit key of those inputs instead of recomputed.
// The key is tabulation hashing (each 16-bit value through two tables of random words,
// one per 32-bit lane), with tables drawn per process: a client that cannot see them
// cannot craft a hello whose key equals another client's, which would give it that
// client's fingerprints. The GREASE values share one entry, so a client's random GREASE
// choices do not change its key. Ciphers, signature algorithms, groups and point formats
// enter in the order sent (JA4 keeps the signature algorithm order, and clients do not
// reorder the others between connections); the extension types enter twice: as a sum,
// which is the same in any order (JA4 sorts them; chromium shuffles them per connection),
// and in order (JA3 keeps it). The tables take 512 KiB, made at the first fingerprint.
let tables: Int32Array | null = null;

// Lane A at [0, 65536), lane B at [65536, 131072).
function keyTables(): Int32Array {
  if (tables === null) {
    const t = new Int32Array(2 * 65536);
    randomFillSync(t);
    for (let g = 0x1a1a; g <= 0xfafa; g += 0x1010) {
      t[g] = t[0x0a0a]!;
      t[65536 + g] = t[65536 + 0x0a0a]!;
    }
    tables = t;
  }
  return tables;
}

// Ordered combination: a polynomial in the table words, one odd multiplier per lane.
const MA = 0x01000193;
const MB = 0x5bd1e995;
// The keys of the last helloKeys() call, in the shape's last slots: the lanes of the key
// for JA4 alone (the extensions as a set) and of the key for JA4 and JA3 together (in order).
const KEYS_DONE = 15;
const SET_A = 16;
const SET_B = 17;
const ORD_A = 18;
const ORD_B = 19;
// The lanes being folded. A typed array: 32-bit numbers kept in variables outside a
// function are boxed.
const lanes = new Int32Array(2);

// Folds the 16-bit values of b[start, end) into the lanes in order.
function foldList(t: Int32Array, b: Buffer, start: number, end: number): void {
  let a = lanes[0]!;
  let c = lanes[1]!;
  for (let p = start; p + 1 < end; p += 2) {
    const v = (b[p]! << 8) | b[p + 1]!;
    a = (Math.imul(a, MA) + t[v]!) | 0;
    c = (Math.imul(c, MB) + t[65536 + v]!) | 0;
  }
  lanes[0] = a;
  lanes[1] = c;
}

// Folds one 16-bit value into the lanes.
function foldValue(t: Int32Array, v: number): void {
  lanes[0] = (Math.imul(lanes[0]!, MA) + t[v]!) | 0;
  lanes[1] = (Math.imul(lanes[1]!, MB) + t[65536 + v]!) | 0;
}

// Folds a number that is not a code point (a version, the flags, the ALPN ends, a count or
// a length) as its two bytes: a byte is never a GREASE value, so no two numbers share an
// entry (0x1a1a and 0xdada would, as 16-bit values).
function foldScalar(t: Int32Array, v: number): void {
  foldValue(t, (v >> 8) & 0xff);
  foldValue(t, v & 0xff);
}

// The addon's key (native/hello-key.cc): the same hash with tables of its own, several
// times faster than the loops here. Loaded at the first fingerprint; without the addon
// (another platform, a failed build) the key is computed here.
type NativeKey = (hello: Buffer) => void;
let nativeKey: NativeKey | null | undefined;

function loadNativeKey(): NativeKey | null {
  try {
    const addon = loadNative();
    if (typeof addon.helloKey !== "function" || typeof addon.helloKeyInit !== "function") return null;
    const slots = addon.helloKeyInit();
    if (!(slots instanceof Int32Array) || slots.length < HELLO_SLOTS) return null;
    shape = slots;
    return addon.helloKey;
  } catch {
    return null;
  }
}

/** Which implementation computes the fingerprint cache keys in this process: the addon's or the JavaScript one. */
export function helloKeyImplementation(): "native" | "js" {
  if (nativeKey === undefined) nativeKey = loadNativeKey();
  return nativeKey === null ? "js" : "native";
}

/**
 * Switches the cache key implementation (the tests run both) and empties the caches, whose
 * keys the other one would not find. `native` without the addon stays `js`; returns the
 * one in use.
 */
export function useHelloKey(implementation: "native" | "js"): "native" | "js" {
  nativeKey = implementation === "js" ? null : loadNativeKey();
  if (nativeKey === null) shape = new Int32Array(HELLO_SLOTS);
  byJa4Key.clear();
  byJa3Key.clear();
  return helloKeyImplementation();
}

// Writes both keys of the shape's hello into its key slots; false when the shape does not
// fit the buffer (a parser bug: nothing is cached then).
function helloKeys(b: Buffer, s: HelloShape): boolean {
  if (nativeKey === undefined) nativeKey = loadNativeKey();
  if (nativeKey !== null && s === shape) {
    nativeKey(b);
    return s[KEYS_DONE] === 1;
  }
  const t = keyTables();
  lanes[0] = 0;
  lanes[1] = 0;
  // The scalars: versions, flags, the first ALPN value's ends, the extension count; then
  // the lists, each after a length that also says which list follows (signature
  // algorithms, groups and point formats each tag theirs into a range of its own), so
  // that a value cannot move from one list to another without changing the key.
  const extStart = s[HELLO_EXTENSIONS_START]!;
  const extEnd = s[HELLO_EXTENSIONS_END]!;
  let count = 0;
  let sumA = 0;
  let sumB = 0;
  let extA = 0;
  let extB = 0;
  for (let p = extStart; p >= 0 && p + 4 <= extEnd; p += 4 + ((b[p + 2]! << 8) | b[p + 3]!)) {
    const e = (b[p]! << 8) | b[p + 1]!;
    const ta = t[e]!;
    const tb = t[65536 + e]!;
    sumA = (sumA + ta) | 0;
    sumB = (sumB + tb) | 0;
    extA = (Math.imul(extA, MA) + ta) | 0;
    extB = (Math.imul(extB, MB) + tb) | 0;
    count++;
  }
  foldScalar(t, s[HELLO_LEGACY_VERSION]! & 0xffff);
  foldScalar(t, s[HELLO_MAX_VERSION]! & 0xffff);
  foldScalar(t, s[HELLO_FLAGS]! & 0xffff);
  foldScalar(t, s[HELLO_ALPN_ENDS]! & 0xffff);
  foldScalar(t, count & 0xffff);
  const ciphersStart = s[HELLO_CIPHERS_START]!;
  if (ciphersStart >= 0) {
    foldScalar(t, (s[HELLO_CIPHERS_END]! - ciphersStart) & 0xffff);
    foldList(t, b, ciphersStart, s[HELLO_CIPHERS_END]!);
  }
  // The first byte of each tag says which list follows: 0x80-0xff, 0x40-0x7f, 0x20-0x3f.
  const sigStart = s[HELLO_SIG_ALGS_START]!;
  if (sigStart >= 0) {
    foldScalar(t, 0xffff - ((s[HELLO_SIG_ALGS_END]! - sigStart) & 0x7fff));
    foldList(t, b, sigStart, s[HELLO_SIG_ALGS_END]!);
  }
  const groupsStart = s[HELLO_GROUPS_START]!;
  if (groupsStart >= 0) {
    foldScalar(t, 0x7fff - ((s[HELLO_GROUPS_END]! - groupsStart) & 0x3fff));
    foldList(t, b, groupsStart, s[HELLO_GROUPS_END]!);
  }
  const pointsStart = s[HELLO_POINT_FORMATS_START]!;
  if (pointsStart >= 0) {
    // Single bytes, each its own value.
    foldScalar(t, 0x3fff - ((s[HELLO_POINT_FORMATS_END]! - pointsStart) & 0x1fff));
    for (let p = pointsStart; p < s[HELLO_POINT_FORMATS_END]!; p++) foldValue(t, b[p]!);
  }
  const a = Math.imul(lanes[0]!, MA);
  const c = Math.imul(lanes[1]!, MB);
  s[SET_A] = a + sumA;
  s[SET_B] = c + sumB;
  s[ORD_A] = a + extA;
  s[ORD_B] = c + extB;
  return true;
}

interface KnownHello {
  readonly a: number;
  readonly b: number;
  readonly ja4: string;
  readonly ja3: { readonly ja3: string; readonly ja3Hash: string } | null;
}

/**
 * Fingerprints by key: the 30 low bits of lane A pick the entry, which holds both lanes.
 * Bounded; when full it starts over.
 */
class KnownHellos {
  private readonly map = new Map<number, KnownHello>();

  constructor(private readonly limit: number) {}

  get(a: number, b: number): KnownHello | undefined {
    const hit = this.map.get(a & 0x3fffffff);
    return hit !== undefined && hit.a === a && hit.b === b ? hit : undefined;
  }

  clear(): void {
    this.map.clear();
  }

  set(entry: KnownHello): void {
    if (this.map.size >= this.limit) this.map.clear();
    this.map.set(entry.a & 0x3fffffff, entry);
  }
}

const CACHE_LIMIT = 4096;
// By the key with the extensions as a set: the JA4.
const byJa4Key = new KnownHellos(CACHE_LIMIT);
// By the key with the extensions in order: the JA4 and the JA3.
const byJa3Key = new KnownHellos(CACHE_LIMIT);

/** The fingerprints of the last helloFingerprints() call (`ja3` and `ja3Hash` only with `all`). */
export interface FoundFingerprints {
  ja4: string;
  ja3: string;
  ja3Hash: string;
}

const found: FoundFingerprints = { ja4: "", ja3: "", ja3Hash: "" };

/**
 * The JA4, and with `all` also the JA3 and its hash, of a parsed ClientHello, from the
 * caches when its key was seen before. The result is one shared object, valid until the
 * next call.
 */
export function helloFingerprints(b: Buffer, s: HelloShape, transport: HelloTransport, set: "all" | "ja4"): FoundFingerprints {
  if (!helloKeys(b, s)) {
    found.ja4 = helloJa4(b, s, transport);
    if (set === "all") ({ ja3: found.ja3, ja3Hash: found.ja3Hash } = helloJa3(b, s));
    return found;
  }
  if (set === "all") {
    const known = byJa3Key.get(s[ORD_A]!, s[ORD_B]!);
    if (known !== undefined) {
      found.ja4 = known.ja4;
      found.ja3 = known.ja3!.ja3;
      found.ja3Hash = known.ja3!.ja3Hash;
      return found;
    }
  }
  let ja4 = byJa4Key.get(s[SET_A]!, s[SET_B]!)?.ja4;
  if (ja4 === undefined) {
    ja4 = helloJa4(b, s, transport);
    byJa4Key.set({ a: s[SET_A]!, b: s[SET_B]!, ja4, ja3: null });
  }
  found.ja4 = ja4;
  if (set === "ja4") return found;
  const ja3 = helloJa3(b, s);
  byJa3Key.set({ a: s[ORD_A]!, b: s[ORD_B]!, ja4, ja3 });
  found.ja3 = ja3.ja3;
  found.ja3Hash = ja3.ja3Hash;
  return found;
}

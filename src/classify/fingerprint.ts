import { hash } from "node:crypto";

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

/**
 * A bounded map from a fingerprint's canonical inputs (values[0, n)) to what was computed
 * from them. Clients of one software build send the same ciphers, extensions and
 * algorithms on every connection; when full it starts over.
 */
class InputCache<T> {
  private readonly map = new Map<number, { readonly key: Uint16Array; readonly value: T }>();
  private id = 0;

  constructor(private readonly limit: number) {}

  /** What was computed from values[0, n) before, or undefined. */
  get(n: number): T | undefined {
    // A 30-bit FNV-style hash (a small integer key keeps the map fast); the values decide equality.
    const a = values;
    let h = 0x811c9dc5 ^ n;
    for (let i = 0; i < n; i++) h = Math.imul(h ^ a[i]!, 0x01000193);
    this.id = h & 0x3fffffff;
    const hit = this.map.get(this.id);
    if (hit === undefined || hit.key.length !== n) return undefined;
    const key = hit.key;
    for (let i = 0; i < n; i++) if (key[i] !== a[i]) return undefined;
    return hit.value;
  }

  /** get(n) after writing the four list lengths of the inputs to values[at, at + 4). */
  getWithCounts(n: number, at: number, c0: number, c1: number, c2: number, c3: number): T | undefined {
    values[at] = c0;
    values[at + 1] = c1;
    values[at + 2] = c2;
    values[at + 3] = c3;
    return this.get(n);
  }

  /** Remembers `value` for values[0, n), the inputs the last get() looked up. */
  set(n: number, value: T): T {
    if (this.map.size >= this.limit) this.map.clear();
    this.map.set(this.id, { key: values.slice(0, n), value });
    return value;
  }
}

const CACHE_LIMIT = 4096;
const ja4Cache = new InputCache<string>(CACHE_LIMIT);
const ja3Cache = new InputCache<{ readonly ja3: string; readonly ja3Hash: string }>(CACHE_LIMIT);

// Layout of the JA4 inputs in `values`: a fixed head, then the sorted ciphers, the sorted
// extensions without SNI and ALPN, and the signature algorithms in the order sent.
const JA4_HEAD = 9;

/** The JA4 of a parsed ClientHello (FoxIO JA4 specification), from the bounded cache when its inputs were seen before. */
export function helloJa4(b: Buffer, s: HelloShape, transport: HelloTransport): string {
  const exts = s.extensions;
  valuesRoom(JA4_HEAD + ((s.ciphersEnd - s.ciphersStart) >> 1) + exts.length + ((s.sigAlgsEnd - s.sigAlgsStart) >> 1));
  const hasAlpn = s.alpnStart >= 0 && s.alpnEnd > s.alpnStart;
  values[0] = transport === "q" ? 1 : 0;
  values[1] = s.maxVersion !== 0 ? s.maxVersion : s.legacyVersion;
  values[2] = s.hasSni ? 1 : 0;
  values[3] = hasAlpn ? 1 : 0;
  values[4] = hasAlpn ? (b[s.alpnStart]! << 8) | b[s.alpnEnd - 1]! : 0;
  let at = JA4_HEAD;
  const ciphers = readList(b, s.ciphersStart, s.ciphersEnd, at);
  sortValues(at, at + ciphers);
  at += ciphers;
  let extCount = 0;
  let hashed = 0;
  for (let i = 0; i < exts.length; i++) {
    const e = exts[i]!;
    if (isGrease(e)) continue;
    extCount++;
    // SNI and ALPN are already in part a; leaving them out keeps part c the same whether
    // the client dials a name or an address.
    if (e !== 0x0000 && e !== 0x0010) values[at + hashed++] = e;
  }
  sortValues(at, at + hashed);
  at += hashed;
  const sigAlgs = hashed > 0 && s.sigAlgsStart >= 0 ? readList(b, s.sigAlgsStart, s.sigAlgsEnd, at) : 0;
  at += sigAlgs;
  const known = ja4Cache.getWithCounts(at, 5, ciphers, extCount, hashed, sigAlgs);
  if (known !== undefined) return known;
  const a = `${transport}${versionCode(values[1]!)}${s.hasSni ? "d" : "i"}${twoDigits(ciphers)}${twoDigits(extCount)}${hasAlpn ? alpnCode(values[4]! >> 8, values[4]! & 0xff) : "00"}`;
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
  return ja4Cache.set(at, `${a}_${part2}_${part3}`);
}

// Layout of the JA3 inputs in `values`: a fixed head, then the lists in the order sent.
const JA3_HEAD = 5;

/** JA3 text and its MD5 of a parsed ClientHello, from the bounded cache when its inputs were seen before. */
export function helloJa3(b: Buffer, s: HelloShape): { readonly ja3: string; readonly ja3Hash: string } {
  const exts = s.extensions;
  valuesRoom(JA3_HEAD + ((s.ciphersEnd - s.ciphersStart) >> 1) + exts.length + ((s.groupsEnd - s.groupsStart) >> 1) + (s.pointFormatsEnd - s.pointFormatsStart));
  let at = JA3_HEAD;
  const ciphers = readList(b, s.ciphersStart, s.ciphersEnd, at);
  at += ciphers;
  let extCount = 0;
  for (let i = 0; i < exts.length; i++) if (!isGrease(exts[i]!)) values[at + extCount++] = exts[i]!;
  at += extCount;
  const groups = s.groupsStart < 0 ? 0 : readList(b, s.groupsStart, s.groupsEnd, at);
  at += groups;
  let pointFormats = 0;
  for (let p = s.pointFormatsStart; p >= 0 && p < s.pointFormatsEnd; p++) values[at + pointFormats++] = b[p]!;
  at += pointFormats;
  values[0] = s.legacyVersion;
  const known = ja3Cache.getWithCounts(at, 1, ciphers, extCount, groups, pointFormats);
  if (known !== undefined) return known;
  textRoom(8);
  let n = writeDecimal(s.legacyVersion, 0);
  let from = JA3_HEAD;
  for (const count of [ciphers, extCount, groups, pointFormats]) {
    textRoom(n + 1);
    text[n++] = 0x2c; // ","
    n = writeDecimalList(from, from + count, n);
    from += count;
  }
  const ja3 = text.toString("latin1", 0, n);
  return ja3Cache.set(at, { ja3, ja3Hash: hash("md5", text.subarray(0, n), "hex") });
}

/** Which fingerprints a ClientHello parse adds to its fields: all three, JA4 alone (what JA4 rules read), or none. */
export type FingerprintSet = "all" | "ja4" | "none";

/** Sets `ja4`, and with `all` also `ja3` and `ja3Hash`, on the fields of a parsed ClientHello. */
export function addFingerprints(fields: { ja4?: string; ja3?: string; ja3Hash?: string }, b: Buffer, s: HelloShape, transport: HelloTransport, set: FingerprintSet): void {
  if (set === "none") return;
  fields.ja4 = helloJa4(b, s, transport);
  if (set === "ja4") return;
  const ja3 = helloJa3(b, s);
  fields.ja3 = ja3.ja3;
  fields.ja3Hash = ja3.ja3Hash;
}

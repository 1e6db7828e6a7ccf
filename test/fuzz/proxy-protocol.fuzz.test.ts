/**
 * Property tests for the PROXY protocol parser and encoder.
 *
 * Every property checks that the parser returns a result or throws only a
 * TrafficError with code ERR_PROXY_V1 / ERR_PROXY_V2, that results are
 * consistent with the bytes (lengths, versions, canonical addresses), and that
 * feeding a prefix never contradicts feeding the whole (a prefix of a valid
 * header is never rejected; a rejected prefix stays rejected).
 *
 * Default runs add up to more than 60,000 generated inputs (asserted by the
 * last test). FUZZ_RUNS=<n> raises every property to at least n runs;
 * FUZZ_SEED=<n> replays a seed that fast-check reported.
 */
import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TrafficError } from "../../src/errors";
import { parseIPv4Strict, tryParseIp } from "../../src/net/ip";
import {
  crc32c,
  encodeProxyHeaderV1,
  encodeProxyHeaderV2,
  parseProxyHeader,
  type ProxyEndpoint,
  type ProxyHeader,
  type ProxyHeaderV2Input,
  type ProxySslInfo,
  type ProxyTransport,
} from "../../src/proxy-protocol";

const envRuns = Number(process.env.FUZZ_RUNS);
const envSeed = Number(process.env.FUZZ_SEED);

function runs(base: number): number {
  return Number.isFinite(envRuns) && envRuns > base ? Math.floor(envRuns) : base;
}

function params(base: number): fc.Parameters<unknown> {
  return Number.isFinite(envSeed) ? { numRuns: runs(base), seed: envSeed } : { numRuns: runs(base) };
}

/** Generous per-test timeout, scaled with FUZZ_RUNS. */
function timeout(base: number): number {
  return Math.max(120_000, Math.ceil((runs(base) / base) * 120_000));
}

let generated = 0;

const SIG = Buffer.from("0d0a0d0a000d0a515549540a", "hex");

// ---------------------------------------------------------------------------
// Outcome of one parse, with the invariants every outcome must satisfy.

type Outcome =
  | { readonly kind: "header"; readonly header: ProxyHeader }
  | { readonly kind: "incomplete"; readonly version: 0 | 1 | 2 }
  | { readonly kind: "not-proxy" }
  | { readonly kind: "error"; readonly code: "ERR_PROXY_V1" | "ERR_PROXY_V2"; readonly reason: string };

/**
 * Plain assertions for the per-input checks: they run for every prefix of
 * every input, where vitest's `expect` would dominate the run time.
 */
function check(condition: boolean, message: string, data: Buffer): asserts condition {
  if (!condition) throw new Error(`${message} (input ${data.toString("hex")})`);
}

function same(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(a, b);
}

function outcome(data: Buffer, maxV2Length?: number): Outcome {
  let result: Outcome;
  try {
    result = parseProxyHeader(data, maxV2Length === undefined ? undefined : { maxV2Length });
  } catch (err) {
    if (!(err instanceof TrafficError)) throw err;
    if (err.code !== "ERR_PROXY_V1" && err.code !== "ERR_PROXY_V2") throw err;
    check(err.reason.length > 0, "an error must say why", data);
    // The code names the version the first byte announced.
    check(err.code === (data[0] === 0x50 ? "ERR_PROXY_V1" : "ERR_PROXY_V2"), `wrong error code ${err.code}`, data);
    return { kind: "error", code: err.code, reason: err.reason };
  }
  checkResult(data, result, maxV2Length);
  return result;
}

const V1_PREFIX = Buffer.from("PROXY ", "latin1");

/** Address block size per family (proxy-protocol.txt 2.2). */
const ADDRESS_BLOCK: Readonly<Record<ProxyHeader["family"], number>> = {
  unspec: 0,
  tcp4: 12,
  udp4: 12,
  tcp6: 36,
  udp6: 36,
  "unix-stream": 216,
  "unix-dgram": 216,
};

/** True when data and marker agree on their common length. */
function agreesWith(data: Buffer, marker: Buffer): boolean {
  const n = Math.min(data.length, marker.length);
  return data.subarray(0, n).equals(marker.subarray(0, n));
}

function isCanonicalIp(text: string | undefined): boolean {
  return text !== undefined && tryParseIp(text)?.text === text;
}

function isPort(port: number | undefined): boolean {
  return port !== undefined && Number.isInteger(port) && port >= 0 && port <= 65535;
}

function checkResult(data: Buffer, r: Outcome, maxV2Length = 16 + 0xffff): void {
  switch (r.kind) {
    case "not-proxy":
      // Neither "PROXY " nor the v2 signature agrees with the bytes received.
      check(data.length > 0 && !agreesWith(data, V1_PREFIX) && !agreesWith(data, SIG), "not-proxy for a PROXY prefix", data);
      return;
    case "incomplete": {
      const version = data.length === 0 ? 0 : data[0] === 0x50 ? 1 : 2;
      check(r.version === version, `incomplete with version ${r.version}, expected ${version}`, data);
      check(version !== 0 || data.length === 0, "version 0 only for no bytes", data);
      if (r.version === 1) check(data.length <= 106, "v1 incomplete past 106 bytes without CRLF", data);
      if (r.version === 2 && data.length >= 16) check(data.length < 16 + data.readUInt16BE(14), "v2 incomplete with all bytes in", data);
      return;
    }
    case "header": {
      const h = r.header;
      check(h.length <= data.length, "header longer than the input", data);
      if (h.version === 1) {
        check(h.length <= 107, "v1 header over 107 bytes", data);
        check(data[h.length - 2] === 0x0d && data[h.length - 1] === 0x0a, "v1 header not ending in CRLF", data);
        check(h.tlvs.length === 0 && h.command === "proxy", "v1 header with TLVs or LOCAL", data);
      } else {
        check(h.length === 16 + data.readUInt16BE(14), "v2 length is not 16 + len", data);
        check(h.length <= maxV2Length, "v2 header over maxV2Length", data);
        // The TLVs tile the rest of the block exactly (LOCAL: the block is skipped).
        let tlvBytes = 0;
        for (const t of h.tlvs) tlvBytes += 3 + t.value.length;
        const rest = h.command === "local" ? 0 : h.length - 16 - ADDRESS_BLOCK[h.family];
        check(tlvBytes === rest, `TLVs cover ${tlvBytes} bytes of ${rest}`, data);
      }
      switch (h.family) {
        case "tcp4":
        case "udp4":
          check(parseIPv4Strict(h.sourceAddress!) >= 0 && parseIPv4Strict(h.destinationAddress!) >= 0, "bad IPv4 text", data);
          check(isPort(h.sourcePort) && isPort(h.destinationPort), "bad ports", data);
          break;
        case "tcp6":
        case "udp6":
          // Canonical as tryParseIp writes it (IPv4-mapped ones unwrapped).
          check(isCanonicalIp(h.sourceAddress) && isCanonicalIp(h.destinationAddress), "IPv6 text not canonical", data);
          check(isPort(h.sourcePort) && isPort(h.destinationPort), "bad ports", data);
          break;
        case "unix-stream":
        case "unix-dgram":
          check(typeof h.sourceAddress === "string" && typeof h.destinationAddress === "string", "UNIX paths missing", data);
          check(h.sourcePort === undefined && h.destinationPort === undefined, "UNIX with ports", data);
          break;
        default:
          check(h.sourceAddress === undefined && h.destinationAddress === undefined && h.sourcePort === undefined, "unspec with addresses", data);
      }
      if (h.uniqueId !== undefined) check(h.uniqueId.length <= 128, "unique id over 128 bytes", data);
      return;
    }
    default:
      return;
  }
}

/**
 * What parsing data[0, k) may give, knowing what parsing all of `data` gave:
 * a header is final once its bytes are in; before that, only `incomplete`;
 * an error or not-proxy verdict may be preceded by `incomplete` but never
 * by the other verdicts.
 */
function checkPrefix(data: Buffer, whole: Outcome, prefix: Outcome, k: number): void {
  const where = `prefix of ${k} bytes gave ${prefix.kind} where the whole gave ${whole.kind}`;
  switch (whole.kind) {
    case "header":
      if (k >= whole.header.length) check(same(prefix, whole), where, data);
      else check(prefix.kind === "incomplete", where, data);
      return;
    case "incomplete":
      check(prefix.kind === "incomplete", where, data);
      return;
    case "not-proxy":
      check(prefix.kind === "incomplete" || prefix.kind === "not-proxy", where, data);
      return;
    case "error":
      check(prefix.kind === "incomplete" || (prefix.kind === "error" && prefix.code === whole.code), where, data);
      return;
  }
}

function checkPrefixes(data: Buffer, cuts: readonly number[] | "all", maxV2Length?: number): Outcome {
  const whole = outcome(data, maxV2Length);
  if (cuts === "all") {
    for (let k = 0; k < data.length; k++) checkPrefix(data, whole, outcome(data.subarray(0, k), maxV2Length), k);
  } else {
    for (const c of cuts) {
      const k = c % (data.length + 1);
      checkPrefix(data, whole, outcome(data.subarray(0, k), maxV2Length), k);
    }
  }
  // A header does not depend on what follows it.
  if (whole.kind === "header") {
    check(same(outcome(data.subarray(0, whole.header.length), maxV2Length), whole), "header changed without the payload", data);
  }
  return whole;
}

// ---------------------------------------------------------------------------
// Arbitraries

const port = fc.integer({ min: 0, max: 65535 });

const ipv4 = fc.ipV4();

/** IPv6 text from eight groups biased towards zero runs, written in full or via fast-check's forms. */
const ipv6 = fc.oneof(
  fc
    .array(fc.oneof(fc.constant(0), fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 })
    .map((groups) => groups.map((g) => g.toString(16)).join(":")),
  fc.ipV6().filter((text) => tryParseIp(text) !== null),
  fc.ipV4().map((v4) => `::ffff:${v4}`),
);

const ipAddress = fc.oneof(ipv4, ipv6);

const latin1Char = fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c));
const asciiText = (maxLength: number) => fc.string({ unit: "binary-ascii", maxLength });
const utf8Text = (maxLength: number) => fc.string({ unit: "grapheme", maxLength });

/** A UNIX path: no NUL, at most 108 bytes of UTF-8 (empty for an unbound client socket). */
const unixPath = fc.oneof(
  utf8Text(30).filter((p) => !p.includes("\0") && Buffer.byteLength(p, "utf8") <= 108),
  fc.constant(""),
  fc.constant("/".repeat(108)),
);

const DECODED_TYPES = new Set([0x01, 0x02, 0x03, 0x05, 0x20, 0x30]);

const rawTlv = fc.record({
  type: fc.oneof(fc.constantFrom(0x04, 0x00, 0x06, 0x21, 0xe0, 0xee, 0xf0, 0xff), fc.integer({ min: 0, max: 255 })).filter((t) => !DECODED_TYPES.has(t)),
  value: fc.uint8Array({ maxLength: 40 }),
});

const sslInfo: fc.Arbitrary<ProxySslInfo> = fc.record(
  {
    client: fc.integer({ min: 0, max: 255 }),
    verify: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffffffff })),
    version: asciiText(12),
    cn: utf8Text(20),
    cipher: asciiText(30),
    sigAlg: asciiText(12),
    keyAlg: asciiText(12),
  },
  { requiredKeys: ["client", "verify"] },
);

interface V2Case {
  readonly input: ProxyHeaderV2Input;
  readonly expected: ProxyHeader | Omit<ProxyHeader, "length">;
}

const v2Case: fc.Arbitrary<V2Case> = fc
  .record({
    command: fc.constantFrom<"proxy" | "local">("proxy", "proxy", "proxy", "local"),
    transport: fc.constantFrom<ProxyTransport>("tcp", "udp", "unix-stream", "unix-dgram"),
    endpoints: fc.boolean(),
    src: ipAddress,
    dst: ipAddress,
    sport: port,
    dport: port,
    srcPath: unixPath,
    dstPath: unixPath,
    alpn: fc.option(fc.string({ unit: latin1Char, maxLength: 20 }), { nil: undefined }),
    authority: fc.option(utf8Text(30), { nil: undefined }),
    uniqueId: fc.option(fc.uint8Array({ maxLength: 128 }), { nil: undefined }),
    netns: fc.option(asciiText(16), { nil: undefined }),
    ssl: fc.option(sslInfo, { nil: undefined }),
    tlvs: fc.array(rawTlv, { maxLength: 4 }),
    crc32c: fc.boolean(),
  })
  .map((c): V2Case => {
    const unix = c.transport === "unix-stream" || c.transport === "unix-dgram";
    const endpoints = c.command === "proxy" && c.endpoints;
    const source: ProxyEndpoint = unix ? { address: c.srcPath } : { address: c.src, port: c.sport };
    const destination: ProxyEndpoint = unix ? { address: c.dstPath } : { address: c.dst, port: c.dport };
    const input: ProxyHeaderV2Input = {
      command: c.command,
      transport: c.transport,
      ...(endpoints ? { source, destination } : {}),
      ...(c.alpn !== undefined ? { alpn: c.alpn } : {}),
      ...(c.authority !== undefined ? { authority: c.authority } : {}),
      ...(c.uniqueId !== undefined ? { uniqueId: c.uniqueId } : {}),
      ...(c.netns !== undefined ? { netns: c.netns } : {}),
      ...(c.ssl !== undefined ? { ssl: c.ssl } : {}),
      tlvs: c.tlvs,
      crc32c: c.crc32c,
    };
    if (c.command === "local") {
      // 2.2: LOCAL discards the block, TLVs included.
      return { input, expected: { version: 2, command: "local", family: "unspec", tlvs: [] } };
    }
    let family: ProxyHeader["family"] = "unspec";
    let addresses: Partial<ProxyHeader> = {};
    if (endpoints && unix) {
      family = c.transport as "unix-stream" | "unix-dgram";
      addresses = { sourceAddress: c.srcPath, destinationAddress: c.dstPath };
    } else if (endpoints) {
      const s = tryParseIp(c.src)!;
      const d = tryParseIp(c.dst)!;
      const v6 = s.family === 6 || d.family === 6;
      family = c.transport === "tcp" ? (v6 ? "tcp6" : "tcp4") : v6 ? "udp6" : "udp4";
      addresses = { sourceAddress: s.text, sourcePort: c.sport, destinationAddress: d.text, destinationPort: c.dport };
    }
    const types: number[] = [];
    if (c.crc32c) types.push(0x03);
    if (c.alpn !== undefined) types.push(0x01);
    if (c.authority !== undefined) types.push(0x02);
    if (c.uniqueId !== undefined) types.push(0x05);
    if (c.ssl !== undefined) types.push(0x20);
    if (c.netns !== undefined) types.push(0x30);
    for (const t of c.tlvs) types.push(t.type);
    const expected = {
      version: 2 as const,
      command: "proxy" as const,
      family,
      ...addresses,
      // Only the type sequence and the raw TLVs' values are known up front.
      tlvs: types.map((type) => ({ type, value: expect.any(Buffer) })),
      ...(c.alpn !== undefined ? { alpn: c.alpn } : {}),
      ...(c.authority !== undefined ? { authority: c.authority } : {}),
      ...(c.uniqueId !== undefined ? { uniqueId: Buffer.from(c.uniqueId) } : {}),
      ...(c.netns !== undefined ? { netns: c.netns } : {}),
      ...(c.ssl !== undefined ? { ssl: c.ssl } : {}),
    };
    return { input, expected };
  });

interface V1Case {
  readonly bytes: Buffer;
  readonly expected: Omit<ProxyHeader, "length">;
}

const v1Case: fc.Arbitrary<V1Case> = fc
  .record({ unknown: fc.boolean(), src: ipAddress, dst: ipAddress, sport: port, dport: port })
  .map((c): V1Case => {
    if (c.unknown && c.sport % 4 === 0) {
      return { bytes: encodeProxyHeaderV1(), expected: { version: 1, command: "proxy", family: "unspec", tlvs: [] } };
    }
    const s = tryParseIp(c.src)!;
    const d = tryParseIp(c.dst)!;
    return {
      bytes: encodeProxyHeaderV1({ source: { address: c.src, port: c.sport }, destination: { address: c.dst, port: c.dport } }),
      expected: {
        version: 1,
        command: "proxy",
        family: s.family === 6 || d.family === 6 ? "tcp6" : "tcp4",
        sourceAddress: s.text,
        sourcePort: c.sport,
        destinationAddress: d.text,
        destinationPort: c.dport,
        tlvs: [],
      },
    };
  });

/** Captured from HAProxy 2.6 (see the unit tests): plain v2, v2 with TLVs and CRC32C, LOCAL, v1. */
const CAPTURED = [
  "0d0a0d0a000d0a515549540a2111000c7f0000017f000001de9aa1e3",
  "0d0a0d0a000d0a515549540a211100a57f0000017f000001e7fea7030300045bf5612101000268320200106170702e6578616d706c652e7465737405002463373563663839662d636631362d343961352d393838662d6363653439613865376366632000500700000000210007544c5376312e3322000e636c69656e742e6578616d706c652500075253413230343824000a5253412d534841323536230016544c535f4145535f3235365f47434d5f534841333834",
  "0d0a0d0a000d0a515549540a20000000",
  "50524f58592054435034203132372e302e302e31203132372e302e302e312035333433302033353937370d0a",
].map((h) => Buffer.from(h, "hex"));

/** Any valid header: encoded from random input, or one HAProxy sent. */
const validHeader: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 3, arbitrary: v2Case.map((c) => encodeProxyHeaderV2(c.input)) },
  { weight: 2, arbitrary: v1Case.map((c) => c.bytes) },
  { weight: 1, arbitrary: fc.constantFrom(...CAPTURED) },
);

type Mutation =
  | { readonly op: "flip"; readonly pos: number; readonly bit: number }
  | { readonly op: "set"; readonly pos: number; readonly byte: number }
  | { readonly op: "insert"; readonly pos: number; readonly bytes: Uint8Array }
  | { readonly op: "delete"; readonly pos: number; readonly count: number }
  | { readonly op: "truncate"; readonly pos: number };

const position = fc.nat({ max: 1 << 20 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant("flip" as const), pos: position, bit: fc.integer({ min: 0, max: 7 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("set" as const),
      pos: position,
      byte: fc.oneof(fc.constantFrom(0x00, 0x0a, 0x0d, 0x20, 0xff, 0x21, 0x11, 0x3a, 0x2e, 0x30), fc.integer({ min: 0, max: 255 })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("insert" as const), pos: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("delete" as const), pos: position, count: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("truncate" as const), pos: position }) },
);

function mutate(data: Buffer, mutations: readonly Mutation[]): Buffer {
  let out = Buffer.from(data);
  for (const m of mutations) {
    const at = out.length === 0 ? 0 : m.pos % out.length;
    switch (m.op) {
      case "flip":
        if (out.length > 0) out[at] = out[at]! ^ (1 << m.bit);
        break;
      case "set":
        if (out.length > 0) out[at] = m.byte;
        break;
      case "insert":
        out = Buffer.concat([out.subarray(0, at), m.bytes, out.subarray(at)]);
        break;
      case "delete":
        out = Buffer.concat([out.subarray(0, at), out.subarray(at + m.count)]);
        break;
      case "truncate":
        out = out.subarray(0, at);
        break;
    }
  }
  return out;
}

const payload = fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 32 }));

/** Bit-at-a-time CRC32C, independent of the table-driven module. */
function slowCrc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

// ---------------------------------------------------------------------------
// A reference v1 decision written the slow way (split and regexes), to compare
// with the byte-level parser on complete lines.

type Verdict =
  | { readonly kind: "header"; readonly header: ProxyHeader }
  | { readonly kind: "error" }
  | { readonly kind: "incomplete" }
  | { readonly kind: "not-proxy" }
  | null;

const PORT_RE = /^(0|[1-9][0-9]{0,4})$/;
const IPV6_CHARS_RE = /^[0-9A-Fa-f:.]+$/;

function referenceV1(s: string): Verdict {
  if (!s.startsWith("PROXY ")) return { kind: "not-proxy" };
  const lineEnd = s.search(/[\r\n]/);
  if (lineEnd < 0) return s.length >= 106 ? { kind: "error" } : null; // prefix judgement: left to the consistency checks
  if (lineEnd > 105 || s[lineEnd] === "\n") return { kind: "error" };
  if (lineEnd + 1 < s.length && s[lineEnd + 1] !== "\n") return { kind: "error" };
  const parts = s.slice(0, lineEnd).split(" ");
  let header: ProxyHeader | null = null;
  if (parts[0] === "PROXY" && parts[1] === "UNKNOWN") {
    header = { version: 1, command: "proxy", family: "unspec", tlvs: [], length: lineEnd + 2 };
  } else if (parts[0] === "PROXY" && (parts[1] === "TCP4" || parts[1] === "TCP6") && parts.length === 6) {
    const v4 = parts[1] === "TCP4";
    const addr = (a: string): string | null => {
      if (v4) return parseIPv4Strict(a) >= 0 ? a : null;
      if (!IPV6_CHARS_RE.test(a) || !a.includes(":")) return null;
      return tryParseIp(a)?.text ?? null;
    };
    const p = (t: string): number | null => (PORT_RE.test(t) && Number(t) <= 65535 ? Number(t) : null);
    const [src, dst, sp, dp] = [addr(parts[2]!), addr(parts[3]!), p(parts[4]!), p(parts[5]!)];
    if (src !== null && dst !== null && sp !== null && dp !== null) {
      header = {
        version: 1,
        command: "proxy",
        family: v4 ? "tcp4" : "tcp6",
        sourceAddress: src,
        sourcePort: sp,
        destinationAddress: dst,
        destinationPort: dp,
        tlvs: [],
        length: lineEnd + 2,
      };
    }
  }
  if (header === null) return { kind: "error" };
  return lineEnd + 1 < s.length ? { kind: "header", header } : { kind: "incomplete" };
}

const v1Token = fc.oneof(
  { weight: 4, arbitrary: ipv4 },
  { weight: 4, arbitrary: ipv6 },
  { weight: 1, arbitrary: fc.ipV4Extended() },
  { weight: 1, arbitrary: fc.mixedCase(fc.ipV6()) },
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 70000 }).map(String) },
  {
    weight: 1,
    arbitrary: fc.constantFrom("0", "00", "01", "080", "-1", "+1", "65535", "65536", "", "1e3", "0x1", "fe80::1%eth0", "1.2.3.04", "::", "1::2::3", "1:2:3:4:5:6:7:8:9"),
  },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(..."0123456789.:abcdefABCDEFx%- \t"), maxLength: 12 }) },
);

/** Mostly `usual`, sometimes one of `odd`. */
function mostly<T>(usual: T, odd: readonly T[]): fc.Arbitrary<T> {
  return fc.oneof({ weight: 15, arbitrary: fc.constant(usual) }, { weight: 1, arbitrary: fc.constantFrom(...odd) });
}

const v1Sep = mostly(" ", ["  ", "\t", ""]);
const v1End = mostly("\r\n", ["\n", "\r", "\rX", "", "\r\r\n", " \r\n"]);
const v1Tail = fc.constantFrom("", "GET / HTTP/1.1\r\n", "\r\n", "\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
const v1Port = fc.oneof({ weight: 12, arbitrary: port.map(String) }, { weight: 1, arbitrary: v1Token });
const v1Odd = fc.oneof({ weight: 12, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: v1Token });

/** Mostly well-formed TCP4/TCP6 lines with the odd wrong token, separator or ending. */
const v1NearValidLine = fc
  .record({
    v6: fc.boolean(),
    src: v1Odd,
    dst: v1Odd,
    a4: fc.tuple(ipv4, ipv4),
    a6: fc.tuple(ipv6, ipv6),
    sport: v1Port,
    dport: v1Port,
    seps: fc.array(v1Sep, { minLength: 5, maxLength: 5 }),
    end: v1End,
    tail: v1Tail,
  })
  .map((c) => {
    const [s, d] = c.v6 ? c.a6 : c.a4;
    const fields = [c.v6 ? "TCP6" : "TCP4", c.src ?? s, c.dst ?? d, c.sport, c.dport];
    const line = `PROXY${fields.map((f, i) => c.seps[i]! + f).join("")}`;
    return Buffer.from(line + c.end + c.tail, "latin1");
  });

/** Any protocol token and any number of fields. */
const v1LooseLine = fc
  .record({
    proto: fc.constantFrom("TCP4", "TCP4", "TCP6", "TCP6", "UNKNOWN", "TCP5", "tcp4", "UDP4", "", "UNKNOWNX", "TCP"),
    fields: fc.array(v1Token, { minLength: 0, maxLength: 6 }),
    seps: fc.array(v1Sep, { minLength: 6, maxLength: 6 }),
    end: v1End,
    tail: v1Tail,
  })
  .map((c) => {
    const line = `PROXY ${c.proto}${c.fields.map((f, i) => c.seps[i]! + f).join("")}`;
    return Buffer.from(line + c.end + c.tail, "latin1");
  });

const v1Line = fc.oneof({ weight: 3, arbitrary: v1NearValidLine }, { weight: 2, arbitrary: v1LooseLine });

// ---------------------------------------------------------------------------

describe("PROXY protocol parser, fuzzed", () => {
  it(
    "random bytes",
    () => {
      fc.assert(
        fc.property(
          fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 300 })),
          fc.array(fc.nat(), { maxLength: 4 }),
          (bytes, cuts) => {
            generated++;
            checkPrefixes(Buffer.from(bytes), cuts);
          },
        ),
        params(12_000),
      );
    },
    timeout(12_000),
  );

  it(
    "bytes after 'PROXY ' drawn from the v1 alphabet",
    () => {
      const alphabet = fc.constantFrom(..."TCP46UNKOW0123456789.:abcdefABCDEF   \r\n%x-+\0".split(""));
      const start = fc.constantFrom("", "TCP4 ", "TCP6 ", "UNKNOWN", "TCP4 1.2.3.4 ", "TCP6 ::1 ");
      fc.assert(
        fc.property(start, fc.string({ unit: alphabet, maxLength: 130 }), fc.array(fc.nat(), { maxLength: 4 }), (head, text, cuts) => {
          generated++;
          const data = Buffer.from(`PROXY ${head}${text}`, "latin1");
          const whole = checkPrefixes(data, cuts);
          expect(whole.kind).not.toBe("not-proxy");
          if (whole.kind === "error") expect(whole.code).toBe("ERR_PROXY_V1");
        }),
        params(12_000),
      );
    },
    timeout(12_000),
  );

  it(
    "bytes after the v2 signature, with plausible fixed fields",
    () => {
      const verCmd = fc.oneof(fc.constantFrom(0x20, 0x21, 0x21, 0x21), fc.integer({ min: 0, max: 255 }));
      const fam = fc.oneof(fc.constantFrom(0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32), fc.integer({ min: 0, max: 255 }));
      const tlvish = fc.array(
        fc.tuple(fc.constantFrom(0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x30, 0xe0), fc.uint8Array({ maxLength: 12 }), fc.integer({ min: -2, max: 2 })),
        { maxLength: 5 },
      );
      fc.assert(
        fc.property(
          verCmd,
          fam,
          fc.uint8Array({ maxLength: 240 }),
          tlvish,
          fc.integer({ min: -3, max: 3 }),
          fc.option(fc.integer({ min: 16, max: 400 }), { nil: undefined }),
          fc.array(fc.nat(), { maxLength: 4 }),
          (vc, f, addr, tlvs, lenSkew, maxV2Length, cuts) => {
            generated++;
            // TLVs whose declared length may be off by a little from the value given.
            const body = Buffer.concat([
              addr,
              ...tlvs.map(([type, value, skew]) => {
                const declared = Math.max(0, value.length + skew);
                return Buffer.concat([Buffer.from([type, declared >> 8, declared & 0xff]), value]);
              }),
            ]);
            const len = Math.max(0, Math.min(0xffff, body.length + lenSkew));
            const data = Buffer.concat([SIG, Buffer.from([vc, f, len >> 8, len & 0xff]), body]);
            const whole = checkPrefixes(data, cuts, maxV2Length);
            expect(whole.kind).not.toBe("not-proxy");
            if (whole.kind === "error") expect(whole.code).toBe("ERR_PROXY_V2");
          },
        ),
        params(12_000),
      );
    },
    timeout(12_000),
  );

  it(
    "mutated valid headers (bit flips, byte sets, insertions, deletions, truncation)",
    () => {
      fc.assert(
        fc.property(validHeader, payload, fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 4 }), (h, p, ms, cuts) => {
          generated++;
          checkPrefixes(mutate(Buffer.concat([h, p]), ms), cuts);
        }),
        params(15_000),
      );
    },
    timeout(15_000),
  );

  it(
    "truncation at every length, of valid and mutated headers",
    () => {
      fc.assert(
        fc.property(validHeader, payload, fc.array(mutation, { maxLength: 2 }), (h, p, ms) => {
          generated++;
          const data = mutate(Buffer.concat([h, p]), ms);
          const whole = checkPrefixes(data, "all");
          if (ms.length === 0) {
            // Unmutated: every strict prefix of the header is incomplete, the header parses.
            expect(whole.kind).toBe("header");
            if (whole.kind === "header") expect(whole.header.length).toBe(h.length);
          }
        }),
        params(5_000),
      );
    },
    timeout(5_000),
  );

  it(
    "split feeding: chunks accumulated as a socket delivers them",
    () => {
      fc.assert(
        fc.property(validHeader, payload, fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 30 }), (h, p, sizes) => {
          generated++;
          const stream = Buffer.concat([h, p]);
          let received = Buffer.alloc(0);
          let offset = 0;
          let i = 0;
          let result: Outcome = outcome(received);
          while (result.kind === "incomplete" && offset < stream.length) {
            const size = sizes[i++ % sizes.length]!;
            received = Buffer.concat([received, stream.subarray(offset, offset + size)]);
            offset += size;
            result = outcome(received);
          }
          expect(result.kind).toBe("header");
          if (result.kind === "header") {
            expect(result.header.length).toBe(h.length);
            expect(stream.subarray(result.header.length)).toEqual(Buffer.from(p));
            expect(result).toEqual(outcome(h));
          }
        }),
        params(4_000),
      );
    },
    timeout(4_000),
  );

  it(
    "v1 lines agree with a reference decision",
    () => {
      fc.assert(
        fc.property(v1Line, fc.array(fc.nat(), { maxLength: 4 }), (data, cuts) => {
          generated++;
          const whole = checkPrefixes(data, cuts);
          const expected = referenceV1(data.toString("latin1"));
          if (expected === null) return;
          if (expected.kind === "header") expect(whole).toEqual(expected);
          else expect(whole.kind).toBe(expected.kind);
        }),
        params(10_000),
      );
    },
    timeout(10_000),
  );

  it(
    "roundtrip v2: encode, then parse gives the same fields",
    () => {
      fc.assert(
        fc.property(v2Case, payload, (c, p) => {
          generated++;
          const bytes = encodeProxyHeaderV2(c.input);
          const r = outcome(Buffer.concat([bytes, p]));
          expect(r.kind).toBe("header");
          if (r.kind !== "header") return;
          expect(r.header).toEqual({ ...c.expected, length: bytes.length });
          // Raw TLVs come back byte for byte, after the decoded ones.
          const raw = c.input.command === "local" ? [] : (c.input.tlvs ?? []);
          const tail = r.header.tlvs.slice(r.header.tlvs.length - raw.length);
          expect(tail.map((t) => [t.type, Buffer.from(t.value)])).toEqual(raw.map((t) => [t.type, Buffer.from(t.value)]));
          if (c.input.crc32c === true && c.input.command !== "local") {
            const crcTlv = r.header.tlvs.find((t) => t.type === 0x03)!;
            const zeroed = Buffer.from(bytes);
            const at = bytes.indexOf(crcTlv.value, 16);
            zeroed.fill(0, at, at + 4);
            expect(slowCrc32c(zeroed)).toBe(crcTlv.value.readUInt32BE(0));
            expect(crc32c(zeroed)).toBe(crcTlv.value.readUInt32BE(0));
          }
        }),
        params(6_000),
      );
    },
    timeout(6_000),
  );

  it(
    "roundtrip v1: encode, then parse gives the same fields",
    () => {
      fc.assert(
        fc.property(v1Case, payload, (c, p) => {
          generated++;
          expect(c.bytes.length).toBeLessThanOrEqual(107);
          const r = outcome(Buffer.concat([c.bytes, p]));
          expect(r).toEqual({ kind: "header", header: { ...c.expected, length: c.bytes.length } });
        }),
        params(4_000),
      );
    },
    timeout(4_000),
  );

  it("covered at least 60,000 generated inputs", () => {
    expect(generated).toBeGreaterThanOrEqual(60_000);
  });
});

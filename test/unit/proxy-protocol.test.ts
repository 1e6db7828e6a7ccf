import { describe, expect, it } from "vitest";
import { TrafficError } from "../../src/errors";
import {
  crc32c,
  crc32cZeros,
  encodeProxyHeaderV1,
  encodeProxyHeaderV2,
  parseProxyHeader,
  type ProxyHeader,
  type ProxyParseResult,
} from "../../src/proxy-protocol";

// ---------------------------------------------------------------------------
// Helpers. The v2 builders below only concatenate bytes laid out as in
// proxy-protocol.txt 2.2; they share no code with the encoder under test.

const SIG = "0d0a0d0a000d0a515549540a";

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ""), "hex");
}

function be16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 0xff]);
}

/** A v2 header: signature, ver_cmd, fam, big-endian length of `body`, `body`. */
function v2(verCmd: number, fam: number, ...body: Buffer[]): Buffer {
  const b = Buffer.concat(body);
  return Buffer.concat([hex(SIG), Buffer.from([verCmd, fam]), be16(b.length), b]);
}

function tlv(type: number, value: Buffer | string): Buffer {
  const v = typeof value === "string" ? Buffer.from(value, "latin1") : value;
  return Buffer.concat([Buffer.from([type]), be16(v.length), v]);
}

/** TCP/UDP over IPv4 address block: src, dst, sport, dport. */
function ip4Block(src: number[], dst: number[], sport: number, dport: number): Buffer {
  return Buffer.concat([Buffer.from(src), Buffer.from(dst), be16(sport), be16(dport)]);
}

/** Bit-at-a-time CRC32C, independent of the table-driven one under test. */
function slowCrc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** Fills in a CRC32C TLV value at `at` (4 zero bytes expected there). */
function withCrc(header: Buffer, at: number): Buffer {
  const out = Buffer.from(header);
  out.writeUInt32BE(slowCrc32c(out), at);
  return out;
}

function parse(data: Buffer | string, maxV2Length?: number): ProxyParseResult {
  const buf = typeof data === "string" ? Buffer.from(data, "latin1") : data;
  return parseProxyHeader(buf, maxV2Length === undefined ? undefined : { maxV2Length });
}

function header(data: Buffer | string, maxV2Length?: number): ProxyHeader {
  const r = parse(data, maxV2Length);
  if (r.kind !== "header") throw new Error(`expected a header, got ${JSON.stringify(r)}`);
  return r.header;
}

function malformed(data: Buffer | string, code: "ERR_PROXY_V1" | "ERR_PROXY_V2", reason: RegExp, maxV2Length?: number): void {
  let caught: unknown;
  try {
    parse(data, maxV2Length);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(TrafficError);
  const e = caught as TrafficError;
  expect(e.code).toBe(code);
  expect(e.reason).toMatch(reason);
}

/** Every strict prefix is `incomplete` (version 0 only when empty), the whole is the header. */
function expectSplitFeeding(data: Buffer, version: 1 | 2): ProxyHeader {
  for (let k = 0; k < data.length; k++) {
    expect(parse(data.subarray(0, k)), `prefix of ${k} bytes`).toEqual({ kind: "incomplete", version: k === 0 ? 0 : version });
  }
  const h = header(data);
  expect(h.length).toBe(data.length);
  return h;
}

// ---------------------------------------------------------------------------
// Vectors captured from HAProxy 2.6.12 on loopback (a node net server behind
// `server s 127.0.0.1:<port> send-proxy` / `send-proxy-v2` / `send-proxy-v2-ssl-cn
// proxy-v2-options crc32c,unique-id,authority,ssl-cipher,cert-sig,cert-key` with a
// TLS frontend doing ALPN h2 and a client certificate, and `check` health checks).
// Each is followed by the payload the client sent.

const HAPROXY_V1 = hex(
  "50524f58592054435034203132372e302e302e31203132372e302e302e312035333433302033353937370d0a" +
    "68656c6c6f207061796c6f61640a",
);
const HAPROXY_V2 = hex("0d0a0d0a000d0a515549540a2111000c7f0000017f000001de9aa1e3" + "68656c6c6f207061796c6f61640a");
const HAPROXY_V2_CHECK = hex("0d0a0d0a000d0a515549540a20000000");
const HAPROXY_V2_TLS = hex(
  "0d0a0d0a000d0a515549540a211100a57f0000017f000001e7fea703" +
    "0300045bf56121" + // CRC32C
    "0100026832" + // ALPN "h2"
    "0200106170702e6578616d706c652e74657374" + // AUTHORITY "app.example.test"
    "050024" + "63373563663839662d636631362d343961352d393838662d636365343961386537636663" + // UNIQUE_ID
    "200050" + "07" + "00000000" + // SSL: client 0x07, verify 0
    "210007544c5376312e33" + // VERSION "TLSv1.3"
    "22000e636c69656e742e6578616d706c65" + // CN "client.example"
    "2500075253413230343" + "8" + // KEY_ALG "RSA2048"
    "24000a5253412d534841323536" + // SIG_ALG "RSA-SHA256"
    "230016544c535f4145535f3235365f47434d5f534841333834" + // CIPHER
    "746c73207061796c6f61640a", // payload "tls payload\n"
);

describe("CRC32C", () => {
  it.each([
    ["123456789", "313233343536373839", 0xe3069283],
    // RFC 3720 B.4 test vectors
    ["32 zero bytes", "00".repeat(32), 0x8a9136aa],
    ["32 0xff bytes", "ff".repeat(32), 0x62a8ab43],
    ["0..31", Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, "0")).join(""), 0x46dd794e],
    ["31..0", Array.from({ length: 32 }, (_, i) => (31 - i).toString(16).padStart(2, "0")).join(""), 0x113fdb5c],
    ["empty", "", 0],
  ])("%s", (_name, bytes, expected) => {
    const data = hex(bytes);
    expect(crc32c(data)).toBe(expected);
    expect(slowCrc32c(data)).toBe(expected);
  });

  it("continues piecewise and over zero runs", () => {
    const data = Buffer.from("The quick brown fox jumps over the lazy dog, twice over.");
    for (let cut = 0; cut <= data.length; cut++) {
      expect(crc32c(data, crc32c(data, 0, 0, cut), cut)).toBe(crc32c(data));
    }
    expect(crc32cZeros(32)).toBe(0x8a9136aa);
    expect(crc32cZeros(7, crc32c(Buffer.from("ab")))).toBe(crc32c(Buffer.from("ab\0\0\0\0\0\0\0", "latin1")));
  });
});

describe("detection", () => {
  it("an empty buffer is incomplete with no version yet", () => {
    expect(parse(Buffer.alloc(0))).toEqual({ kind: "incomplete", version: 0 });
  });

  it("strict prefixes of 'PROXY ' are incomplete v1", () => {
    for (let k = 1; k < 6; k++) expect(parse("PROXY ".slice(0, k))).toEqual({ kind: "incomplete", version: 1 });
  });

  it("strict prefixes of the v2 signature are incomplete v2", () => {
    const sig = hex(SIG);
    for (let k = 1; k <= 12; k++) expect(parse(sig.subarray(0, k))).toEqual({ kind: "incomplete", version: 2 });
  });

  it.each([
    ["HTTP", "GET / HTTP/1.1\r\n\r\n"],
    ["TLS ClientHello", hex("160301020001")],
    ["SSH", "SSH-2.0-OpenSSH_9.2\r\n"],
    ["lower case proxy", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"],
    ["PROXY without its space", "PROXYTCP4"],
    ["PROXY then tab", "PROXY\t"],
    ["wrong 2nd byte", "PX"],
    ["CRLF CRLF then text", "\r\n\r\nHELLO"],
    ["v2 signature wrong at byte 11", hex("0d0a0d0a000d0a515549540b21")],
    ["v2 signature wrong at byte 4", hex("0d0a0d0a01")],
    ["NUL", hex("00")],
  ])("%s is not-proxy", (_name, data) => {
    expect(parse(data)).toEqual({ kind: "not-proxy" });
  });
});

describe("v1", () => {
  it.each<[string, string, Partial<ProxyHeader>]>([
    [
      "TCP4 from the spec",
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
      { family: "tcp4", sourceAddress: "192.168.0.1", destinationAddress: "192.168.0.11", sourcePort: 56324, destinationPort: 443 },
    ],
    [
      "TCP4 longest",
      "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
      { family: "tcp4", sourceAddress: "255.255.255.255", destinationAddress: "255.255.255.255", sourcePort: 65535, destinationPort: 65535 },
    ],
    [
      "TCP4 zeros",
      "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
      { family: "tcp4", sourceAddress: "0.0.0.0", destinationAddress: "0.0.0.0", sourcePort: 0, destinationPort: 0 },
    ],
    [
      "TCP6 canonicalised",
      "PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 1024 8080\r\n",
      { family: "tcp6", sourceAddress: "2001:db8::1", destinationAddress: "::1", sourcePort: 1024, destinationPort: 8080 },
    ],
    [
      "TCP6 longest (104 bytes)",
      `PROXY TCP6 ${"ffff:".repeat(7)}ffff ${"ffff:".repeat(7)}ffff 65535 65535\r\n`,
      {
        family: "tcp6",
        sourceAddress: `${"ffff:".repeat(7)}ffff`,
        destinationAddress: `${"ffff:".repeat(7)}ffff`,
        sourcePort: 65535,
        destinationPort: 65535,
      },
    ],
    [
      "TCP6 with IPv4-mapped address (unwrapped, as tryParseIp does)",
      "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n",
      { family: "tcp6", sourceAddress: "192.0.2.1", destinationAddress: "2001:db8::2", sourcePort: 1, destinationPort: 2 },
    ],
    ["UNKNOWN short form", "PROXY UNKNOWN\r\n", { family: "unspec" }],
    ["UNKNOWN with addresses", "PROXY UNKNOWN ::1 ::1 1 2\r\n", { family: "unspec" }],
    ["UNKNOWN with anything", "PROXY UNKNOWN \0\x7f\xff  garbage\r\n", { family: "unspec" }],
  ])("%s", (_name, line, expected) => {
    const data = Buffer.from(line, "latin1");
    const h = header(data);
    expect(h).toMatchObject({ version: 1, command: "proxy", tlvs: [], length: data.length, ...expected });
    if (expected.family === "unspec") {
      expect(h.sourceAddress).toBeUndefined();
      expect(h.sourcePort).toBeUndefined();
    }
    expect(h.tlvs).toEqual([]);
    expectSplitFeeding(data, 1);
    // Bytes after the CRLF are payload, not header.
    const withPayload = Buffer.concat([data, Buffer.from("GET / HTTP/1.1\r\n\r\n")]);
    expect(header(withPayload)).toEqual(h);
  });

  it("accepts the 107-byte worst case and nothing longer", () => {
    const line = `PROXY UNKNOWN ${"ffff:".repeat(7)}ffff ${"ffff:".repeat(7)}ffff 65535 65535\r\n`;
    expect(line.length).toBe(107);
    expect(header(line).length).toBe(107);
    const longer = `PROXY UNKNOWN ${"ffff:".repeat(7)}ffff ${"ffff:".repeat(7)}ffff 65535 655350\r\n`;
    expect(longer.length).toBe(108);
    malformed(longer, "ERR_PROXY_V1", /no CRLF within the first 107 bytes/);
    // 106 bytes with no CR: even a CR next would put the LF at byte 108.
    malformed(longer.slice(0, 106), "ERR_PROXY_V1", /no CRLF within the first 107 bytes/);
    expect(parse(longer.slice(0, 105))).toEqual({ kind: "incomplete", version: 1 });
  });

  it.each([
    ["unknown protocol", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", /unsupported protocol "TCP5"/],
    ["lower-case protocol", "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", /unsupported protocol/],
    ["UDP4 is not v1", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", /unsupported protocol/],
    ["UNKNOWN glued", "PROXY UNKNOWNX\r\n", /unsupported protocol "UNKNOWNX"/],
    ["no protocol", "PROXY \r\n", /expected the protocol/],
    ["two spaces after PROXY", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", /expected the protocol/],
    ["no fields", "PROXY TCP4\r\n", /missing source address/],
    ["one address", "PROXY TCP4 1.2.3.4\r\n", /missing destination address/],
    ["no ports", "PROXY TCP4 1.2.3.4 5.6.7.8\r\n", /missing source port/],
    ["one port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", /missing destination port/],
    ["two spaces between addresses", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", /empty destination address/],
    ["trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", /unexpected data after the destination port/],
    ["extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", /unexpected data after the destination port/],
    ["tab separator", "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", /bad source address/],
    ["IPv4 leading zero", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", /bad source address "01.2.3.4" for TCP4/],
    ["IPv4 three parts", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", /bad source address/],
    ["IPv4 octet 256", "PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", /bad destination address/],
    ["IPv4 integer form", "PROXY TCP4 16909060 5.6.7.8 1 2\r\n", /bad source address/],
    ["IPv6 under TCP4", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", /bad source address "::1" for TCP4/],
    ["IPv4 under TCP6", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", /bad source address "1.2.3.4" for TCP6/],
    ["IPv6 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", /bad source address/],
    ["IPv6 nine groups", "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", /bad source address/],
    ["IPv6 two ::", "PROXY TCP6 1::2::3 ::1 1 2\r\n", /bad source address/],
    ["IPv6 bad IPv4 tail", "PROXY TCP6 ::ffff:1.2.3.04 ::1 1 2\r\n", /bad source address/],
    ["port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", /bad source port "65536"/],
    ["port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n", /bad destination port "080".*leading zeros/],
    ["port sign", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", /bad source port/],
    ["port negative", "PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", /bad destination port/],
    ["port hex", "PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n", /bad source port/],
    ["port six digits", "PROXY TCP4 1.2.3.4 5.6.7.8 000001 2\r\n", /bad source port/],
    ["bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", /line feed at byte 30 without a carriage return/],
    ["LF inside", "PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n", /line feed/],
    ["CR then other byte", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", /carriage return at byte 30 not followed by a line feed/],
    ["CR CR LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", /not followed by a line feed/],
    ["CR inside UNKNOWN", "PROXY UNKNOWN a\rb\r\n", /not followed by a line feed/],
    ["LF inside UNKNOWN", "PROXY UNKNOWN a\nb\r\n", /line feed/],
    ["no CRLF in 107 bytes", `PROXY UNKNOWN ${"x".repeat(200)}`, /no CRLF/],
    ["a port running past the limit", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2".padEnd(106, "3"), /bad destination port/],
  ])("rejects %s", (_name, line, reason) => {
    malformed(line, "ERR_PROXY_V1", reason);
  });

  it.each([
    ["PROXY X", /unsupported protocol "X"/],
    ["PROXY TCP", null],
    ["PROXY TCP7", /unsupported protocol "TCP7"/],
    ["PROXY UNK", null],
    ["PROXY UNKNOWNX", /unsupported protocol/],
    ["PROXY UNKNOWN", null],
    ["PROXY UNKNOWN ", null],
    ["PROXY UNKNOWN whatever", null],
    ["PROXY TCP4", null],
    ["PROXY TCP4 ", null],
    ["PROXY TCP4 1", null],
    ["PROXY TCP4 1.", null],
    ["PROXY TCP4 1..", /bad source address/],
    ["PROXY TCP4 01", /bad source address/],
    ["PROXY TCP4 1.2.3.400", /bad source address/],
    ["PROXY TCP4 1.2.3.4.", /bad source address/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8", null],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 ", null],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 0", null],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 00", /bad source port/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 6553", null],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 65536", /bad source port/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2", null],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", null],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ", /unexpected data after the destination port/],
    ["PROXY TCP4 1.2.3.4  ", /empty destination address/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 x", /bad destination port/],
    ["PROXY TCP6 2001:db8::", null],
    ["PROXY TCP6 2001:db8::g", /bad source address/],
    ["PROXY TCP6 fe80::1%", /bad source address/],
    ["PROXY TCP6 ::ffff:1.2.3.4", null],
  ])("partial %j is judged as early as the bytes allow", (line, reason) => {
    if (reason === null) expect(parse(line)).toEqual({ kind: "incomplete", version: 1 });
    else malformed(line, "ERR_PROXY_V1", reason);
  });

  it("parses the line HAProxy sent and leaves the payload", () => {
    const h = header(HAPROXY_V1);
    expect(h).toEqual({
      version: 1,
      command: "proxy",
      family: "tcp4",
      sourceAddress: "127.0.0.1",
      sourcePort: 53430,
      destinationAddress: "127.0.0.1",
      destinationPort: 35977,
      tlvs: [],
      length: 44,
    });
    expect(HAPROXY_V1.subarray(h.length).toString()).toBe("hello payload\n");
    expectSplitFeeding(HAPROXY_V1.subarray(0, h.length), 1);
  });
});

describe("v2", () => {
  it("TCP over IPv4, built by hand", () => {
    const data = v2(0x21, 0x11, ip4Block([192, 0, 2, 1], [198, 51, 100, 5], 12345, 443));
    expect(data.toString("hex")).toBe(`${SIG}2111000cc0000201c63364053039 01bb`.replace(/ /g, ""));
    expect(expectSplitFeeding(data, 2)).toEqual({
      version: 2,
      command: "proxy",
      family: "tcp4",
      sourceAddress: "192.0.2.1",
      sourcePort: 12345,
      destinationAddress: "198.51.100.5",
      destinationPort: 443,
      tlvs: [],
      length: 28,
    });
  });

  it("UDP over IPv4", () => {
    const h = header(v2(0x21, 0x12, ip4Block([10, 0, 0, 1], [10, 0, 0, 2], 53, 5353)));
    expect(h).toMatchObject({ family: "udp4", sourceAddress: "10.0.0.1", destinationAddress: "10.0.0.2", sourcePort: 53, destinationPort: 5353 });
  });

  it.each([
    [0x21, "tcp6"],
    [0x22, "udp6"],
  ] as const)("IPv6 family byte %s gives canonical RFC 5952 text", (fam, family) => {
    const src = hex("20010db8000000000000000000000001"); // 2001:db8::1
    const dst = hex("20010db8000100000000000100000000"); // 2001:db8:1:0:0:1:: → runs of 2 and 2: leftmost
    const data = v2(0x21, fam, src, dst, be16(40000), be16(80));
    expect(data.length).toBe(16 + 36);
    expect(expectSplitFeeding(data, 2)).toEqual({
      version: 2,
      command: "proxy",
      family,
      sourceAddress: "2001:db8::1",
      sourcePort: 40000,
      destinationAddress: "2001:db8:1::1:0:0",
      destinationPort: 80,
      tlvs: [],
      length: 52,
    });
  });

  it.each([
    ["00000000000000000000000000000000", "::"],
    ["00000000000000000000000000000001", "::1"],
    ["00000000000000000000ffffc0000201", "192.0.2.1"],
    ["00010000000000000000000000000000", "1::"],
    ["00010000000100000000000000000001", "1:0:1::1"],
    ["00010000000100010000000100000001", "1:0:1:1:0:1:0:1"],
    ["fe800000000000000202b3fffe1e8329", "fe80::202:b3ff:fe1e:8329"],
    ["000000000000000000000000c0000201", "::c000:201"],
  ])("IPv6 bytes %s → %s", (bytes, text) => {
    const h = header(v2(0x21, 0x21, hex(bytes), hex(bytes), be16(1), be16(2)));
    expect(h.sourceAddress).toBe(text);
    expect(h.destinationAddress).toBe(text);
  });

  it.each([
    [0x31, "unix-stream"],
    [0x32, "unix-dgram"],
  ] as const)("UNIX family byte %s carries NUL-padded paths and no ports", (fam, family) => {
    const path = (p: string): Buffer => {
      const b = Buffer.alloc(108);
      b.write(p, "utf8");
      return b;
    };
    const data = v2(0x21, fam, path(""), path("/run/app/sock€"));
    expect(data.length).toBe(16 + 216);
    const h = expectSplitFeeding(data, 2);
    expect(h).toEqual({ version: 2, command: "proxy", family, sourceAddress: "", destinationAddress: "/run/app/sock€", tlvs: [], length: 232 });
    // A path filling all 108 bytes has no terminator.
    expect(header(v2(0x21, fam, Buffer.alloc(108, 0x61), path("/x"))).sourceAddress).toBe("a".repeat(108));
  });

  it("LOCAL as HAProxy sends it for health checks", () => {
    expect(expectSplitFeeding(HAPROXY_V2_CHECK, 2)).toEqual({ version: 2, command: "local", family: "unspec", tlvs: [], length: 16 });
  });

  it("LOCAL ignores the family and the block but honours the length", () => {
    for (const fam of [0x00, 0x11, 0x21, 0x31, 0x13, 0x45, 0xff]) {
      const data = v2(0x20, fam, hex("deadbeef01"));
      expect(header(Buffer.concat([data, Buffer.from("payload")]))).toEqual({
        version: 2,
        command: "local",
        family: "unspec",
        tlvs: [],
        length: 21,
      });
      expect(parse(data.subarray(0, 20))).toEqual({ kind: "incomplete", version: 2 });
    }
    // Even a block that would be malformed TLVs under PROXY is skipped.
    expect(header(v2(0x20, 0x11, hex("01ffff"))).length).toBe(19);
  });

  it("PROXY with AF_UNSPEC has no addresses but may carry TLVs", () => {
    expect(header(v2(0x21, 0x00))).toEqual({ version: 2, command: "proxy", family: "unspec", tlvs: [], length: 16 });
    const h = header(v2(0x21, 0x00, tlv(0x04, "pad"), tlv(0xe0, hex("0102"))));
    expect(h.family).toBe("unspec");
    expect(h.sourceAddress).toBeUndefined();
    expect(h.tlvs).toEqual([
      { type: 0x04, value: Buffer.from("pad") },
      { type: 0xe0, value: hex("0102") },
    ]);
  });

  it("decodes the well-known TLVs, keeping all in wire order", () => {
    const sslUtf8 = Buffer.concat([
      Buffer.from([0x05]), // PP2_CLIENT_SSL | PP2_CLIENT_CERT_SESS
      hex("00000013"), // verify
      tlv(0x21, "TLSv1.2"),
      tlv(0x22, Buffer.from("Zoë's laptop", "utf8")),
      tlv(0x23, "ECDHE-RSA-AES128-GCM-SHA256"),
      tlv(0x24, "RSA-SHA256"),
      tlv(0x25, "RSA2048"),
      tlv(0x7f, "future sub-TLV"),
    ]);
    const uid = Buffer.from("0123456789abcdef", "latin1");
    const data = v2(
      0x21,
      0x11,
      ip4Block([203, 0, 113, 7], [192, 0, 2, 80], 51000, 443),
      tlv(0x01, "http/1.1"),
      tlv(0x02, Buffer.from("bücher.example", "utf8")),
      tlv(0x04, ""),
      tlv(0x05, uid),
      tlv(0x20, sslUtf8),
      tlv(0x30, "blue"),
      tlv(0xee, hex("00ff00")),
      tlv(0x04, "again"),
    );
    const h = expectSplitFeeding(data, 2);
    expect(h).toMatchObject({
      family: "tcp4",
      sourceAddress: "203.0.113.7",
      sourcePort: 51000,
      alpn: "http/1.1",
      authority: "bücher.example",
      uniqueId: uid,
      netns: "blue",
      ssl: {
        client: 5,
        verify: 19,
        version: "TLSv1.2",
        cn: "Zoë's laptop",
        cipher: "ECDHE-RSA-AES128-GCM-SHA256",
        sigAlg: "RSA-SHA256",
        keyAlg: "RSA2048",
      },
    });
    expect(h.tlvs.map((t) => t.type)).toEqual([0x01, 0x02, 0x04, 0x05, 0x20, 0x30, 0xee, 0x04]);
    expect(h.tlvs[6]!.value).toEqual(hex("00ff00"));
    expect(h.tlvs[4]!.value).toEqual(sslUtf8);
    // Values are copies: changing the input afterwards does not change them.
    data.fill(0);
    expect(h.tlvs[6]!.value).toEqual(hex("00ff00"));
    expect(h.uniqueId).toEqual(uid);
  });

  it("SSL TLV with only client and verify", () => {
    const h = header(v2(0x21, 0x00, tlv(0x20, hex("00ffffffff"))));
    expect(h.ssl).toEqual({ client: 0, verify: 0xffffffff });
  });

  it("verifies a CRC32C built by hand (bitwise CRC, not the module's)", () => {
    const block = ip4Block([192, 0, 2, 1], [192, 0, 2, 2], 1, 2);
    const unsigned = v2(0x21, 0x11, block, tlv(0x01, "h2"), tlv(0x03, hex("00000000")), tlv(0x04, "x"));
    const crcAt = 16 + 12 + 5 + 3;
    const signed = withCrc(unsigned, crcAt);
    const h = header(signed);
    expect(h.alpn).toBe("h2");
    expect(h.tlvs[1]).toEqual({ type: 0x03, value: signed.subarray(crcAt, crcAt + 4) });
    // Any change anywhere in the header breaks the checksum.
    // (Not byte 12: PROXY→LOCAL discards the whole block, checksum included, per 2.2.)
    for (const at of [13, 16, 17, 27, 30, crcAt, crcAt + 3, signed.length - 1]) {
      const bad = Buffer.from(signed);
      bad[at] = bad[at]! ^ 0x01;
      expect(() => parse(bad)).toThrow(TrafficError);
    }
    const flipped = Buffer.from(signed);
    flipped[signed.length - 1] ^= 0x40;
    malformed(flipped, "ERR_PROXY_V2", /CRC32C mismatch/);
  });

  it("parses the headers HAProxy sent", () => {
    const plain = header(HAPROXY_V2);
    expect(plain).toEqual({
      version: 2,
      command: "proxy",
      family: "tcp4",
      sourceAddress: "127.0.0.1",
      sourcePort: 56986,
      destinationAddress: "127.0.0.1",
      destinationPort: 41443,
      tlvs: [],
      length: 28,
    });
    expect(HAPROXY_V2.subarray(plain.length).toString()).toBe("hello payload\n");

    const tls = header(HAPROXY_V2_TLS);
    expect(tls).toMatchObject({
      version: 2,
      command: "proxy",
      family: "tcp4",
      sourceAddress: "127.0.0.1",
      sourcePort: 59390,
      destinationAddress: "127.0.0.1",
      destinationPort: 42755,
      alpn: "h2",
      authority: "app.example.test",
      uniqueId: Buffer.from("c75cf89f-cf16-49a5-988f-cce49a8e7cfc"),
      ssl: {
        client: 7,
        verify: 0,
        version: "TLSv1.3",
        cn: "client.example",
        keyAlg: "RSA2048",
        sigAlg: "RSA-SHA256",
        cipher: "TLS_AES_256_GCM_SHA384",
      },
      length: 16 + 0xa5,
    });
    expect(tls.tlvs.map((t) => t.type)).toEqual([0x03, 0x01, 0x02, 0x05, 0x20]);
    expect(HAPROXY_V2_TLS.subarray(tls.length).toString()).toBe("tls payload\n");
    // HAProxy's CRC32C checks out with our own bitwise CRC too.
    const zeroed = Buffer.from(HAPROXY_V2_TLS.subarray(0, tls.length));
    zeroed.writeUInt32BE(0, 31);
    expect(slowCrc32c(zeroed)).toBe(HAPROXY_V2_TLS.readUInt32BE(31));

    for (const data of [HAPROXY_V2, HAPROXY_V2_TLS]) {
      const h = header(data);
      expectSplitFeeding(data.subarray(0, h.length), 2);
    }
  });

  it.each<[string, Buffer, RegExp]>([
    ["version 1 nibble", Buffer.concat([hex(SIG), Buffer.from([0x11])]), /protocol version 1; only version 2/],
    ["version 3 nibble", Buffer.concat([hex(SIG), Buffer.from([0x31])]), /protocol version 3/],
    ["version 0 nibble", Buffer.concat([hex(SIG), Buffer.from([0x01])]), /protocol version 0/],
    ["command 2", Buffer.concat([hex(SIG), Buffer.from([0x22])]), /unassigned command 2/],
    ["command 15", Buffer.concat([hex(SIG), Buffer.from([0x2f])]), /unassigned command 15/],
    ["family 0x13", Buffer.concat([hex(SIG), Buffer.from([0x21, 0x13])]), /unsupported address family and transport byte 0x13/],
    ["family 0x10 (INET, unspec transport)", Buffer.concat([hex(SIG), Buffer.from([0x21, 0x10])]), /byte 0x10/],
    ["family 0x01 (unspec family, stream)", Buffer.concat([hex(SIG), Buffer.from([0x21, 0x01])]), /byte 0x01/],
    ["family 0x41", Buffer.concat([hex(SIG), Buffer.from([0x21, 0x41])]), /byte 0x41/],
    ["TCP4 length 11", Buffer.concat([hex(SIG), hex("2111000b")]), /length 11 is shorter than the 12-byte tcp4 address block/],
    ["TCP6 length 35", Buffer.concat([hex(SIG), hex("21220023")]), /length 35 is shorter than the 36-byte udp6/],
    ["UNIX length 215", Buffer.concat([hex(SIG), hex("213100d7")]), /215 is shorter than the 216-byte unix-stream/],
    ["TLV header cut (1 byte)", v2(0x21, 0x11, ip4Block([1, 1, 1, 1], [2, 2, 2, 2], 1, 2), hex("04")), /truncated TLV at byte 28: 1 bytes left/],
    ["TLV header cut (2 bytes)", v2(0x21, 0x00, tlv(0x04, ""), hex("0400")), /truncated TLV at byte 19: 2 bytes left/],
    ["TLV value overruns", v2(0x21, 0x00, hex("01000568322e")), /TLV 0x01 at byte 16 declares 5 bytes, only 3 left/],
    ["TLV value overruns by one byte", v2(0x21, 0x00, tlv(0x04, "ab"), hex("e000036869")), /TLV 0xe0 at byte 21 declares 3 bytes, only 2 left/],
    ["SSL sub-TLV overruns by one byte", v2(0x21, 0x00, tlv(0x20, hex("0100000000 21000441 4243"))), /sub-TLV 0x21 declares 4 bytes, only 3 left/],
    ["TLV length 0xffff", v2(0x21, 0x11, ip4Block([1, 1, 1, 1], [2, 2, 2, 2], 1, 2), hex("e0ffff00")), /declares 65535 bytes/],
    ["CRC32C of 3 bytes", v2(0x21, 0x00, tlv(0x03, hex("000000"))), /PP2_TYPE_CRC32C must be 4 bytes, got 3/],
    ["CRC32C of 5 bytes", v2(0x21, 0x00, tlv(0x03, hex("0000000000"))), /must be 4 bytes, got 5/],
    ["CRC32C wrong", v2(0x21, 0x00, tlv(0x03, hex("12345678"))), /CRC32C mismatch: header carries 0x12345678/],
    ["UNIQUE_ID of 129 bytes", v2(0x21, 0x00, tlv(0x05, Buffer.alloc(129, 1))), /UNIQUE_ID of 129 bytes exceeds 128/],
    ["AUTHORITY not UTF-8", v2(0x21, 0x00, tlv(0x02, hex("6162ff"))), /AUTHORITY is not valid UTF-8/],
    ["NETNS not ASCII", v2(0x21, 0x00, tlv(0x30, hex("6e73e9"))), /NETNS is not US-ASCII/],
    ["SSL of 4 bytes", v2(0x21, 0x00, tlv(0x20, hex("01000000"))), /PP2_TYPE_SSL of 4 bytes is shorter/],
    ["SSL sub-TLV overruns", v2(0x21, 0x00, tlv(0x20, hex("0100000000 2100ff 41"))), /sub-TLV 0x21 declares 255 bytes, only 1 left/],
    ["SSL sub-TLV header cut", v2(0x21, 0x00, tlv(0x20, hex("0100000000 2100"))), /truncated PP2_TYPE_SSL sub-TLV/],
    ["SSL VERSION not ASCII", v2(0x21, 0x00, tlv(0x20, Buffer.concat([hex("0100000000"), tlv(0x21, hex("54c3a9"))]))), /SSL_VERSION is not US-ASCII/],
    ["SSL CN not UTF-8", v2(0x21, 0x00, tlv(0x20, Buffer.concat([hex("0100000000"), tlv(0x22, hex("c3"))]))), /SSL_CN is not valid UTF-8/],
    ["SSL CIPHER twice", v2(0x21, 0x00, tlv(0x20, Buffer.concat([hex("0100000000"), tlv(0x23, "A"), tlv(0x23, "B")]))), /sub-TLV 0x23 appears more than once/],
    ["ALPN twice", v2(0x21, 0x00, tlv(0x01, "h2"), tlv(0x01, "http/1.1")), /TLV 0x01 appears more than once/],
    ["AUTHORITY twice", v2(0x21, 0x00, tlv(0x02, "a"), tlv(0x02, "a")), /TLV 0x02 appears more than once/],
  ])("rejects %s", (_name, data, reason) => {
    malformed(data, "ERR_PROXY_V2", reason);
  });

  it("rejects a fixed-part error as soon as the byte arrives", () => {
    // 13 bytes: signature and a bad version; no need to wait for more.
    malformed(Buffer.concat([hex(SIG), Buffer.from([0x12])]), "ERR_PROXY_V2", /protocol version 1/);
    // 14 bytes: family 0x13 under PROXY.
    malformed(Buffer.concat([hex(SIG), Buffer.from([0x21, 0x13])]), "ERR_PROXY_V2", /0x13/);
    // 16 bytes: a length too short for TCP6.
    malformed(Buffer.concat([hex(SIG), hex("21210010")]), "ERR_PROXY_V2", /shorter than the 36-byte/);
    // And for LOCAL, 14 bytes with any family are a valid prefix.
    expect(parse(Buffer.concat([hex(SIG), Buffer.from([0x20, 0x99])]))).toEqual({ kind: "incomplete", version: 2 });
  });

  it("honours the length: waits for 16+len bytes, never reads past them", () => {
    const data = v2(0x21, 0x11, ip4Block([1, 2, 3, 4], [5, 6, 7, 8], 9, 10), tlv(0xe1, "abc"));
    expect(parse(data.subarray(0, data.length - 1))).toEqual({ kind: "incomplete", version: 2 });
    // Bytes after the header that look like a TLV are payload.
    const h = header(Buffer.concat([data, hex("01ffff"), Buffer.from("payload")]));
    expect(h.length).toBe(data.length);
    expect(h.tlvs).toEqual([{ type: 0xe1, value: Buffer.from("abc") }]);
  });

  it("applies maxV2Length to the declared total", () => {
    const data = v2(0x21, 0x00, tlv(0xe0, Buffer.alloc(100)));
    expect(data.length).toBe(119);
    expect(header(data, 119).length).toBe(119);
    malformed(data.subarray(0, 16), "ERR_PROXY_V2", /header of 119 bytes exceeds the configured maximum of 118/, 118);
    // Also for LOCAL.
    malformed(v2(0x20, 0x00, Buffer.alloc(100)).subarray(0, 16), "ERR_PROXY_V2", /exceeds the configured maximum of 64/, 64);
    // The default admits the wire format's largest header.
    const big = Buffer.concat([hex(SIG), hex("2100ffff")]);
    expect(parse(big)).toEqual({ kind: "incomplete", version: 2 });
    const full = v2(0x21, 0x00, tlv(0xe0, Buffer.alloc(0xffff - 3)));
    expect(full.length).toBe(16 + 0xffff);
    expect(header(full).tlvs[0]!.value.length).toBe(0xfffc);
    expect(() => parse(big, 15)).toThrow(RangeError);
    expect(() => parse(big, 1.5)).toThrow(RangeError);
    expect(() => parse("PROXY UNKNOWN\r\n", Number.NaN)).toThrow(RangeError);
  });
});

describe("encode", () => {
  it("v1 TCP4, TCP6 and UNKNOWN lines", () => {
    expect(
      encodeProxyHeaderV1({ source: { address: "192.168.0.1", port: 56324 }, destination: { address: "192.168.0.11", port: 443 } }).toString(
        "latin1",
      ),
    ).toBe("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    expect(
      encodeProxyHeaderV1({ source: { address: "2001:DB8:0::1", port: 1 }, destination: { address: "::1", port: 2 } }).toString("latin1"),
    ).toBe("PROXY TCP6 2001:db8::1 ::1 1 2\r\n");
    // Mixed families: the IPv4 end is written IPv4-mapped under TCP6.
    expect(
      encodeProxyHeaderV1({ source: { address: "192.0.2.1", port: 1 }, destination: { address: "2001:db8::1", port: 2 } }).toString("latin1"),
    ).toBe("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::1 1 2\r\n");
    expect(encodeProxyHeaderV1().toString("latin1")).toBe("PROXY UNKNOWN\r\n");
  });

  it("v2 TCP4 matches the hand-built bytes", () => {
    const bytes = encodeProxyHeaderV2({ source: { address: "192.0.2.1", port: 12345 }, destination: { address: "198.51.100.5", port: 443 } });
    expect(bytes).toEqual(v2(0x21, 0x11, ip4Block([192, 0, 2, 1], [198, 51, 100, 5], 12345, 443)));
  });

  it("v2 LOCAL and UNSPEC", () => {
    expect(encodeProxyHeaderV2({ command: "local" })).toEqual(HAPROXY_V2_CHECK);
    expect(encodeProxyHeaderV2()).toEqual(v2(0x21, 0x00));
  });

  it("v2 UDP6 with mixed families and TLVs, checksum by the bitwise CRC", () => {
    const bytes = encodeProxyHeaderV2({
      transport: "udp",
      source: { address: "192.0.2.1", port: 5000 },
      destination: { address: "2001:db8::53", port: 53 },
      alpn: "dot",
      tlvs: [{ type: 0xe5, value: Buffer.from([1, 2, 3]) }],
      crc32c: true,
    });
    const expected = v2(
      0x21,
      0x22,
      hex("00000000000000000000ffffc0000201"),
      hex("20010db8000000000000000000000053"),
      be16(5000),
      be16(53),
      tlv(0x03, hex("00000000")),
      tlv(0x01, "dot"),
      tlv(0xe5, hex("010203")),
    );
    expect(bytes).toEqual(withCrc(expected, 16 + 36 + 3));
    expect(header(bytes)).toMatchObject({ family: "udp6", sourceAddress: "192.0.2.1", destinationAddress: "2001:db8::53", alpn: "dot" });
  });

  it("v2 UNIX paths", () => {
    const bytes = encodeProxyHeaderV2({ transport: "unix-dgram", source: { address: "" }, destination: { address: "/tmp/log.sock" } });
    expect(bytes.length).toBe(16 + 216);
    expect(bytes[13]).toBe(0x32);
    expect(header(bytes)).toMatchObject({ family: "unix-dgram", sourceAddress: "", destinationAddress: "/tmp/log.sock" });
  });

  it("v2 reproduces HAProxy's TLS header from its fields", () => {
    const tls = header(HAPROXY_V2_TLS);
    const bytes = encodeProxyHeaderV2({
      source: { address: tls.sourceAddress!, port: tls.sourcePort! },
      destination: { address: tls.destinationAddress!, port: tls.destinationPort! },
      crc32c: true,
      alpn: tls.alpn!,
      authority: tls.authority!,
      uniqueId: tls.uniqueId!,
      ssl: tls.ssl!,
    });
    // Same TLV order, same SSL sub-TLV order, same CRC32C: byte for byte what HAProxy sent.
    expect(bytes).toEqual(HAPROXY_V2_TLS.subarray(0, tls.length));
    expect(header(bytes)).toEqual(tls);
  });

  it.each<[string, () => unknown, string, RegExp]>([
    ["bad IPv4", () => encodeProxyHeaderV1({ source: { address: "1.2.3.04", port: 1 }, destination: { address: "1.2.3.4", port: 1 } }), "ERR_BAD_ADDRESS", /not an IP address/],
    ["IPv6 zone", () => encodeProxyHeaderV2({ source: { address: "fe80::1%eth0", port: 1 }, destination: { address: "::1", port: 1 } }), "ERR_BAD_ADDRESS", /without zone/],
    ["port 65536", () => encodeProxyHeaderV1({ source: { address: "1.2.3.4", port: 65536 }, destination: { address: "1.2.3.4", port: 1 } }), "ERR_BAD_PORT", /0-65535/],
    ["missing port", () => encodeProxyHeaderV2({ source: { address: "1.2.3.4" }, destination: { address: "1.2.3.4", port: 1 } }), "ERR_BAD_PORT", /0-65535/],
    ["fractional port", () => encodeProxyHeaderV2({ source: { address: "1.2.3.4", port: 1.5 }, destination: { address: "1.2.3.4", port: 1 } }), "ERR_BAD_PORT", /integer/],
    ["half the endpoints (v1)", () => encodeProxyHeaderV1({ source: { address: "1.2.3.4", port: 1 } }), "ERR_PROXY_V1", /together/],
    ["half the endpoints (v2)", () => encodeProxyHeaderV2({ destination: { address: "1.2.3.4", port: 1 } }), "ERR_PROXY_V2", /together/],
    ["LOCAL with addresses", () => encodeProxyHeaderV2({ command: "local", source: { address: "1.2.3.4", port: 1 }, destination: { address: "1.2.3.4", port: 1 } }), "ERR_PROXY_V2", /LOCAL header carries no addresses/],
    ["UNIX path too long", () => encodeProxyHeaderV2({ transport: "unix-stream", source: { address: "/".repeat(109) }, destination: { address: "" } }), "ERR_BAD_ADDRESS", /108 bytes/],
    ["UNIX path with NUL", () => encodeProxyHeaderV2({ transport: "unix-stream", source: { address: "a\0b" }, destination: { address: "" } }), "ERR_BAD_ADDRESS", /NUL/],
    ["UNIX with port", () => encodeProxyHeaderV2({ transport: "unix-stream", source: { address: "/a", port: 1 }, destination: { address: "/b" } }), "ERR_BAD_PORT", /no port/],
    ["unique id of 129 bytes", () => encodeProxyHeaderV2({ uniqueId: new Uint8Array(129) }), "ERR_PROXY_V2", /exceeds 128/],
    ["raw TLV of a decoded type", () => encodeProxyHeaderV2({ tlvs: [{ type: 0x01, value: Buffer.from("h2") }] }), "ERR_PROXY_V2", /named field/],
    ["raw TLV type 256", () => encodeProxyHeaderV2({ tlvs: [{ type: 256, value: Buffer.alloc(0) }] }), "ERR_PROXY_V2", /0-255/],
    ["too long", () => encodeProxyHeaderV2({ tlvs: [{ type: 0xe0, value: Buffer.alloc(0xffff) }] }), "ERR_PROXY_V2", /at most 65535/],
    ["netns not ASCII", () => encodeProxyHeaderV2({ netns: "é" }), "ERR_PROXY_V2", /US-ASCII/],
    ["ALPN above U+00FF", () => encodeProxyHeaderV2({ alpn: "h€" }), "ERR_PROXY_V2", /U\+00FF/],
    ["unknown transport", () => encodeProxyHeaderV2({ transport: "sctp" as "tcp" }), "ERR_PROXY_V2", /unknown transport "sctp"/],
    ["unknown command", () => encodeProxyHeaderV2({ command: "health" as "local" }), "ERR_PROXY_V2", /unknown command "health"/],
    ["ssl.client 256", () => encodeProxyHeaderV2({ ssl: { client: 256, verify: 0 } }), "ERR_PROXY_V2", /ssl.client/],
  ])("rejects %s", (_name, fn, code, reason) => {
    let caught: unknown;
    try {
      fn();
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(TrafficError);
    expect((caught as TrafficError).code).toBe(code);
    expect((caught as TrafficError).reason).toMatch(reason);
  });
});

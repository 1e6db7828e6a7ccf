import { describe, expect, it } from "vitest";
import {
  classifyDatagrams,
  compileRouter,
  DatagramClassifier,
  decryptQuicInitial,
  quicCryptoFrames,
  quicInitialKeys,
  QUIC_MAX_CRYPTO,
  sniffDns,
  sniffDnsDatagram,
} from "../../src/classify";
import { createCipheriv, randomBytes } from "node:crypto";
import { aes128EncryptBlock, aes128RoundKeys } from "../../src/classify/aes-block";
import { TrafficError } from "../../src/errors";
import { vector } from "../support/classify-vectors";
import { cryptoFrame, cryptoStream, padded, protectInitial, rfcClientInitial } from "../support/quic-packets";

const RFC_DCID = Buffer.from("8394c8f03e515708", "hex");
// RFC 9001 A.2 and RFC 9369 A.2: the CRYPTO frame at the start of the client Initial's payload.
const RFC_CRYPTO_FRAME =
  "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578616d706c652e636f6dff01000100000a00080006001d0017001800100007000504616c706e000500050100000000003300260024001d00209370b2c9caa47fbabaf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b0003020304000d0010000e0403050306030203080408050806002d00020101001c00024001003900320408ffffffffffffffff05048000ffff07048000ffff0801100104800075300901100f088394c8f03e51570806048000ffff";

const chromium = vector("chromium-quic");

const chromiumHello = (): Buffer => cryptoStream(chromium.segments);

describe("QUIC Initial keys and packet protection (RFC 9001 A, RFC 9369 A)", () => {
  const KEYS = [
    ["RFC 9001 A.1", 1, "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea", "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2"],
    ["RFC 9369 A.1", 0x6b3343cf, "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b", "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9"],
  ] as const;
  for (const [rfc, version, secret, key, iv, hp] of KEYS) {
    it(`derives the ${rfc} client secret, key, iv and hp from the DCID`, () => {
      const k = quicInitialKeys(RFC_DCID, version)!;
      expect([k.secret, k.key, k.iv, k.hp].map((x) => x.toString("hex"))).toEqual([secret, key, iv, hp]);
    });
  }

  it("has no keys for other versions", () => {
    expect(quicInitialKeys(RFC_DCID, 0xff00001d)).toBeNull();
  });

  for (const [which, version] of [["v1", 1], ["v2", 2]] as const) {
    it(`decrypts the ${which} protected client Initial to the RFC's CRYPTO frame and padding`, () => {
      const p = decryptQuicInitial(rfcClientInitial(which))!;
      expect(p).not.toBeNull();
      expect(p.version).toBe(version);
      expect(p.packetNumber).toBe(2);
      expect(p.dcid.toString("hex")).toBe("8394c8f03e515708");
      expect(p.payload.length).toBe(1162);
      expect(p.payload.subarray(0, RFC_CRYPTO_FRAME.length / 2).toString("hex")).toBe(RFC_CRYPTO_FRAME);
      expect(p.payload.subarray(RFC_CRYPTO_FRAME.length / 2).every((x) => x === 0)).toBe(true);
    });

    it(`classifies the ${which} client Initial as QUIC with SNI example.com`, () => {
      const r = classifyDatagrams([rfcClientInitial(which)]);
      expect(r.protocol).toBe("quic");
      expect(r.confidence).toBe(1);
      expect(r.fields).toMatchObject({ sni: "example.com", alpn: ["alpn"], tlsVersions: ["TLS1.3"], quicVersion: version });
      expect(r.bytes).toBe(1200);
    });
  }

  it("the test packet builder reproduces the RFC's protected packet byte for byte", () => {
    const payload = padded(Buffer.from(RFC_CRYPTO_FRAME, "hex"));
    expect(protectInitial(RFC_DCID, 2, payload, 1).equals(rfcClientInitial("v1"))).toBe(true);
    expect(protectInitial(RFC_DCID, 2, payload, 2).equals(rfcClientInitial("v2"))).toBe(true);
  });

  it("a flipped ciphertext byte fails the tag check; the classifier, which skips it, still reads the padding as padding", () => {
    const b = rfcClientInitial("v1");
    b[600] ^= 1; // in the PADDING after the CRYPTO frame: plaintext 0x01, a PING frame
    expect(decryptQuicInitial(b)).toBeNull();
    expect(classifyDatagrams([b]).fields).toMatchObject({ sni: "example.com", quicVersion: 1 });
  });

  it("a flipped byte inside the ClientHello: QUIC, but not a confident ClientHello", () => {
    const b = rfcClientInitial("v1");
    b[22 + 43] ^= 0x80; // the cipher suites length
    const r = classifyDatagrams([b]);
    expect(r).toMatchObject({ protocol: "quic", confidence: 0.5, fields: { quicVersion: 1 } });
    expect(r.fields.sni).toBeUndefined();
  });
});

describe("AES-128 block encryption for header protection masks", () => {
  it("encrypts the FIPS-197 C.1 example", () => {
    const out = Buffer.alloc(16);
    aes128EncryptBlock(aes128RoundKeys(Buffer.from("000102030405060708090a0b0c0d0e0f", "hex")), Buffer.from("00112233445566778899aabbccddeeff", "hex"), 0, out);
    expect(out.toString("hex")).toBe("69c4e0d86a7b0430d8cdb78070b4c55a");
  });

  it("agrees with OpenSSL's AES-128-ECB on random keys and blocks read at an offset", () => {
    const out = Buffer.alloc(16);
    for (let i = 0; i < 200; i++) {
      const key = randomBytes(16);
      const input = randomBytes(16 + (i % 7));
      const ecb = createCipheriv("aes-128-ecb", key, null).setAutoPadding(false);
      aes128EncryptBlock(aes128RoundKeys(key), input, i % 7, out);
      expect(out.toString("hex")).toBe(ecb.update(input.subarray(i % 7, (i % 7) + 16)).toString("hex"));
    }
  });

  it("takes 16-byte keys only", () => {
    expect(() => aes128RoundKeys(Buffer.alloc(24))).toThrow(RangeError);
  });
});

describe("QUIC frames", () => {
  it("steps over PADDING, PING, ACK (with ranges and ECN) and CONNECTION_CLOSE, and stops at an unknown type", () => {
    const payload = Buffer.concat([
      Buffer.from([0x01, 0x00, 0x00]),
      Buffer.from([0x02, 0x05, 0x00, 0x01, 0x00, 0x01, 0x00]), // ACK: largest 5, 1 extra range
      cryptoFrame(3, Buffer.from("def")),
      Buffer.from([0x03, 0x05, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03]), // ACK_ECN
      Buffer.from([0x1c, 0x0a, 0x06, 0x02, 0x68, 0x69]), // CONNECTION_CLOSE, reason "hi"
      cryptoFrame(0, Buffer.from("abc")),
      Buffer.from([0x1e]), // HANDSHAKE_DONE: never in an Initial
      cryptoFrame(6, Buffer.from("ghi")),
    ]);
    expect(quicCryptoFrames(payload).map((f) => [f.offset, f.data.toString()])).toEqual([
      [3, "def"],
      [0, "abc"],
    ]);
  });

  it("stops at a CRYPTO frame that runs past the payload", () => {
    const f = cryptoFrame(0, Buffer.from("abcdef"));
    expect(quicCryptoFrames(f.subarray(0, f.length - 1))).toEqual([]);
  });
});

describe("QUIC sessions of real chromium Initials", () => {
  it("the recorded chromium datagrams are QUIC v1 to www.example.com offering h3, post-quantum", () => {
    const r = classifyDatagrams(chromium.segments);
    expect(r.protocol).toBe("quic");
    expect(r.confidence).toBe(1);
    expect(r.fields).toMatchObject({ sni: "www.example.com", alpn: ["h3"], quicVersion: 1, postQuantum: true, https: true, tlsVersions: ["TLS1.3"] });
  });

  it("the post-quantum ClientHello spans two datagrams: the first alone asks for more", () => {
    expect(chromiumHello().length).toBeGreaterThan(1200);
    const c = new DatagramClassifier();
    expect(c.push(chromium.segments[0]!)).toBeNull();
    expect(c.push(chromium.segments[1]!)?.fields.sni).toBe("www.example.com");
  });

  it("at the datagram cap with the ClientHello unfinished: QUIC with the version only, confidence 0.5", () => {
    const r = classifyDatagrams(chromium.segments.slice(0, 1), { maxDatagrams: 1 });
    expect(r).toEqual({ protocol: "quic", confidence: 0.5, fields: { quicVersion: 1 }, bytes: chromium.segments[0]!.length });
    expect(classifyDatagrams(chromium.segments.slice(0, 1))).toEqual(r);
  });

  it("reassembles CRYPTO frames out of order, retransmitted and overlapping, across packets and datagrams", () => {
    const hello = chromiumHello();
    const dcid = Buffer.from("0011223344556677", "hex");
    const cuts = [0, 300, 700, 1100, 1500, hello.length];
    const pieces = cuts.slice(1).map((end, i) => cryptoFrame(cuts[i]!, hello.subarray(cuts[i]!, end)));
    const datagrams = [
      // Two frames in one packet, in reverse order, then a retransmission overlapping both.
      protectInitial(dcid, 0, padded(Buffer.concat([pieces[3]!, pieces[1]!]))),
      protectInitial(dcid, 1, padded(Buffer.concat([cryptoFrame(250, hello.subarray(250, 800)), pieces[1]!]))),
      // Two coalesced Initials in one datagram.
      Buffer.concat([protectInitial(dcid, 2, padded(pieces[4]!, 600)), protectInitial(dcid, 3, padded(pieces[0]!, 400))]),
      protectInitial(dcid, 4, padded(pieces[2]!)),
    ];
    const c = new DatagramClassifier();
    const answers = datagrams.map((d) => c.push(d));
    expect(answers.slice(0, 3)).toEqual([null, null, null]);
    expect(answers[3]).toMatchObject({ protocol: "quic", confidence: 1, fields: { sni: "www.example.com", alpn: ["h3"], quicVersion: 1 } });
  });

  it("reads an Initial coalesced after a 0-RTT packet and before a Handshake packet", () => {
    const zeroRtt = Buffer.concat([Buffer.from("d000000001088394c8f03e51570800", "hex"), Buffer.from([0x40, 40]), Buffer.alloc(40, 7)]);
    const handshake = Buffer.concat([Buffer.from("e000000001088394c8f03e51570800", "hex"), Buffer.from([0x40, 30]), Buffer.alloc(30, 9)]);
    const r = classifyDatagrams([Buffer.concat([zeroRtt, rfcClientInitial("v1"), handshake])]);
    expect(r.fields).toMatchObject({ sni: "example.com", quicVersion: 1 });
  });

  it("a later Initial with another DCID (after a Retry) starts over", () => {
    const c = new DatagramClassifier();
    expect(c.push(chromium.segments[0]!)).toBeNull();
    expect(c.push(rfcClientInitial("v1"))?.fields.sni).toBe("example.com");
  });

  it("CRYPTO data beyond 16 KiB: QUIC with the version only, confidence 0.5", () => {
    const dcid = Buffer.from("8899aabbccddeeff", "hex");
    const r = classifyDatagrams([protectInitial(dcid, 0, padded(cryptoFrame(QUIC_MAX_CRYPTO - 10, Buffer.alloc(20, 1))))]);
    expect(r).toMatchObject({ protocol: "quic", confidence: 0.5, fields: { quicVersion: 1 } });
    expect(r.fields.sni).toBeUndefined();
  });

  it("an Initial whose CRYPTO stream is not a ClientHello: QUIC, confidence 0.5", () => {
    const r = classifyDatagrams([protectInitial(Buffer.alloc(8, 5), 0, padded(cryptoFrame(0, Buffer.from("0200000401020304", "hex"))))]);
    expect(r).toMatchObject({ protocol: "quic", confidence: 0.5, fields: { quicVersion: 1 } });
  });

  it("rejects a bad datagram cap and non-bytes with typed errors", () => {
    expect(() => new DatagramClassifier({ maxDatagrams: 0 })).toThrow(TrafficError);
    expect(() => new DatagramClassifier().push("x" as unknown as Buffer)).toThrow(TrafficError);
    expect(new DatagramClassifier().end()).toMatchObject({ protocol: "incomplete", bytes: 0 });
  });
});

describe("DNS over UDP", () => {
  const dig = vector("dig-udp");

  it("the recorded dig query is DNS with its name, type and flags", () => {
    const r = classifyDatagrams(dig.segments);
    expect(r).toMatchObject({ protocol: "dns", confidence: 0.9, fields: { dnsName: "www.example.test", dnsType: "AAAA", dnsFlags: ["rd", "ad"] } });
  });

  it("parses the same query over TCP (length prefix) to the same fields", () => {
    const q = dig.segments[0]!;
    const prefix = Buffer.from([q.length >> 8, q.length & 0xff]);
    const tcp = sniffDns(Buffer.concat([prefix, q]));
    const udp = sniffDnsDatagram(q);
    expect(tcp.kind).toBe("match");
    expect(tcp).toEqual(udp);
  });

  it("lower-cases the name, writes the root as a dot, and stops at a name over 255 bytes", () => {
    const query = (name: Buffer): Buffer => Buffer.concat([Buffer.from("123401000001000000000000", "hex"), name, Buffer.from([0, 0, 1, 0, 1])]);
    const labels = (...ls: string[]): Buffer => Buffer.concat(ls.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, "latin1")])));
    expect(sniffDnsDatagram(query(labels("WWW", "Example-1", "TEST")))).toMatchObject({ kind: "match", fields: { dnsName: "www.example-1.test", dnsType: "A" } });
    expect(sniffDnsDatagram(query(Buffer.alloc(0)))).toMatchObject({ kind: "match", fields: { dnsName: "." } });
    const long = (count: number): Buffer => labels(...Array.from({ length: count }, () => "a".repeat(62)));
    // Four 62-byte labels: 252 bytes with their lengths (the root's zero makes 253); five do not fit.
    expect(sniffDnsDatagram(query(long(4)))).toMatchObject({ kind: "match", fields: { dnsName: Array.from({ length: 4 }, () => "a".repeat(62)).join(".") } });
    expect(sniffDnsDatagram(query(long(5))).kind).toBe("no");
  });

  it("a response, a truncated query and random bytes are not DNS", () => {
    const q = Buffer.from(dig.segments[0]!);
    expect(sniffDnsDatagram(q.subarray(0, 20)).kind).toBe("no");
    const response = Buffer.from(q);
    response[2] |= 0x80;
    expect(sniffDnsDatagram(response).kind).toBe("no");
    expect(classifyDatagrams([Buffer.from("hello, this is not a dns query")]).protocol).toBe("unknown");
  });
});

describe("rules hold for both transports", () => {
  const route = compileRouter([
    { name: "example", hosts: "www.example.com", protocols: "tls, quic" },
    { name: "dns", hosts: "*.example.test", protocols: "dns" },
    { name: "h3", alpn: "h3" },
  ]);

  it("an SNI rule matches TLS over TCP and QUIC alike, a host rule matches DNS names", () => {
    expect(route({ classification: classifyDatagrams(chromium.segments) }).rule).toBe("example");
    expect(route({ classification: { protocol: "tls", confidence: 1, fields: { sni: "www.example.com" }, bytes: 1 } }).rule).toBe("example");
    expect(route({ classification: classifyDatagrams(vector("dig-udp").segments) }).rule).toBe("dns");
    expect(route({ classification: classifyDatagrams([rfcClientInitial("v1")]) }).index).toBe(-1);
  });
});

import { describe, expect, it } from "vitest";
import {
  Classification,
  classifyBytes,
  ClassificationFields,
  decodeHeaderBlock,
  huffmanDecode,
  runSniffers,
  StreamClassifier,
} from "../../src/classify";
import { TrafficError } from "../../src/errors";
import { loadVectors, vector } from "../support/classify-vectors";

const VECTORS = loadVectors();

/** Fields each real client must yield (beyond the protocol). Ports were random at capture. */
const EXPECTED: Record<string, ClassificationFields> = {
  "curl-http1": { method: "GET", path: "/api/v1/items?limit=5", httpVersion: "1.1" },
  "curl-http1-connect": { method: "CONNECT", host: "upstream.example:8080", httpVersion: "1.1" },
  "curl-h2-prior-knowledge": { method: "GET", path: "/h2/status", httpVersion: "2" },
  "curl-grpc": { method: "POST", path: "/helloworld.Greeter/SayHello", contentType: "application/grpc", grpcService: "helloworld.Greeter", grpcMethod: "SayHello" },
  "curl-socks5": { socksMethods: [0, 1] },
  "curl-socks4a": { socksCommand: "connect", targetHost: "example.test", targetPort: 8080 },
  "curl-proxy-v1": { proxyVersion: 1 },
  "curl-https": { sni: "example.test", alpn: ["h2", "http/1.1"], https: true },
  "openssl-s_client": { sni: "api.example.test", alpn: ["h2", "http/1.1"], tlsVersions: ["TLS1.3", "TLS1.2", "TLS1.1", "TLS1.0"] },
  "openssl-s_client-tls12": { sni: "legacy.example.test", tlsVersions: ["TLS1.2"] },
  "openssl-s_client-fragmented": { sni: "fragments.example.test", https: false },
  chromium: { sni: "www.example.test", alpn: ["h2", "http/1.1"], ech: true, postQuantum: true, tlsVersions: ["TLS1.3", "TLS1.2"] },
  "mosquitto_pub-v311": { mqttVersion: "3.1.1", clientId: "sensor-17" },
  "mosquitto_pub-v5": { mqttVersion: "5.0", clientId: "sensor-5" },
  "mosquitto_pub-v31": { mqttVersion: "3.1", clientId: "old-sensor" },
  "redis-cli": { command: "PING" },
  "psql-startup": { pgRequest: "startup", user: "alice", database: "shop", applicationName: "classify-vectors" },
  "psql-sslrequest": { pgRequest: "ssl" },
  ssh: { sshVersion: "2.0" },
  "kcat-metadata": { apiKey: 18, apiName: "ApiVersions", clientId: "rdkafka" },
  "dig-tcp": { dnsName: "www.example.test", dnsType: "AAAA" },
  "curl-smtp": {},
  "curl-ftp": {},
};

function sameAnswer(a: Classification, b: Classification): void {
  expect(a.protocol).toBe(b.protocol);
  expect(a.fields).toEqual(b.fields);
}

describe("real client vectors", () => {
  it("covers every protocol the issue names that a Debian client speaks", () => {
    const protocols = new Set(VECTORS.map((v) => v.expect));
    for (const p of ["tls", "http1", "http2", "grpc", "ssh", "mqtt", "redis", "postgresql", "kafka", "socks4", "socks5", "proxy", "dns", "server-first"]) {
      expect(protocols.has(p), p).toBe(true);
    }
    for (const v of VECTORS) expect(EXPECTED[v.name], `expected fields for ${v.name}`).toBeDefined();
  });

  for (const v of VECTORS) {
    describe(v.name, () => {
      const whole = classifyBytes(v.bytes);

      it(`is ${v.expect} with its fields`, () => {
        expect(whole.protocol).toBe(v.expect);
        expect(whole.fields).toMatchObject(EXPECTED[v.name]!);
        if (v.bytes.length > 0) expect(whole.confidence).toBeGreaterThan(0.5);
        expect(whole.bytes).toBe(v.bytes.length);
      });

      it("gives the same answer replayed segment by segment as recorded", () => {
        const s = new StreamClassifier();
        let r: Classification | null = null;
        for (const seg of v.segments) r = s.push(seg);
        r ??= s.end();
        sameAnswer(r, whole);
      });

      it("gives the same answer split at every byte boundary, and never a different one early", () => {
        for (let k = 1; k < v.bytes.length; k++) {
          const early = runSniffers(v.bytes.subarray(0, k), false);
          if (early !== null && early.protocol !== v.expect) {
            throw new Error(`prefix of ${k} bytes decided ${early.protocol}`);
          }
          const s = new StreamClassifier();
          const first = s.push(v.bytes.subarray(0, k));
          const r = first ?? s.push(v.bytes.subarray(k)) ?? s.end();
          expect(r.protocol).toBe(v.expect);
          if (first === null) sameAnswer(r, whole);
        }
      });

      it("gives the same answer fed one byte at a time", () => {
        const s = new StreamClassifier();
        let r: Classification | null = null;
        for (let i = 0; i < v.bytes.length && r === null; i++) r = s.push(v.bytes.subarray(i, i + 1));
        sameAnswer(r ?? s.end(), whole);
      });

      it("truncated at every length is the same protocol or an explicit incomplete, never another protocol", () => {
        for (let k = 1; k < v.bytes.length; k++) {
          const r = classifyBytes(v.bytes.subarray(0, k));
          const allowed = v.expect === "grpc" ? ["grpc", "http2"] : [v.expect];
          if (r.protocol === "incomplete") {
            expect(r.fields.candidates, `prefix ${k}`).toContain(v.expect === "grpc" ? "http2" : v.expect);
            expect(r.confidence).toBe(0);
          } else if (!allowed.includes(r.protocol)) {
            throw new Error(`prefix of ${k} bytes classified as ${r.protocol}`);
          }
        }
      });

      it("corrupted byte by byte never throws and never claims a confidence out of range", () => {
        for (let i = 0; i < v.bytes.length; i++) {
          const bad = Buffer.from(v.bytes);
          bad[i] = bad[i]! ^ 0xff;
          const r = classifyBytes(bad);
          expect(r.confidence).toBeGreaterThanOrEqual(0);
          expect(r.confidence).toBeLessThanOrEqual(1);
        }
      });
    });
  }
});

describe("corruptions that must not pass", () => {
  it("TLS: an extension length one byte too long is not TLS", () => {
    const b = Buffer.from(vector("openssl-s_client").bytes);
    // Extensions block length sits right after compression methods; grow it by one.
    const sid = b[9 + 34]!;
    let p = 9 + 35 + sid;
    p += 2 + b.readUInt16BE(p);
    p += 1 + b[p]!;
    b.writeUInt16BE(b.readUInt16BE(p) + 1, p);
    expect(classifyBytes(b).protocol).not.toBe("tls");
  });

  it("TLS: a record that is not a handshake, or a ServerHello, is not a ClientHello", () => {
    const b = Buffer.from(vector("curl-https").bytes);
    b[0] = 0x17;
    expect(classifyBytes(b).protocol).toBe("unknown");
    const c = Buffer.from(vector("curl-https").bytes);
    c[5] = 2;
    expect(classifyBytes(c).protocol).toBe("unknown");
  });

  it("TLS: the fragmented ClientHello with a non-handshake second record is not TLS", () => {
    const b = Buffer.from(vector("openssl-s_client-fragmented").bytes);
    b[5 + 512] = 0x17;
    expect(classifyBytes(b).protocol).not.toBe("tls");
  });

  it("MQTT: a wrong protocol name or a set reserved flag is not MQTT", () => {
    const b = Buffer.from(vector("mosquitto_pub-v311").bytes);
    b[4] = 0x58; // "MXTT"
    expect(classifyBytes(b).protocol).not.toBe("mqtt");
    const c = Buffer.from(vector("mosquitto_pub-v311").bytes);
    c[9] = c[9]! | 1;
    expect(classifyBytes(c).protocol).not.toBe("mqtt");
  });

  it("MQTT: waits for the declared remaining length", () => {
    const b = vector("mosquitto_pub-v311").bytes;
    expect(runSniffers(b.subarray(0, b.length - 1), false)).toBeNull();
    // Cut inside the client id: the packet is not whole, so the answer is explicit.
    expect(classifyBytes(b.subarray(0, b.length - 1))).toMatchObject({ protocol: "incomplete", fields: { candidates: ["mqtt"] } });
    // With bytes beyond the client id still missing (a will message), it decides at the end with less confidence.
    const withTail = Buffer.concat([b, Buffer.from([0, 0])]);
    withTail[1] = withTail[1]! + 2;
    expect(runSniffers(withTail.subarray(0, b.length), false)).toBeNull();
    const r = classifyBytes(withTail.subarray(0, b.length));
    expect(r).toMatchObject({ protocol: "mqtt", fields: { clientId: "sensor-17" } });
    expect(r.confidence).toBeLessThan(1);
  });

  it("PostgreSQL: a startup message whose pairs overrun the length is not PostgreSQL", () => {
    const b = Buffer.from(vector("psql-startup").bytes);
    b.writeInt32BE(b.length - 3, 0);
    expect(classifyBytes(b).protocol).not.toBe("postgresql");
  });

  it("HTTP/1: HTTP/2.0 in a request line, or a lower-case method, is not HTTP/1", () => {
    expect(classifyBytes(Buffer.from("GET / HTTP/2.0\r\n\r\n")).protocol).toBe("unknown");
    expect(classifyBytes(Buffer.from("get / HTTP/1.1\r\n\r\n")).protocol).toBe("unknown");
  });

  it("HTTP/1: headers cut off at the end still give the request line, with lower confidence", () => {
    const r = classifyBytes(Buffer.from("GET /x HTTP/1.1\r\nHost: a.example\r\nUser-Agent: y"));
    expect(r).toMatchObject({ protocol: "http1", fields: { path: "/x", host: "a.example" } });
    expect(r.confidence).toBeLessThan(1);
  });

  it("HTTP/2: a broken HPACK block still says HTTP/2 (the preface proves it), without fields", () => {
    const b = Buffer.from(vector("curl-h2-prior-knowledge").bytes);
    // Find the HEADERS frame and replace its block with an index beyond both tables.
    let p = 24;
    while (b[p + 3] !== 1) p += 9 + b.readUIntBE(p, 3);
    b[p + 9] = 0xff;
    b[p + 10] = 0x7f;
    const r = classifyBytes(b);
    expect(r.protocol).toBe("http2");
    expect(r.fields.path).toBeUndefined();
  });
});

describe("HPACK", () => {
  it("decodes the Huffman string of RFC 7541 C.4.1", () => {
    const b = Buffer.from("f1e3c2e5f23a6ba0ab90f4ff", "hex");
    expect(huffmanDecode(b, 0, b.length)).toBe("www.example.com");
  });

  it("rejects Huffman padding that is not all ones, and padding of 8 bits or more", () => {
    expect(huffmanDecode(Buffer.from([0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xfe]), 0, 12)).toBeNull();
    expect(huffmanDecode(Buffer.from([0xff]), 0, 1)).toBeNull();
  });

  it("decodes RFC 7541 C.4.1's first request", () => {
    const b = Buffer.from("828684418cf1e3c2e5f23a6ba0ab90f4ff", "hex");
    expect(decodeHeaderBlock(b, 0, b.length)).toEqual([
      { name: ":method", value: "GET" },
      { name: ":scheme", value: "http" },
      { name: ":path", value: "/" },
      { name: ":authority", value: "www.example.com" },
    ]);
  });

  it("resolves a dynamic-table reference made earlier in the same block", () => {
    // literal with indexing, new name "x-a" = "1", then indexed 62 (the entry just added)
    const b = Buffer.from([0x40, 3, 0x78, 0x2d, 0x61, 1, 0x31, 0x80 | 62]);
    expect(decodeHeaderBlock(b, 0, b.length)).toEqual([
      { name: "x-a", value: "1" },
      { name: "x-a", value: "1" },
    ]);
  });

  it("returns null for overruns and bad indexes instead of throwing", () => {
    for (const bytes of [[0x80], [0xbf], [0x41, 0x85], [0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff], [0x3f, 0xff, 0xff]]) {
      const b = Buffer.from(bytes);
      expect(decodeHeaderBlock(b, 0, b.length)).toBeNull();
    }
  });
});

describe("ambiguous length-prefixed protocols", () => {
  it("a DNS query without the RD flag (as resolvers send upstream) is DNS, not a Kafka Produce header", () => {
    const q = Buffer.from(vector("dig-tcp").bytes);
    q[4] = 0; // flags: no RD
    q[5] = 0;
    expect(classifyBytes(q)).toMatchObject({ protocol: "dns", fields: { dnsName: "www.example.test" } });
    const noEdns = Buffer.from(q);
    noEdns.writeUInt16BE(0, 12); // no additional records either
    expect(classifyBytes(noEdns).protocol).toBe("dns");
  });

  it("a Kafka request too big to wait for needs a printable client id", () => {
    const small = vector("kcat-metadata").bytes;
    const big = Buffer.from(small);
    big.writeInt32BE(100_000, 0);
    expect(classifyBytes(big)).toMatchObject({ protocol: "kafka", fields: { clientId: "rdkafka" } });
    big.writeInt16BE(-1, 12); // null client id
    expect(classifyBytes(big).protocol).not.toBe("kafka");
  });
});

describe("protocols without a Debian client", () => {
  it("Dubbo: a request header built from the protocol's layout (hessian2, two-way)", () => {
    const h = Buffer.alloc(16);
    h.writeUInt16BE(0xdabb, 0);
    h[2] = 0x80 | 0x40 | 2;
    h.writeBigUInt64BE(7n, 4);
    h.writeInt32BE(120, 12);
    expect(classifyBytes(h)).toMatchObject({ protocol: "dubbo", confidence: 1, fields: { serialization: 2, twoWay: true, event: false } });
    expect(runSniffers(h.subarray(0, 15), false)).toBeNull();
    const response = Buffer.from(h);
    response[2] = 0x02; // a response flag byte: not what a client sends first
    expect(classifyBytes(response).protocol).toBe("unknown");
  });

  it("PROXY v2: the binary signature with version 2", () => {
    const sig = Buffer.from("0d0a0d0a000d0a515549540a21110000", "hex");
    expect(classifyBytes(sig)).toMatchObject({ protocol: "proxy", fields: { proxyVersion: 2 } });
    sig[12] = 0x31;
    expect(classifyBytes(sig).protocol).toBe("unknown");
  });

  it("PostgreSQL: GSSENCRequest and CancelRequest", () => {
    const gss = Buffer.from("0000000804d21630", "hex");
    expect(classifyBytes(gss)).toMatchObject({ protocol: "postgresql", fields: { pgRequest: "gssenc" } });
    const cancel = Buffer.from("0000001004d2162e0000000100000002", "hex");
    expect(classifyBytes(cancel)).toMatchObject({ protocol: "postgresql", fields: { pgRequest: "cancel" } });
  });
});

describe("outcomes and limits", () => {
  it("server-first: no byte before the wait ends; the destination port gives a hint", () => {
    const s = new StreamClassifier({ destinationPort: 3306, serverFirstMs: 50 });
    expect(s.remainingMs(Date.now())).toBeLessThanOrEqual(50);
    expect(s.expire()).toMatchObject({ protocol: "server-first", fields: { serverFirstHint: "mysql" } });
    expect(classifyBytes(Buffer.alloc(0), { destinationPort: 25 })).toMatchObject({ protocol: "server-first", fields: { serverFirstHint: "smtp" } });
  });

  it("unknown: every sniffer declined", () => {
    expect(classifyBytes(Buffer.from("\x7fELF binary garbage that no sniffer wants"))).toMatchObject({ protocol: "unknown", confidence: 0 });
  });

  it("incomplete at the time limit, naming the sniffers that waited", () => {
    const t0 = 1_000_000;
    const s = new StreamClassifier({ timeoutMs: 1000, now: t0 });
    const hello = vector("chromium").bytes;
    expect(s.push(hello.subarray(0, 100), t0 + 10)).toBeNull();
    const r = s.push(hello.subarray(100, 200), t0 + 1000);
    expect(r).toMatchObject({ protocol: "incomplete", fields: { candidates: ["tls"] } });
    expect(s.push(hello.subarray(200), t0 + 1001)).toBe(r);
  });

  it("incomplete at the byte cap, and never keeps more than the cap", () => {
    // A ClientHello that declares 16,000 bytes: it cannot finish under a 4 KiB cap.
    const head = Buffer.from([0x16, 0x03, 0x01, 0x3e, 0x84, 0x01, 0x00, 0x3e, 0x80, 0x03, 0x03]);
    const s = new StreamClassifier({ maxBytes: 4096 });
    expect(s.push(head)).toBeNull();
    let r: Classification | null = null;
    for (let i = 0; i < 100 && r === null; i++) r = s.push(Buffer.alloc(1000, 0x41));
    expect(r).toMatchObject({ protocol: "incomplete", bytes: 4096, fields: { candidates: ["tls"] } });
    expect(s.bytes.length).toBe(4096);
  });

  it("bad input and bad options are TrafficErrors", () => {
    expect(() => classifyBytes("GET /" as unknown as Buffer)).toThrow(TrafficError);
    try {
      classifyBytes(Buffer.alloc(1), { maxBytes: -1 });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(TrafficError);
      expect((err as TrafficError).code).toBe("ERR_CLASSIFY_CONFIG");
    }
    expect(() => new StreamClassifier({ timeoutMs: 1.5 })).toThrow(TrafficError);
  });

  it("accepts a plain Uint8Array", () => {
    const v = vector("redis-cli").bytes;
    expect(classifyBytes(new Uint8Array(v)).protocol).toBe("redis");
  });
});

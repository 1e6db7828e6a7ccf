import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  Classification,
  classifyBytes,
  classifyDatagrams,
  DEFAULT_SNIFFERS,
  decodeHeaderBlock,
  decryptQuicInitial,
  huffmanDecode,
  quicCryptoFrames,
  runSniffers,
  StreamClassifier,
} from "../../src/classify";
import { useHelloKey } from "../../src/classify/fingerprint";
import { huffmanCodeLengths } from "../../src/classify/hpack";
import { TrafficError } from "../../src/errors";
import { loadVectors, vector } from "../support/classify-vectors";
import { cryptoFrame, cryptoStream, padded, protectInitial, rfcClientInitial } from "../support/quic-packets";

// FUZZ_RUNS (npm run fuzz) raises every property to at least that many runs.
const runs = (ci: number): number => Math.max(ci, Number(process.env["FUZZ_RUNS"] ?? 0));

const VECTORS = loadVectors().filter((v) => v.bytes.length > 0);
const OUTCOMES = new Set(["unknown", "incomplete", "server-first"]);

function wellFormed(r: Classification, n: number): void {
  expect(typeof r.protocol).toBe("string");
  expect(r.confidence >= 0 && r.confidence <= 1).toBe(true);
  expect(r.bytes).toBeLessThanOrEqual(n);
  if (OUTCOMES.has(r.protocol)) expect(r.confidence).toBeLessThanOrEqual(0.7);
}

/** Real vectors with random damage: flipped bytes, inserted and removed runs, cut ends. */
const mutated = fc
  .record({
    v: fc.integer({ min: 0, max: VECTORS.length - 1 }),
    flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 8 }),
    insert: fc.option(fc.tuple(fc.nat(), fc.uint8Array({ maxLength: 64 }))),
    cut: fc.option(fc.nat()),
  })
  .map(({ v, flips, insert, cut }) => {
    let b = Buffer.from(VECTORS[v]!.bytes);
    for (const [at, x] of flips) b[at % b.length] = b[at % b.length]! ^ x;
    if (insert !== null) {
      const at = insert[0] % (b.length + 1);
      b = Buffer.concat([b.subarray(0, at), Buffer.from(insert[1]), b.subarray(at)]);
    }
    if (cut !== null) b = b.subarray(0, cut % (b.length + 1));
    return b;
  });

describe("classify under random input", () => {
  it("random bytes: only classifications, never an exception", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), fc.boolean(), (bytes, final) => {
        const b = Buffer.from(bytes);
        const r = runSniffers(b, final);
        if (final) expect(r).not.toBeNull();
        if (r !== null) wellFormed(r, b.length);
        for (const s of DEFAULT_SNIFFERS) expect(["match", "no", "more"]).toContain(s.sniff(b, final).kind);
      }),
      { numRuns: runs(3000) },
    );
  });

  it("random bytes behind every real signature: the structured paths get exercised", () => {
    const heads = VECTORS.map((v) => v.bytes.subarray(0, Math.min(12, v.bytes.length)));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: heads.length - 1 }), fc.uint8Array({ maxLength: 2048 }), (i, tail) => {
        const b = Buffer.concat([heads[i]!, Buffer.from(tail)]);
        wellFormed(classifyBytes(b), b.length);
      }),
      { numRuns: runs(3000) },
    );
  });

  it("mutated real vectors: only classifications, never an exception", () => {
    fc.assert(
      fc.property(mutated, (b) => {
        wellFormed(classifyBytes(b), b.length);
      }),
      { numRuns: runs(5000) },
    );
  });

  it("a stream in random chunks stays within the byte cap and ends with an answer", () => {
    fc.assert(
      fc.property(mutated, fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 2048 }), (b, cuts, maxBytes) => {
        const s = new StreamClassifier({ maxBytes });
        let at = 0;
        let r: Classification | null = null;
        for (const c of cuts) {
          if (at >= b.length || r !== null) break;
          r = s.push(b.subarray(at, at + c));
          at += c;
          expect(s.bytes.length).toBeLessThanOrEqual(maxBytes);
        }
        r ??= s.end();
        wellFormed(r, maxBytes);
      }),
      { numRuns: runs(2000) },
    );
  });

  it("HPACK and Huffman decoders: null or headers, never an exception", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        const out = decodeHeaderBlock(bytes, 0, bytes.length);
        expect(out === null || Array.isArray(out)).toBe(true);
        const s = huffmanDecode(bytes, 0, bytes.length);
        expect(s === null || typeof s === "string").toBe(true);
      }),
      { numRuns: runs(5000) },
    );
  });

  it("Huffman: whatever a canonical encoder built from the code lengths writes decodes back", () => {
    // Codes rebuilt independently of the decoder's tables: sort by (length, symbol), count up.
    const lengths = huffmanCodeLengths();
    const order = lengths.map((len, sym) => [len, sym] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const codes = new Array<[number, number]>(257);
    let code = 0;
    for (let k = 0; k < order.length; k++) {
      if (k > 0) code = (code + 1) << (order[k]![0] - order[k - 1]![0]);
      codes[order[k]![1]] = [code, order[k]![0]];
    }
    expect(codes[256]).toEqual([0x3fffffff, 30]); // EOS, as RFC 7541 Appendix B lists it
    expect(codes[0x61]).toEqual([0x3, 5]); // 'a'
    const encode = (bytes: Uint8Array): Buffer => {
      let bits = "";
      for (const byte of bytes) bits += codes[byte]![0].toString(2).padStart(codes[byte]![1], "0");
      bits += "1".repeat((8 - (bits.length % 8)) % 8);
      const out = Buffer.alloc(bits.length / 8);
      for (let i = 0; i < out.length; i++) out[i] = parseInt(bits.slice(i * 8, i * 8 + 8), 2);
      return out;
    };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const enc = encode(bytes);
        expect(huffmanDecode(enc, 0, enc.length)).toBe(Buffer.from(bytes).toString("latin1"));
      }),
      { numRuns: runs(3000) },
    );
  });

  it("inputs that are not bytes raise TrafficError, nothing else", () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        if (value instanceof Uint8Array) return;
        try {
          classifyBytes(value as Uint8Array);
          expect.unreachable();
        } catch (err) {
          expect(err).toBeInstanceOf(TrafficError);
        }
      }),
      { numRuns: runs(500) },
    );
  });
});

describe("TLS fingerprints from the cache under near-identical hellos", () => {
  // Real ClientHellos with 16-bit values swapped, changed, or turned into GREASE: hellos
  // that differ from each other in one fingerprinted value, or only where fingerprints do
  // not look. Each one's fingerprints computed afresh (caches emptied) must be what the
  // warm cache gives, in any order and again: a key shared by two of them would hand one
  // the other's fingerprints.
  const tls = VECTORS.filter((v) => classifyBytes(v.bytes).protocol === "tls").map((v) => v.bytes);
  const near = fc
    .record({
      v: fc.integer({ min: 0, max: tls.length - 1 }),
      edits: fc.array(fc.tuple(fc.nat(), fc.constantFrom("swap", "change", "grease"), fc.integer({ min: 0, max: 0xffff })), { minLength: 1, maxLength: 3 }),
    })
    .map(({ v, edits }) => {
      const b = Buffer.from(tls[v]!);
      // 16-bit values past the record and handshake headers, on even and odd offsets alike.
      const at = (n: number) => 9 + (n % (b.length - 12));
      for (const [n, kind, value] of edits) {
        const i = at(n);
        if (kind === "swap") {
          const x = b.readUInt16BE(i);
          b.writeUInt16BE(b.readUInt16BE(i + 2), i);
          b.writeUInt16BE(x, i + 2);
        } else if (kind === "change") b.writeUInt16BE(value, i);
        else b.writeUInt16BE(((value & 0xf) << 12) | 0x0a00 | ((value & 0xf) << 4) | 0x0a, i);
      }
      return b;
    });

  it.each(["native", "js"] as const)("%s key: warm-cache fingerprints equal fresh ones for 1,500 near-identical hellos", (implementation) => {
    const hellos = [...tls, ...fc.sample(near, runs(1500))];
    const pick = (b: Buffer) => {
      const f = classifyBytes(b).fields;
      return f.ja4 === undefined ? null : [f.ja4, f.ja3, f.ja3Hash];
    };
    try {
      const fresh = hellos.map((b) => {
        useHelloKey(implementation);
        return pick(b);
      });
      expect(fresh.filter((f) => f !== null).length).toBeGreaterThan(hellos.length / 4);
      expect(useHelloKey(implementation)).toBe(implementation);
      for (const order of [hellos.map((_b, i) => i), hellos.map((_b, i) => hellos.length - 1 - i)]) {
        const wrong = order.filter((i) => JSON.stringify(pick(hellos[i]!)) !== JSON.stringify(fresh[i]));
        expect(wrong.map((i) => hellos[i]!.toString("hex"))).toEqual([]);
      }
    } finally {
      useHelloKey("native");
    }
  });
});

describe("UDP datagrams under random input", () => {
  const DATAGRAMS = [...loadVectors("udp").map((v) => v.segments), [rfcClientInitial("v1")], [rfcClientInitial("v2")]];
  const sessions = fc.integer({ min: 0, max: DATAGRAMS.length - 1 }).map((i) => DATAGRAMS[i]!);

  it("random datagrams: only classifications, never an exception", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 1500 }), { maxLength: 6 }), (ds) => {
        const r = classifyDatagrams(ds);
        wellFormed(r, ds.reduce((n, d) => n + d.length, 0));
      }),
      { numRuns: runs(2000) },
    );
  });

  it("real datagrams with damaged headers, lengths and ends: only classifications", () => {
    fc.assert(
      fc.property(
        sessions,
        fc.array(fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }),
        fc.option(fc.nat()),
        (ds, flips, cut) => {
          const damaged = ds.map((d, k) => {
            let b = Buffer.from(d);
            if (k === 0) for (const [at, x] of flips) b[at % b.length] = b[at % b.length]! ^ x;
            if (cut !== null && k === 0) b = b.subarray(0, cut % (b.length + 1));
            return b;
          });
          wellFormed(classifyDatagrams(damaged), damaged.reduce((n, d) => n + d.length, 0));
          for (const d of damaged) {
            const p = decryptQuicInitial(d);
            if (p !== null) expect(Array.isArray(quicCryptoFrames(p.payload))).toBe(true);
          }
        },
      ),
      { numRuns: runs(2000) },
    );
  });

  it("authenticated Initials carrying random frames: only classifications", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 1200 }), fc.nat({ max: 0xffff }), (frames, pn) => {
        const d = protectInitial(Buffer.from("0102030405060708", "hex"), pn, padded(Buffer.from(frames), 1100));
        wellFormed(classifyDatagrams([d]), d.length);
        expect(decryptQuicInitial(d)?.packetNumber).toBe(pn);
      }),
      { numRuns: runs(500) },
    );
  });

  it("a ClientHello cut into CRYPTO frames, shuffled and duplicated over packets and datagrams, reassembles", () => {
    const hello = cryptoStream(vector("chromium-quic").segments);
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: hello.length - 1 }), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 3 }),
        fc.nat(),
        fc.integer({ min: 1, max: 4 }),
        (cutsIn, dupes, seed, perDatagram) => {
          const cuts = [0, ...cutsIn.sort((a, b) => a - b), hello.length];
          const frames = cuts.slice(1).map((end, i) => cryptoFrame(cuts[i]!, hello.subarray(cuts[i]!, end)));
          for (const d of dupes) frames.push(frames[d % frames.length]!);
          // A seeded shuffle: fast-check shrinks the seed like any other input.
          let x = seed + 1;
          for (let i = frames.length - 1; i > 0; i--) {
            x = (x * 1103515245 + 12345) % 2147483648;
            const j = x % (i + 1);
            [frames[i], frames[j]] = [frames[j]!, frames[i]!];
          }
          const dcid = Buffer.from("a1a2a3a4a5a6a7a8", "hex");
          const datagrams: Buffer[] = [];
          for (let i = 0; i < frames.length; i += perDatagram) {
            datagrams.push(Buffer.concat(frames.slice(i, i + perDatagram).map((f, k) => protectInitial(dcid, i + k, padded(f, 64)))));
          }
          const r = classifyDatagrams(datagrams, { maxDatagrams: datagrams.length });
          expect(r.protocol).toBe("quic");
          expect(r.fields.sni).toBe("www.example.com");
        },
      ),
      { numRuns: runs(300) },
    );
  });
});


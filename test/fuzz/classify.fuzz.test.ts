import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Classification, classifyBytes, DEFAULT_SNIFFERS, decodeHeaderBlock, huffmanDecode, runSniffers, StreamClassifier } from "../../src/classify";
import { huffmanCodeLengths } from "../../src/classify/hpack";
import { TrafficError } from "../../src/errors";
import { loadVectors } from "../support/classify-vectors";

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

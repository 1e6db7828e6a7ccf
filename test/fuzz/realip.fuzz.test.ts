import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TrafficError } from "../../src/errors";
import { parseRangeList } from "../../src/net/cidr";
import { tryParseIp } from "../../src/net/ip";
import { parseForwarded } from "../../src/realip/forwarded";
import { compileRealIp } from "../../src/realip/resolve";
import { parseXForwardedFor } from "../../src/realip/x-forwarded-for";

// Defaults keep CI quick (≥100k inputs in this file); FUZZ_RUNS raises each property's count.
const RUNS = Number(process.env["FUZZ_RUNS"] ?? 25_000);

/** Runs `fn`; anything thrown must be a TrafficError with a code and a reason. */
function onlyTyped(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof TrafficError)) throw err;
    expect(err.code).toMatch(/^ERR_/);
    expect(err.reason.length).toBeGreaterThan(0);
  }
}

const ALPHABET = "0123456789abcdefABCDEF.:[]\"_,;= \\%\t-xXunknowfrFORyt/\u0000\u00ff";
const headerChars = fc.string({ unit: fc.constantFrom(...ALPHABET), maxLength: 120 });

const VALID = [
  'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"',
  "203.0.113.7:4711, [2001:db8::2]:443, 2001:db8::3,198.51.100.1, unknown",
  'for="_gazonk", for=unknown;host="example.com:8080"',
  "::ffff:192.0.2.9, 10.0.0.1",
];

/** A valid header with a few random edits: insert, delete or replace characters. */
const mutated = fc
  .tuple(
    fc.constantFrom(...VALID),
    fc.array(fc.tuple(fc.nat(), fc.constantFrom("insert", "delete", "replace"), fc.constantFrom(...ALPHABET)), { maxLength: 6 }),
  )
  .map(([text, edits]) => {
    let s = text;
    for (const [pos, op, ch] of edits) {
      const i = s.length === 0 ? 0 : pos % s.length;
      if (op === "insert") s = s.slice(0, i) + ch + s.slice(i);
      else if (op === "delete") s = s.slice(0, i) + s.slice(i + 1);
      else s = s.slice(0, i) + ch + s.slice(i + 1);
    }
    return s;
  });

const anyHeader = fc.oneof(headerChars, mutated, fc.string({ maxLength: 200 }));

describe("real-IP parsers on hostile input raise only typed errors", () => {
  it("Forwarded", () => {
    fc.assert(fc.property(anyHeader, (h) => onlyTyped(() => parseForwarded(h))), { numRuns: RUNS });
  });

  it("X-Forwarded-For", () => {
    fc.assert(fc.property(anyHeader, (h) => onlyTyped(() => parseXForwardedFor(h))), { numRuns: RUNS });
  });

  it("CIDR lists", () => {
    fc.assert(fc.property(anyHeader, (h) => onlyTyped(() => parseRangeList(h))), { numRuns: RUNS });
  });

  it("the whole resolver, trusting everyone so every entry is read", () => {
    const resolvers = (["x-forwarded-for", "forwarded", "x-real-ip"] as const).map((header) => compileRealIp({ trust: true, header }));
    fc.assert(
      fc.property(anyHeader, anyHeader, anyHeader, fc.constantFrom("127.0.0.1", "::1", "2001:db8::1"), fc.constantFrom(0, 1, 2), (fwd, xff, xri, peer, which) =>
        onlyTyped(() => {
          const r = resolvers[which]!({ peer: { address: peer }, headers: { forwarded: fwd, "x-forwarded-for": xff, "x-real-ip": xri } });
          // Whatever it decides is an address it could parse, or a null with an identifier.
          if (r.address !== null) expect(tryParseIp(r.address)).not.toBeNull();
          else expect(r.identifier).toBeDefined();
        }),
      ),
      { numRuns: RUNS },
    );
  });

  it("never trusts what an untrusted peer wrote", () => {
    const resolve = compileRealIp({ trust: "loopback" });
    fc.assert(
      fc.property(anyHeader, anyHeader, (fwd, xff) => {
        const r = resolve({ peer: { address: "203.0.113.99" }, headers: { forwarded: fwd, "x-forwarded-for": xff, "x-real-ip": xff } });
        expect(r.address).toBe("203.0.113.99");
      }),
      { numRuns: Math.ceil(RUNS / 5) },
    );
  });
});

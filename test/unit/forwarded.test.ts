import { describe, expect, it } from "vitest";
import { parseForwarded, splitForwarded } from "../../src/realip/forwarded";
import { parseXForwardedFor } from "../../src/realip/x-forwarded-for";
import { TrafficError } from "../../src/errors";

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TrafficError);
    return (err as TrafficError).code;
  }
  return undefined;
}

describe("Forwarded (RFC 7239)", () => {
  it("parses the RFC's examples", () => {
    expect(parseForwarded('for="_gazonk"')[0]!.for).toEqual({ kind: "obfuscated", id: "_gazonk" });
    const v6 = parseForwarded('For="[2001:db8:cafe::17]:4711"')[0]!.for;
    expect(v6).toMatchObject({ kind: "ip", port: 4711, ip: { family: 6, text: "2001:db8:cafe::17" } });
    const e = parseForwarded("for=192.0.2.60;proto=http;by=203.0.113.43")[0]!;
    expect(e.for).toMatchObject({ kind: "ip", ip: { text: "192.0.2.60" } });
    expect(e.proto).toBe("http");
    expect(e.by).toMatchObject({ kind: "ip", ip: { text: "203.0.113.43" } });
    const list = parseForwarded("for=192.0.2.43, for=198.51.100.17");
    expect(list.map((x) => (x.for as { ip: { text: string } }).ip.text)).toEqual(["192.0.2.43", "198.51.100.17"]);
  });

  it("handles unknown, obfuscated ports, host and extensions", () => {
    const [e] = parseForwarded('for=unknown;host="example.com:8080";secret=abc');
    expect(e!.for).toEqual({ kind: "unknown" });
    expect(e!.host).toBe("example.com:8080");
    expect(e!.extensions).toEqual({ secret: "abc" });
    expect(parseForwarded('for="192.0.2.1:_p1"')[0]!.for).toMatchObject({ kind: "ip" });
    expect(parseForwarded('for="unknown:443"')[0]!.for).toEqual({ kind: "unknown", port: 443 });
  });

  it("unescapes quoted-pairs and keeps quoted commas inside one element", () => {
    expect(splitForwarded('for=1.2.3.4;x="a,b", for=5.6.7.8')).toEqual(['for=1.2.3.4;x="a,b"', "for=5.6.7.8"]);
    expect(parseForwarded('x="a\\"b"')[0]!.extensions["x"]).toBe('a"b');
  });

  it("skips empty list elements and tolerates white space around ;", () => {
    expect(parseForwarded(" , for=192.0.2.1 ; proto=https ,, ")).toHaveLength(1);
  });

  it.each([
    ["for=2001:db8::1", "bare IPv6 (must be quoted and bracketed)"],
    ['for="2001:db8::1"', "unbracketed IPv6"],
    ['for="[192.0.2.1]"', "IPv4 in brackets"],
    ["for=192.0.2.1:80", "unquoted port (colon is not a token character)"],
    ['for="[2001:db8::1]:99999"', "port out of range"],
    ['for="1231233"', "legacy IPv4 form"],
    ['for="010.0.0.1"', "leading zero"],
    ["for=1.2.3.4;for=5.6.7.8", "duplicate parameter"],
    ['for="1.2.3.4', "unterminated quote"],
    ["for", "missing ="],
    ["for=", "empty value"],
    ["for=1.2.3.4 junk", "junk after value"],
    ["proto=1http", "bad scheme"],
    ["for=_", "obfuscated id too short"],
    ["for=\"_a b\"", "space in obfuscated id"],
    ["for=1.2.3.4\u0000", "control character"],
  ])("rejects %j (%s)", (header) => {
    expect(code(() => parseForwarded(header))).toBe("ERR_FORWARDED_SYNTAX");
  });
});

describe("X-Forwarded-For", () => {
  it("parses addresses with and without ports", () => {
    const hops = parseXForwardedFor("203.0.113.7:4711, [2001:db8::2]:443, 2001:db8::3,198.51.100.1, unknown, [2001:db8::4]");
    expect(hops.map((h) => (h.kind === "ip" ? `${h.ip.text}|${h.port ?? ""}` : h.kind))).toEqual([
      "203.0.113.7|4711",
      "2001:db8::2|443",
      "2001:db8::3|",
      "198.51.100.1|",
      "unknown",
      "2001:db8::4|",
    ]);
  });
  it("normalises mapped addresses", () => {
    expect(parseXForwardedFor("::ffff:192.0.2.9")[0]).toMatchObject({ ip: { family: 4, text: "192.0.2.9" } });
  });
  it("skips empty elements", () => {
    expect(parseXForwardedFor(" ,192.0.2.1,, 192.0.2.2 ,")).toHaveLength(2);
  });
  it.each(["1231233", "192.0.2.1:x", "192.0.2.1:70000", "[2001:db8::1", "[192.0.2.1]", "a b", "192.0.2.1;x", "2001:db8::1:80:1:1:1:1:1:1", "0x7f000001", "192.0.2.1\u0000"])(
    "rejects %j",
    (header) => {
      expect(code(() => parseXForwardedFor(header))).toBe("ERR_XFF_SYNTAX");
    },
  );
});

import proxyaddr from "proxy-addr";
import { describe, expect, it } from "vitest";
import { compileRealIp, RealIpInput } from "../../src/realip/resolve";
import type { ProxyHeader } from "../../src/proxy-protocol/types";
import { TrafficError } from "../../src/errors";

const proxyHeader = (source: string, port = 51000, command: "proxy" | "local" = "proxy"): ProxyHeader => ({
  version: 2,
  command,
  family: source.includes(":") ? "tcp6" : "tcp4",
  sourceAddress: source,
  sourcePort: port,
  destinationAddress: "198.51.100.20",
  destinationPort: 443,
  tlvs: [],
  length: 28,
});

describe("trust walk over X-Forwarded-For", () => {
  const resolve = compileRealIp({ trust: "10.0.0.0/8", sources: ["x-forwarded-for"] });

  it("returns the socket peer when nothing is trusted", () => {
    const r = compileRealIp({ sources: ["x-forwarded-for"] })({
      peer: { address: "203.0.113.5", port: 40000 },
      headers: { "x-forwarded-for": "198.51.100.1" },
    });
    expect(r).toMatchObject({ address: "203.0.113.5", port: 40000, source: "socket", trustedHops: 0, untrustedHeaders: true });
    expect(r.ignored).toEqual([{ source: "x-forwarded-for", reason: "untrusted-peer", suppliedBy: "203.0.113.5" }]);
  });

  it("steps left through trusted proxies and stops at the first untrusted address", () => {
    const r = resolve({ peer: { address: "10.0.0.1" }, headers: { "x-forwarded-for": "203.0.113.9, 10.0.0.2" } });
    expect(r.address).toBe("203.0.113.9");
    expect(r.source).toBe("x-forwarded-for");
    expect(r.trustedHops).toBe(2);
    expect(r.chain.map((h) => [h.address, h.trusted])).toEqual([
      ["10.0.0.1", true],
      ["10.0.0.2", true],
      ["203.0.113.9", false],
    ]);
    expect(r.untrustedHeaders).toBe(false);
  });

  it("is not fooled by a forged leftmost entry (the 'first public address' trap)", () => {
    // The attacker sends XFF: 192.0.2.66 (public, forged); the trusted proxy appends the real peer.
    const r = resolve({ peer: { address: "10.0.0.1" }, headers: { "x-forwarded-for": "192.0.2.66, 203.0.113.9" } });
    expect(r.address).toBe("203.0.113.9");
    expect(r.untrustedHeaders).toBe(true);
    expect(r.ignoredEntries).toBe(1);
  });

  it("is not fooled by a forged private-looking entry", () => {
    const r = resolve({ peer: { address: "10.0.0.1" }, headers: { "x-forwarded-for": "10.9.9.9, 203.0.113.9" } });
    expect(r.address).toBe("203.0.113.9");
  });

  it("does not judge junk left of the first untrusted hop", () => {
    const r = resolve({ peer: { address: "10.0.0.1" }, headers: { "x-forwarded-for": "not-an-ip, 203.0.113.9" } });
    expect(r.address).toBe("203.0.113.9");
    expect(r.ignoredEntries).toBe(1);
  });

  it("raises a typed error for a malformed entry a trusted proxy vouched for", () => {
    expect(() => resolve({ peer: { address: "10.0.0.1" }, headers: { "x-forwarded-for": "203.0.113.9, 1231233" } })).toThrow(
      expect.objectContaining({ code: "ERR_XFF_SYNTAX" }),
    );
  });

  it("returns the leftmost entry when every hop is trusted", () => {
    const r = resolve({ peer: { address: "10.0.0.1" }, headers: { "x-forwarded-for": "10.0.0.3, 10.0.0.2" } });
    expect(r.address).toBe("10.0.0.3");
  });

  it("joins repeated header lines in order", () => {
    const r = resolve({ peer: { address: "10.0.0.1" }, headers: { "x-forwarded-for": ["203.0.113.1", "10.0.0.2"] } });
    expect(r.address).toBe("203.0.113.1");
  });

  it("keeps the port an entry carries", () => {
    const r = resolve({ peer: { address: "10.0.0.1" }, headers: { "x-forwarded-for": "[2001:db8::7]:4711" } });
    expect(r).toMatchObject({ address: "2001:db8::7", family: 6, port: 4711 });
  });

  it("normalises an IPv4-mapped socket peer before matching trust", () => {
    const r = resolve({ peer: { address: "::ffff:10.0.0.1" }, headers: { "x-forwarded-for": "203.0.113.9" } });
    expect(r.address).toBe("203.0.113.9");
    expect(r.chain[0]!.address).toBe("10.0.0.1");
  });

  it("counts hops like Express trust proxy N", () => {
    const two = compileRealIp({ trust: 2, sources: ["x-forwarded-for"] });
    const r = two({ peer: { address: "192.0.2.1" }, headers: { "x-forwarded-for": "198.51.100.3, 198.51.100.2, 198.51.100.1" } });
    expect(r.address).toBe("198.51.100.2");
    expect(r.trustedHops).toBe(2);
  });

  it("combines a list and a hop limit", () => {
    const r = compileRealIp({ trust: { proxies: "10.0.0.0/8", hops: 1 }, sources: ["x-forwarded-for"] })({
      peer: { address: "10.0.0.1" },
      headers: { "x-forwarded-for": "203.0.113.1, 10.0.0.2" },
    });
    expect(r.address).toBe("10.0.0.2");
  });

  it("ends with an identifier, not a guess, at `unknown`", () => {
    const r = resolve({ peer: { address: "10.0.0.1" }, headers: { "x-forwarded-for": "203.0.113.1, unknown" } });
    expect(r.address).toBeNull();
    expect(r.identifier).toBe("unknown");
  });
});

describe("trust walk over Forwarded", () => {
  const resolve = compileRealIp({ trust: ["loopback", "2001:db8:ffff::/48"], header: "forwarded" });

  it("walks elements from the right", () => {
    const r = resolve({
      peer: { address: "::1" },
      headers: { forwarded: 'for=198.51.100.17;proto=https, for="[2001:db8:ffff::9]:80"' },
    });
    expect(r.address).toBe("198.51.100.17");
    expect(r.source).toBe("forwarded");
    expect(r.trustedHops).toBe(2);
  });

  it("reports an obfuscated client as an identifier", () => {
    const r = resolve({ peer: { address: "127.0.0.1" }, headers: { forwarded: 'for="_hidden:_port"' } });
    expect(r).toMatchObject({ address: null, identifier: "_hidden" });
  });

  it("treats an element without for as unknown", () => {
    const r = resolve({ peer: { address: "127.0.0.1" }, headers: { forwarded: "proto=https" } });
    expect(r).toMatchObject({ address: null, identifier: "unknown" });
  });

  it("with the legacy source list, prefers Forwarded over X-Forwarded-For and says so (mixed headers)", () => {
    const r = compileRealIp({ trust: "loopback", sources: ["forwarded", "x-forwarded-for"] })({
      peer: { address: "127.0.0.1" },
      headers: { forwarded: "for=203.0.113.50", "x-forwarded-for": "192.0.2.66" },
    });
    expect(r.address).toBe("203.0.113.50");
    expect(r.ignored).toContainEqual({ source: "x-forwarded-for", reason: "lower-priority" });
    expect(r.ignoredHeaders).toEqual(["x-forwarded-for"]);
  });

  it("follows the configured order", () => {
    const r = compileRealIp({ trust: "loopback", sources: ["x-forwarded-for", "forwarded"] })({
      peer: { address: "127.0.0.1" },
      headers: { forwarded: "for=203.0.113.50", "x-forwarded-for": "192.0.2.66" },
    });
    expect(r.address).toBe("192.0.2.66");
  });

  it("ignores a disabled source even from a trusted peer", () => {
    const r = compileRealIp({ trust: "loopback", sources: ["x-forwarded-for"] })({
      peer: { address: "127.0.0.1" },
      headers: { forwarded: "for=203.0.113.50" },
    });
    expect(r.address).toBe("127.0.0.1");
    expect(r.ignored).toEqual([{ source: "forwarded", reason: "not-enabled" }]);
  });
});

describe("X-Real-IP", () => {
  const resolve = compileRealIp({ trust: "loopback", sources: ["x-real-ip"] });
  it("is believed from a trusted peer", () => {
    expect(resolve({ peer: { address: "127.0.0.1" }, headers: { "x-real-ip": "203.0.113.4" } }).address).toBe("203.0.113.4");
  });
  it("is ignored from an untrusted peer (forged X-Real-IP)", () => {
    const r = resolve({ peer: { address: "203.0.113.66" }, headers: { "x-real-ip": "10.0.0.1" } });
    expect(r.address).toBe("203.0.113.66");
    expect(r.untrustedHeaders).toBe(true);
  });
  it.each([["203.0.113.4, 10.0.0.1"], [["203.0.113.4", "10.0.0.1"]], ["x"]])("rejects %j", (value) => {
    expect(() => resolve({ peer: { address: "127.0.0.1" }, headers: { "x-real-ip": value } })).toThrow(
      expect.objectContaining({ code: "ERR_REAL_IP_SYNTAX" }),
    );
  });
});

describe("PROXY protocol", () => {
  const resolve = compileRealIp({ trust: "127.0.0.2" });
  it("uses the header's source from a trusted peer", () => {
    const r = resolve({ peer: { address: "127.0.0.2", port: 1 }, proxyHeader: proxyHeader("203.0.113.10") });
    expect(r).toMatchObject({ address: "203.0.113.10", port: 51000, source: "proxy-protocol", trustedHops: 1 });
  });
  it("ignores a header from an untrusted peer, and the HTTP headers after it", () => {
    const r = resolve({
      peer: { address: "127.0.0.3" },
      proxyHeader: proxyHeader("203.0.113.10"),
      headers: { "x-forwarded-for": "192.0.2.1" },
    });
    expect(r.address).toBe("127.0.0.3");
    expect(r.ignored.map((i) => i.source)).toEqual(["proxy-protocol", "x-forwarded-for"]);
  });
  it("uses the socket for LOCAL", () => {
    const r = resolve({ peer: { address: "127.0.0.2" }, proxyHeader: proxyHeader("203.0.113.10", 1, "local") });
    expect(r.address).toBe("127.0.0.2");
    expect(r.ignored).toEqual([{ source: "proxy-protocol", reason: "local-command" }]);
  });
  it("continues into HTTP headers when the PROXY source is itself trusted", () => {
    const r = compileRealIp({ trust: ["127.0.0.2", "2001:db8::/32"] })({
      peer: { address: "127.0.0.2" },
      proxyHeader: proxyHeader("2001:db8::5"),
      headers: { "x-forwarded-for": "203.0.113.77" },
    });
    expect(r.address).toBe("203.0.113.77");
    expect(r.chain.map((h) => h.source)).toEqual(["socket", "proxy-protocol", "x-forwarded-for"]);
  });
});

describe("configuration and input errors", () => {
  it("rejects bad trust settings", () => {
    expect(() => compileRealIp({ trust: "10.0.0.1/8" })).toThrow(TrafficError);
    expect(() => compileRealIp({ trust: -1 })).toThrow(expect.objectContaining({ code: "ERR_TRUST_CONFIG" }));
    expect(() => compileRealIp({ sources: ["x-forwarded-for", "x-forwarded-for"] })).toThrow(TrafficError);
    expect(() => compileRealIp({ sources: ["via" as never] })).toThrow(TrafficError);
  });
  it("rejects a socket peer that is not an address", () => {
    expect(() => compileRealIp()({ peer: { address: "localhost" } })).toThrow(expect.objectContaining({ code: "ERR_BAD_ADDRESS" }));
  });
  it("gives a typed error when the socket is already gone (no remote address, as Express can hand over)", () => {
    const resolve = compileRealIp({ trust: "loopback" });
    for (const peer of [{} as { address: string }, { address: undefined as unknown as string }, undefined as unknown as { address: string }]) {
      expect(() => resolve({ peer, headers: { "x-forwarded-for": "192.0.2.1" } })).toThrow(
        expect.objectContaining({ name: expect.any(String), code: "ERR_BAD_ADDRESS", input: "socket peer" }),
      );
    }
  });
  it("rejects an unknown header and header together with the legacy sources", () => {
    expect(() => compileRealIp({ header: "via" as never })).toThrow(expect.objectContaining({ code: "ERR_TRUST_CONFIG" }));
    expect(() => compileRealIp({ header: "forwarded", sources: ["forwarded"] })).toThrow(expect.objectContaining({ code: "ERR_TRUST_CONFIG" }));
  });
});

describe("only the configured forwarding header is read", () => {
  const peer = { address: "127.0.0.1" };
  const headers = { forwarded: "for=10.0.0.1", "x-forwarded-for": "203.0.113.7", "x-real-ip": "10.0.0.2" };
  it.each([
    [undefined, "203.0.113.7", ["forwarded", "x-real-ip"]],
    ["x-forwarded-for", "203.0.113.7", ["forwarded", "x-real-ip"]],
    ["forwarded", "10.0.0.1", ["x-forwarded-for", "x-real-ip"]],
    ["x-real-ip", "10.0.0.2", ["forwarded", "x-forwarded-for"]],
    ["none", "127.0.0.1", ["forwarded", "x-forwarded-for", "x-real-ip"]],
  ] as const)("header %s", (header, address, ignored) => {
    const r = compileRealIp(header === undefined ? { trust: "loopback" } : { trust: "loopback", header })({ peer, headers });
    expect(r.address).toBe(address);
    expect(r.ignoredHeaders).toEqual(ignored);
  });
  it("none still reads a PROXY header from a trusted peer", () => {
    const r = compileRealIp({ trust: "loopback", header: "none" })({ peer, proxyHeader: proxyHeader("198.51.100.3") });
    expect(r).toMatchObject({ address: "198.51.100.3", source: "proxy-protocol" });
  });
});

describe("IPv4-compatible IPv6 (::a.b.c.d) is not IPv4", () => {
  it("does not trust a remote ::127.0.0.1 peer as loopback, nor ::10.0.0.1 as private", () => {
    const resolve = compileRealIp({ trust: ["loopback", "private"] });
    for (const address of ["::127.0.0.1", "::7f00:1", "::10.0.0.1"]) {
      const r = resolve({ peer: { address }, headers: { "x-forwarded-for": "192.0.2.1" } });
      expect(r.family).toBe(6);
      expect(r.address).not.toBe("192.0.2.1");
      expect(r.untrustedHeaders).toBe(true);
    }
  });
  it("still unwraps IPv4-mapped ::ffff:127.0.0.1", () => {
    const r = compileRealIp({ trust: "loopback" })({ peer: { address: "::ffff:127.0.0.1" }, headers: { "x-forwarded-for": "192.0.2.1" } });
    expect(r.address).toBe("192.0.2.1");
  });
});

describe("agreement with proxy-addr on X-Forwarded-For", () => {
  const trusts = [["loopback"], ["10.0.0.0/8", "192.168.0.0/16"], ["uniquelocal", "2001:db8::/32"]];
  const chains = [
    "",
    "203.0.113.1",
    "203.0.113.1, 10.0.0.2",
    "198.51.100.2, 192.168.1.1, 10.1.1.1",
    "10.0.0.2, 10.0.0.3",
    "2001:db8::1, 203.0.113.5",
    "2001:db8::1, fd00::1",
  ];
  const peers = ["127.0.0.1", "10.0.0.9", "::1", "203.0.113.200", "2001:db8::ff"];
  for (const trust of trusts) {
    const ours = compileRealIp({ trust, sources: ["x-forwarded-for"] });
    const theirs = proxyaddr.compile(trust);
    for (const chain of chains) {
      for (const peer of peers) {
        it(`${trust.join("+")} | ${peer} | ${chain || "(none)"}`, () => {
          const headers = chain === "" ? {} : { "x-forwarded-for": chain };
          const req = { headers, connection: { remoteAddress: peer }, socket: { remoteAddress: peer } };
          const expected = proxyaddr(req as never, theirs);
          const input: RealIpInput = { peer: { address: peer }, headers };
          expect(ours(input).address).toBe(expected);
        });
      }
    }
  }
});

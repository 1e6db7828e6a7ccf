import { describe, expect, it } from "vitest";
import { buildRuleset, defaultRouting, parsePorts, tableName } from "../../src/nft/managed-rules";

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
};

describe("managed nft rules: every value is parsed before it reaches nft", () => {
  it("builds a REDIRECT table for IPv4 and IPv6 destinations, skipping the package's own mark", () => {
    const r = buildRuleset("ab12.cd", { mode: "redirect", port: 15001, destinations: "198.51.100.0/24, 2001:db8::/32", ports: "80, 8000-8080", excludeMark: 0x100 });
    expect(r.table).toBe("traffic_policy_ab12_cd");
    expect(r.ruleset).toBe(`table inet traffic_policy_ab12_cd {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    meta mark 256 return
    ip daddr { 198.51.100.0/24 } meta l4proto tcp tcp dport { 80, 8000-8080 } redirect to :15001
    ip6 daddr { 2001:db8::/32 } meta l4proto tcp tcp dport { 80, 8000-8080 } redirect to :15001
  }
}
`);
  });

  it("builds a TPROXY table that marks packets for the local routing table", () => {
    const r = buildRuleset("n1", { mode: "tproxy", port: 15001, destinations: "198.51.100.20" });
    const { mark, table } = defaultRouting("n1");
    expect(r.ruleset).toContain(`meta l4proto tcp socket transparent 1 meta mark set ${mark} accept`);
    expect(r.ruleset).toContain(`ip daddr { 198.51.100.20/32 } meta l4proto tcp tproxy ip to :15001 meta mark set ${mark} accept`);
    expect(r).toMatchObject({ v4: true, v6: false, mark, routeTable: table });
    // Two listeners never share a mark or a routing table.
    expect(defaultRouting("n2").mark).not.toBe(mark);
    expect(mark >>> 16).toBe(0x7470);
    expect(code(() => buildRuleset("n1", { mode: "tproxy", port: 1, destinations: "198.51.100.20", routeTable: 254 }))).toBe("ERR_NFT_CONFIG");
  });

  it("refuses anything that is not a plain value", () => {
    expect(code(() => buildRuleset("n", { mode: "redirect", port: 1, destinations: "198.51.100.0/24; flush ruleset" }))).toBe("ERR_NFT_CONFIG");
    expect(code(() => buildRuleset("n", { mode: "redirect", port: 1, destinations: "198.51.100.0/24 }" }))).toBe("ERR_NFT_CONFIG");
    expect(code(() => buildRuleset("n", { mode: "redirect", port: 1, destinations: "" }))).toBe("ERR_NFT_CONFIG");
    expect(code(() => buildRuleset("n", { mode: "redirect", port: 1, destinations: "198.51.100.0/24", ports: "80 } drop" }))).toBe("ERR_NFT_CONFIG");
    expect(code(() => buildRuleset("n", { mode: "redirect", port: 70000, destinations: "198.51.100.0/24" }))).toBe("ERR_NFT_CONFIG");
    expect(code(() => buildRuleset("n", { mode: "redirect", port: 1, destinations: "198.51.100.0/24", excludeMark: 2 ** 32 }))).toBe("ERR_NFT_CONFIG");
    expect(code(() => buildRuleset("n", { mode: "masquerade" as never, port: 1, destinations: "198.51.100.0/24" }))).toBe("ERR_NFT_CONFIG");
    expect(code(() => tableName("x; nft flush ruleset"))).toBe("ERR_NFT_CONFIG");
    expect(code(() => parsePorts("90-80"))).toBe("ERR_NFT_CONFIG");
    expect(code(() => parsePorts("0"))).toBe("ERR_NFT_CONFIG");
    expect(parsePorts(" 443,80 1000-2000")).toEqual(["443", "80", "1000-2000"]);
    expect(code(() => buildRuleset("n", { mode: "redirect", port: 1, destinations: "2001:db8::/32%eth0" }))).toBe("ERR_NFT_CONFIG");
  });

  it("writes addresses in nft's terms: named ranges expanded, IPv4-mapped as IPv4, single addresses as /32 and /128", () => {
    const r = buildRuleset("n", { mode: "redirect", port: 1, destinations: "loopback, ::ffff:198.51.100.0/120, 2001:DB8::1" });
    expect(r.ruleset).toContain("ip daddr { 127.0.0.0/8, 198.51.100.0/24 }");
    expect(r.ruleset).toContain("ip6 daddr { ::1/128, 2001:db8::1/128 }");
  });

  it("adds per-source limits before capture: a rate bucket and a connection count per family, IPv6 per /64", () => {
    const r = buildRuleset("n", { mode: "tproxy", port: 1, destinations: "198.51.100.0/24, 2001:db8::/32", ports: "80", excludeMark: 7, limit: { rate: 100, maxConcurrent: 20 } });
    expect(r.ruleset).toContain("type filter hook prerouting priority mangle - 10; policy accept;");
    expect(r.ruleset).toContain("ip daddr { 198.51.100.0/24 } meta l4proto tcp tcp dport { 80 } ct state new update @limit_rate_ip { ip saddr limit rate over 100/second burst 100 packets } drop");
    expect(r.ruleset).toContain("add @limit_conn_ip6 { ip6 saddr & ffff:ffff:ffff:ffff:: ct count over 20 } drop");
    expect(r.ruleset).toMatch(/chain conn_limit \{\n.*\n {4}meta mark 7 return\n/);
    const grouped = buildRuleset("n", { mode: "redirect", port: 1, destinations: "198.51.100.0/24", limit: { rate: 5, burst: 9, v4Prefix: 24 } });
    expect(grouped.ruleset).toContain("{ ip saddr & 255.255.255.0 limit rate over 5/second burst 9 packets }");
    expect(grouped.ruleset).not.toContain("limit_conn");
    expect(grouped.ruleset).not.toContain("ip6");
    for (const limit of [{}, { rate: 0 }, { rate: 1.5 }, { rate: -1 }, { rate: 10, burst: 0 }, { maxConcurrent: Number.NaN }, { rate: 1, v6Prefix: 129 }]) {
      expect(code(() => buildRuleset("n", { mode: "redirect", port: 1, destinations: "198.51.100.0/24", limit })), JSON.stringify(limit)).toBe("ERR_NFT_CONFIG");
    }
  });
});

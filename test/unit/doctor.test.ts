import { describe, expect, it } from "vitest";
import { capabilityReport, effectiveCapabilities } from "../../src/doctor";

// CapEff lines as /proc/<pid>/status shows them.
const ROOT = "Name:\tnode\nCapEff:\t000001ffffffffff\n";
const NONE = "Name:\tnode\nCapEff:\t0000000000000000\n";
const NET_ADMIN_ONLY = "CapEff:\t0000000000001000\n";
const NET_RAW_ONLY = "CapEff:\t0000000000002000\n";

describe("capability report", () => {
  it("reads the effective set", () => {
    expect([...effectiveCapabilities(ROOT)].sort()).toEqual(["CAP_BPF", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_PERFMON"]);
    expect(effectiveCapabilities(NONE).size).toBe(0);
    expect([...effectiveCapabilities(NET_ADMIN_ONLY)]).toEqual(["CAP_NET_ADMIN"]);
  });

  it("names the missing capability and how to grant it", () => {
    const report = capabilityReport({ statusText: NONE, native: { available: true } });
    const preserve = report.find((r) => r.feature.startsWith("source-preserving"))!;
    expect(preserve).toMatchObject({ available: false });
    expect(preserve.detail).toMatch(/missing CAP_NET_ADMIN or CAP_NET_RAW/);
    expect(preserve.detail).toMatch(/AmbientCapabilities=CAP_NET_ADMIN\)/);
    expect(report.find((r) => r.feature.startsWith("eBPF"))!.detail).toMatch(/missing CAP_BPF \+ CAP_PERFMON/);
  });

  it("takes CAP_NET_RAW or CAP_NET_ADMIN for transparent sockets, as the kernel does", () => {
    for (const status of [NET_ADMIN_ONLY, NET_RAW_ONLY]) {
      const report = capabilityReport({ statusText: status, native: { available: true } });
      expect(report.find((r) => r.feature.startsWith("TPROXY"))!.available).toBe(true);
      expect(report.find((r) => r.feature.startsWith("source-preserving"))!.available).toBe(true);
    }
    const raw = capabilityReport({ statusText: NET_RAW_ONLY, native: { available: true } });
    expect(raw.find((r) => r.feature.startsWith("managed nft"))).toMatchObject({ available: false, detail: expect.stringMatching(/missing CAP_NET_ADMIN/) });
  });

  it("says when the kernel lacks BTF for eBPF", () => {
    const report = capabilityReport({ statusText: ROOT, btfPath: "/nonexistent/vmlinux", native: { available: true } });
    expect(report.find((r) => r.feature.startsWith("eBPF"))!.detail).toMatch(/BTF/);
  });

  it("says when the native addon did not load, for the features that need it", () => {
    const report = capabilityReport({ statusText: ROOT, native: { available: false, reason: "build/Release/traffic_native.node missing" } });
    expect(report.find((r) => r.feature.startsWith("TPROXY"))).toMatchObject({ available: false, detail: expect.stringMatching(/native addon not loaded/) });
    expect(report.find((r) => r.feature.startsWith("managed nft"))!.available).toBe(true);
  });
});

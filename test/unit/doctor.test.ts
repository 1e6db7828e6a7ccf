import { describe, expect, it } from "vitest";
import { capabilityReport, effectiveCapabilities } from "../../src/doctor";

// CapEff lines as /proc/<pid>/status shows them.
const ROOT = "Name:\tnode\nCapEff:\t000001ffffffffff\n";
const NONE = "Name:\tnode\nCapEff:\t0000000000000000\n";
const NET_ADMIN_ONLY = "CapEff:\t0000000000001000\n";

describe("capability report", () => {
  it("reads the effective set", () => {
    expect([...effectiveCapabilities(ROOT)].sort()).toEqual(["CAP_BPF", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_PERFMON"]);
    expect(effectiveCapabilities(NONE).size).toBe(0);
    expect([...effectiveCapabilities(NET_ADMIN_ONLY)]).toEqual(["CAP_NET_ADMIN"]);
  });

  it("names the missing capability and how to grant it", () => {
    const report = capabilityReport({ statusText: NET_ADMIN_ONLY, native: { available: true } });
    const tproxy = report.find((r) => r.feature.startsWith("TPROXY"))!;
    expect(tproxy.available).toBe(true);
    const preserve = report.find((r) => r.feature.startsWith("source-preserving"))!;
    expect(preserve).toMatchObject({ available: false });
    expect(preserve.detail).toMatch(/missing CAP_NET_RAW/);
    expect(preserve.detail).toMatch(/AmbientCapabilities=/);
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

import { existsSync, readFileSync } from "node:fs";
import { nativeAvailability } from "./native";

/** Linux capabilities this package's privileged features need, by bit number. */
export const CAPABILITIES = {
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_PERFMON: 38,
  CAP_BPF: 39,
} as const;
export type CapabilityName = keyof typeof CAPABILITIES;

/** One privileged feature and whether this process can use it here. */
export interface FeatureReport {
  readonly feature: string;
  readonly available: boolean;
  /** Why not, in words that say what to do; or what it relies on when available. */
  readonly detail: string;
}

/** The effective capability set of this process, from /proc/self/status. */
export function effectiveCapabilities(statusText?: string): Set<CapabilityName> {
  const text = statusText ?? readProcStatus();
  const line = /^CapEff:\s*([0-9a-f]+)$/im.exec(text);
  const bits = line ? BigInt(`0x${line[1]}`) : 0n;
  const have = new Set<CapabilityName>();
  for (const [name, bit] of Object.entries(CAPABILITIES) as Array<[CapabilityName, number]>) {
    if ((bits >> BigInt(bit)) & 1n) have.add(name);
  }
  return have;
}

function readProcStatus(): string {
  try {
    return readFileSync("/proc/self/status", "utf8");
  } catch {
    return "";
  }
}

function need(have: Set<CapabilityName>, caps: readonly CapabilityName[]): string[] {
  return caps.filter((c) => !have.has(c));
}

/** Reports which privileged capture and forwarding features this process can use on this host. */
export function capabilityReport(
  options: { statusText?: string; btfPath?: string; native?: { available: boolean; reason?: string } } = {},
): FeatureReport[] {
  const have = effectiveCapabilities(options.statusText);
  const linux = process.platform === "linux";
  const btf = existsSync(options.btfPath ?? "/sys/kernel/btf/vmlinux");
  const native = options.native ?? nativeAvailability();
  const nativeMissing = native.available ? null : `native addon not loaded: ${"reason" in native ? native.reason : "unknown"}`;
  // `caps` must all be held; of `oneOf`, any one will do (the kernel accepts either
  // CAP_NET_ADMIN or CAP_NET_RAW for IP_TRANSPARENT and SO_MARK).
  const feature = (name: string, caps: CapabilityName[], extra: string | null, uses: string, needsNative = true, oneOf: CapabilityName[] = []): FeatureReport => {
    if (!linux) return { feature: name, available: false, detail: "needs Linux" };
    if (needsNative && nativeMissing !== null) return { feature: name, available: false, detail: nativeMissing };
    const lacking = need(have, caps);
    if (oneOf.length > 0 && !oneOf.some((c) => have.has(c))) lacking.push(oneOf.join(" or "));
    if (lacking.length > 0) {
      return { feature: name, available: false, detail: `missing ${lacking.join(" + ")} (grant it with AmbientCapabilities=${[...caps, ...oneOf.slice(0, 1)].join(" ")})` };
    }
    if (extra !== null) return { feature: name, available: false, detail: extra };
    return { feature: name, available: true, detail: uses };
  };
  return [
    feature("REDIRECT capture with SO_ORIGINAL_DST", [], null, "no privilege needed to read the original destination"),
    feature("TPROXY capture (IP_TRANSPARENT)", [], null, "CAP_NET_ADMIN or CAP_NET_RAW", true, ["CAP_NET_ADMIN", "CAP_NET_RAW"]),
    feature("managed nft rules and policy routes", ["CAP_NET_ADMIN"], null, "CAP_NET_ADMIN", false),
    feature("source-preserving forward (transparent bind, SO_MARK)", [], null, "CAP_NET_ADMIN or CAP_NET_RAW", true, ["CAP_NET_ADMIN", "CAP_NET_RAW"]),
    feature(
      "eBPF flow source",
      ["CAP_BPF", "CAP_PERFMON"],
      btf ? null : "kernel has no BTF (/sys/kernel/btf/vmlinux missing)",
      "CAP_BPF + CAP_PERFMON, kernel BTF",
      false,
    ),
    feature("sock_diag flow source (fallback)", [], null, "no privilege needed", false),
  ];
}

/** Formats a report as lines for a start-up log. */
export function formatCapabilityReport(report: readonly FeatureReport[]): string {
  return report.map((r) => `  ${r.available ? "yes" : "no "}  ${r.feature}: ${r.detail}`).join("\n");
}

import { parseCidr, type IpRange } from "../net/cidr";
import { tryParseIp } from "../net/ip";
import { compileRanges } from "../net/cidr";
import { TrafficError } from "../errors";
import type { FlowConnectionEvent } from "../events/types";

/** Which connections a flow source reports. Empty lists mean "all". */
export interface FlowFilterSpec {
  /** Service ports: the remote port of client sockets, the local port of accepted ones. */
  readonly ports?: readonly number[];
  /** Remote address ranges (CIDR or single address). */
  readonly cidrs?: readonly string[];
  readonly side?: "any" | "client" | "server";
  /** cgroup v2 id (decimal) the socket must belong to. */
  readonly cgroupId?: string | null;
}

/** A filter compiled for the kernel (eBPF maps) and for JS (sock_diag, pre-existing sockets). */
export interface FlowFilter {
  readonly kernel: {
    readonly sides: number;
    readonly ports: readonly number[];
    readonly cidrs: ReadonlyArray<{ readonly address: Buffer; readonly prefix: number }>;
    readonly cgroupId?: bigint;
  };
  matches(event: FlowConnectionEvent): boolean;
}

const MAX_ENTRIES = 1024; // the BPF maps' size

function rangeBytes(r: IpRange): Buffer {
  if (r.family === 4) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(r.network >>> 0);
    return b;
  }
  const b = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) b.writeUInt16BE(r.network[i]!, 2 * i);
  return b;
}

/** Validates and compiles a filter; bad values raise a TrafficError. */
export function compileFlowFilter(spec: FlowFilterSpec): FlowFilter {
  const ports = [...new Set(spec.ports ?? [])];
  for (const p of ports) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new TrafficError("ERR_BAD_PORT", `port must be 1-65535, got ${String(p)}`, "flow filter ports");
  }
  const ranges = (spec.cidrs ?? []).map((c) => parseCidr(c.trim()));
  if (ports.length > MAX_ENTRIES || ranges.length > MAX_ENTRIES) {
    throw new TrafficError("ERR_RULE_CONFIG", `at most ${MAX_ENTRIES} ports and ${MAX_ENTRIES} CIDRs`, "flow filter");
  }
  const side = spec.side ?? "any";
  if (side !== "any" && side !== "client" && side !== "server") throw new TrafficError("ERR_RULE_CONFIG", `side must be any, client or server, got ${String(side)}`, "flow filter side");
  let cgroupId: bigint | undefined;
  if (spec.cgroupId !== undefined && spec.cgroupId !== null && spec.cgroupId !== "") {
    if (!/^[0-9]{1,20}$/.test(spec.cgroupId)) throw new TrafficError("ERR_RULE_CONFIG", "cgroup id must be a decimal number", "flow filter cgroupId");
    cgroupId = BigInt(spec.cgroupId);
    if (cgroupId > 0xffff_ffff_ffff_ffffn) throw new TrafficError("ERR_RULE_CONFIG", "cgroup id must fit in 64 bits", "flow filter cgroupId");
  }
  const portSet = new Set(ports);
  const inRanges = compileRanges(ranges);
  const sides = side === "client" ? 1 : side === "server" ? 2 : 0;
  const matches = (e: FlowConnectionEvent): boolean => {
    if (side !== "any" && e.side !== side) return false;
    if (cgroupId !== undefined && e.cgroupId !== cgroupId.toString()) return false;
    if (portSet.size > 0) {
      const service = e.side === "server" ? e.localPort : e.remotePort;
      const other = e.side === "server" ? e.remotePort : e.localPort;
      if (!portSet.has(service) && !(e.side === "unknown" && portSet.has(other))) return false;
    }
    if (ranges.length > 0) {
      const ip = tryParseIp(e.remoteIp);
      if (ip === null || !inRanges(ip)) return false;
    }
    return true;
  };
  return {
    kernel: {
      sides,
      ports,
      cidrs: ranges.map((r) => ({ address: rangeBytes(r), prefix: r.prefix })),
      ...(cgroupId !== undefined ? { cgroupId } : {}),
    },
    matches,
  };
}

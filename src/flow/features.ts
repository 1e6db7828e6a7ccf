import fs from "node:fs";
import { capabilityReport, effectiveCapabilities, type FeatureReport } from "../doctor";
import { loadFlowAddon, type FlowAddon } from "./native";

/** One capture feature of the flow source and whether it works here. */
export type FlowFeatureReport = FeatureReport;

/** Where cgroup v2 is mounted (the root the first-bytes hook would attach to), or null. */
export function cgroupV2Root(mountinfo?: string): string | null {
  let text = mountinfo;
  if (text === undefined) {
    try {
      text = fs.readFileSync("/proc/self/mountinfo", "utf8");
    } catch {
      return null;
    }
  }
  for (const line of text.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(" ")[0];
    if (fstype === "cgroup2") return line.split(" ")[4] ?? null;
  }
  return null;
}

const CAP_SYS_ADMIN = 21;

function hasSysAdmin(): boolean {
  try {
    const line = /^CapEff:\s*([0-9a-f]+)$/im.exec(fs.readFileSync("/proc/self/status", "utf8"));
    return line !== null && ((BigInt(`0x${line[1]}`) >> BigInt(CAP_SYS_ADMIN)) & 1n) === 1n;
  } catch {
    return false;
  }
}

function verdict(value: boolean | string | undefined, what: string): { available: boolean; detail: string } {
  if (value === true) return { available: true, detail: `${what} supported` };
  if (value === false) return { available: false, detail: `${what} not supported by this kernel` };
  if (value === "EPERM" || value === "EACCES") return { available: false, detail: `${what}: not permitted (needs CAP_BPF)` };
  return { available: false, detail: `${what}: probe failed (${value ?? "not probed"})` };
}

/**
 * Probes, feature by feature, what eBPF flow capture can use on this host: the built
 * program, libbpf, kernel BTF, each tracepoint, sk_storage, the ring buffer, privilege,
 * cgroup v2. Never touches tracefs, kprobes or fentry.
 */
export function probeFlowFeatures(addon?: FlowAddon): FlowFeatureReport[] {
  let a: FlowAddon;
  try {
    a = addon ?? loadFlowAddon();
  } catch (err) {
    const why = (err as { reason?: string }).reason ?? String(err);
    return [{ feature: "flow addon", available: false, detail: why }];
  }
  const p = a.probe();
  const caps = effectiveCapabilities();
  const privileged = caps.has("CAP_BPF") && caps.has("CAP_PERFMON");
  const out: FlowFeatureReport[] = [
    { feature: "flow addon", available: true, detail: `loaded (record v${a.recordVersion}, ${a.recordSize} bytes)` },
    { feature: "BPF program built", available: p.skeleton, detail: p.skeleton ? "compiled into the addon" : (p.skeletonReason ?? "not built") },
    { feature: "libbpf", available: p.libbpf, detail: p.libbpf ? "linked" : "not found at build time (apt-get install libbpf-dev pkg-config; npm rebuild)" },
  ];
  if (p.libbpf) {
    out.push({ feature: "kernel BTF", available: p.btf === true, detail: p.btf === true ? "/sys/kernel/btf/vmlinux" : "no /sys/kernel/btf/vmlinux: tp_btf cannot attach" });
    for (const [name, present] of Object.entries(p.tracepoints ?? {})) {
      const role = name === "inet_sock_set_state" ? "lifecycle (required)" : "owner PID of accepted sockets (optional: else taken at close)";
      out.push({ feature: `tp_btf/${name}`, available: present, detail: present ? role : `not in this kernel's BTF: ${role}` });
    }
    // Map probes create a map: without CAP_BPF they fail whatever the kernel supports.
    const mapProbe = (value: boolean | string | undefined, what: string): { available: boolean; detail: string } =>
      value !== true && !privileged ? { available: false, detail: `${what}: cannot be probed without CAP_BPF` } : verdict(value, what);
    out.push({ feature: "sk_storage", ...mapProbe(p.skStorage, "BPF_MAP_TYPE_SK_STORAGE") });
    out.push({ feature: "ring buffer", ...mapProbe(p.ringbuf, "BPF_MAP_TYPE_RINGBUF") });
  }
  out.push({ feature: "privilege for eBPF", available: privileged, detail: privileged ? "CAP_BPF + CAP_PERFMON" : "missing CAP_BPF and/or CAP_PERFMON: the flow source uses sock_diag" });
  const cg = cgroupV2Root();
  out.push({ feature: "cgroup v2", available: cg !== null, detail: cg ?? "not mounted (cgroup ids and first-bytes capture need it)" });
  // The kernel lets cgroup programs attach with CAP_NET_ADMIN or CAP_SYS_ADMIN.
  const net = caps.has("CAP_NET_ADMIN") || hasSysAdmin();
  out.push({
    feature: "first payload bytes (cgroup_skb)",
    available: cg !== null && net && privileged && p.skeleton,
    detail: cg === null ? "needs cgroup v2" : !net ? "needs CAP_NET_ADMIN (or CAP_SYS_ADMIN) to attach to the cgroup v2 root" : `cgroup_skb ingress/egress on ${cg}`,
  });
  out.push({
    feature: "UDP sockets (cgroup sock_create/sock_release, cgroup_skb)",
    available: cg !== null && net && privileged && p.skeleton,
    detail: cg === null ? "needs cgroup v2 (else UDP comes from sock_diag, without counters)" : !net ? "needs CAP_NET_ADMIN (or CAP_SYS_ADMIN) to attach to the cgroup v2 root; else UDP comes from sock_diag, without counters" : `cgroup sock and cgroup_skb programs on ${cg}`,
  });
  out.push({ feature: "sock_diag destroy multicast", available: true, detail: "no privilege needed; own network namespace only" });
  return out;
}

/**
 * Loads and attaches the BPF program once (with a filter that matches nothing) and
 * releases it: the only proof that eBPF capture works here.
 */
export function trialLoad(addon?: FlowAddon): FlowFeatureReport {
  const feature = "eBPF capture loads and attaches";
  let a: FlowAddon;
  try {
    a = addon ?? loadFlowAddon();
  } catch (err) {
    return { feature, available: false, detail: (err as { reason?: string }).reason ?? String(err) };
  }
  if (!a.ebpfBuilt) return { feature, available: false, detail: a.probe().skeletonReason ?? "the BPF program was not built" };
  const capture = new a.BpfCapture();
  try {
    const cgroupPath = cgroupV2Root();
    const started = capture.start(
      // With cgroup v2 every program is tried, the UDP ones too (protocols 3: TCP and UDP).
      { events: 0, sides: 0, ports: [], cidrs: [], ringBytes: 4096, ownerFromIo: true, ...(cgroupPath !== null ? { firstBytes: 1, cgroupPath, protocols: 3 } : {}) },
      () => undefined,
    );
    const attached = Object.entries(started.programs).map(([name, on]) => `${name} ${on ? "yes" : "no"}`);
    const degraded = started.degraded === "" ? "" : ` (${started.degraded.replace(/; $/, "")})`;
    return { feature, available: true, detail: `attached: ${attached.join(", ")}${degraded}` };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    const why = e.code === "EPERM" || e.code === "EACCES" ? "not permitted: needs CAP_BPF + CAP_PERFMON (or root)" : (e.message ?? String(err));
    return { feature, available: false, detail: why };
  } finally {
    capture.stop();
  }
}

/** The package's capability report plus the flow capture probes and a trial load, for `doctor`. */
export function doctorReport(): { readonly capabilities: FeatureReport[]; readonly flow: FlowFeatureReport[] } {
  return { capabilities: capabilityReport(), flow: [...probeFlowFeatures(), trialLoad()] };
}

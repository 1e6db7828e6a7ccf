import fs from "node:fs";
import path from "node:path";
import { addonFile, prebuildTarget } from "../native/addon-dir";

/** What `probe()` found: which parts of eBPF capture this kernel and process can use. */
export interface NativeProbe {
  readonly skeleton: boolean;
  readonly skeletonReason?: string;
  readonly libbpf: boolean;
  readonly btf?: boolean;
  readonly tracepoints?: Readonly<Record<string, boolean>>;
  /** true / false, or the errno name when probing failed (EPERM without CAP_BPF). */
  readonly ringbuf?: boolean | string;
  readonly skStorage?: boolean | string;
}

/** Kernel-side filters and options of an eBPF capture. */
export interface NativeBpfOptions {
  readonly events: number;
  readonly sides: number;
  readonly cgroupId?: bigint;
  readonly ports: readonly number[];
  readonly cidrs: ReadonlyArray<{ readonly address: Buffer; readonly prefix: number }>;
  readonly ringBytes: number;
  readonly ownerFromIo: boolean;
  /** Transports: 1 TCP (the default), 2 UDP (needs `cgroupPath`), 3 both. */
  readonly protocols?: number;
  /** First payload bytes per direction (0 = off, at most 512); needs `cgroupPath`. */
  readonly firstBytes?: number;
  /** The cgroup v2 root the first-bytes programs attach to. */
  readonly cgroupPath?: string;
}

/** What an eBPF capture attached. */
export interface NativeBpfStart {
  readonly programs: Readonly<Record<string, boolean>>;
  readonly ringBytes: number;
  readonly recordSize: number;
  /** Optional parts that did not load or attach, and why ("" when none). */
  readonly degraded: string;
}

export interface NativeBpfStats {
  readonly kernelLost: number;
  /** State changes no program saw (the kernel skipped a program already running on that CPU). */
  readonly kernelSkipped: number;
  /** Close records emitted at socket destruction because the change to CLOSE was not seen. */
  readonly closeAtDestroy: number;
  readonly jsLost: number;
  readonly delivered: number;
  readonly batches: number;
}

/** The eBPF capture: a loaded program, its links and a ring-buffer reader thread. */
export interface NativeBpfCapture {
  start(options: NativeBpfOptions, onBatch: (batch: Buffer) => void): NativeBpfStart;
  stop(): void;
  stats(): NativeBpfStats;
}

/** The sock_diag "socket destroyed" multicast reader (TCP, UDP or both: 1, 2, 3; default TCP). */
export interface NativeDestroyListener {
  start(onBatch: (batch: Buffer) => void, protocols?: number): void;
  stop(): void;
  stats(): { readonly kernelOverruns: number; readonly jsLost: number; readonly delivered: number };
}

/** The flow addon's surface (native/flow/flow_addon.cc). */
export interface FlowAddon {
  readonly abiVersion: number;
  readonly recordVersion: number;
  readonly recordSize: number;
  readonly bytesRecordSize: number;
  /** Offsets of struct flow_record's fields the decoder reads, by C field name. */
  readonly recordLayout: Record<string, number>;
  /** Offsets of struct flow_bytes_record's fields. */
  readonly bytesRecordLayout: Record<string, number>;
  /** Whether the BPF program was compiled into the addon (clang, bpftool, libbpf at build). */
  readonly ebpfBuilt: boolean;
  probe(): NativeProbe;
  clocks(): { readonly boottimeNs: bigint; readonly realtimeNs: bigint };
  /** Raw netlink replies of an inet_diag dump of TCP (6, the default; tcp_info included) or UDP (17) sockets. */
  diagDump(family: 2 | 10, states: number, protocol?: 6 | 17): Buffer;
  readonly BpfCapture: new () => NativeBpfCapture;
  readonly DiagDestroyListener: new () => NativeDestroyListener;
}

const ADDON_NAME = "flow.node";

/** Thrown when the addon is not there or does not load; `reason` says what to do. */
export class FlowAddonUnavailable extends Error {
  readonly code = "ERR_FLOW_ADDON";
  constructor(readonly reason: string) {
    super(reason);
    this.name = "FlowAddonUnavailable";
  }
}

function packageRoot(): string | null {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, "package.json")) && fs.existsSync(path.join(dir, "binding.gyp"))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

function diagnose(root: string | null, err: unknown): string {
  if (process.platform !== "linux") return `the flow addon is Linux-only (this is ${process.platform})`;
  if (root === null) return "the flow addon's build files (binding.gyp) are missing from the package: reinstall it";
  const { file, prebuilt } = addonFile(root, ADDON_NAME);
  if (!fs.existsSync(file)) {
    return `the flow addon was not built (${file} is missing) and no prebuilt addon fits ${prebuildTarget()}: run \`npm rebuild\` in ${root} (needs g++, make, python3; eBPF also clang, llvm, libbpf-dev, bpftool)`;
  }
  const why = err instanceof Error ? err.message.split("\n")[0] : String(err);
  if (prebuilt) return `the prebuilt flow addon ${file} failed to load (${why}): compile it for this system with \`npm rebuild --build-from-source\` in ${root}`;
  if (/libbpf\.so/.test(why ?? "")) return `the flow addon needs the libbpf shared library: apt-get install libbpf1 (${why})`;
  if (/NODE_MODULE_VERSION|undefined symbol/.test(why ?? "")) return `the flow addon was built for another Node.js: run \`npm rebuild\` in ${root} (${why})`;
  return `the flow addon ${file} failed to load: ${why}`;
}

let cached: FlowAddon | FlowAddonUnavailable | null = null;

/** The loaded flow addon; throws FlowAddonUnavailable saying what is missing. Loads once. */
export function loadFlowAddon(): FlowAddon {
  if (cached === null) {
    const root = packageRoot();
    try {
      if (process.platform !== "linux" || root === null) throw new Error("not loadable here");
      cached = require(addonFile(root, ADDON_NAME).file) as FlowAddon;
    } catch (err) {
      cached = new FlowAddonUnavailable(diagnose(root, err));
    }
  }
  if (cached instanceof FlowAddonUnavailable) throw cached;
  return cached;
}

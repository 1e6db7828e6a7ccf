import { compileFlowFilter, type FlowFilter, type FlowFilterSpec } from "./filter";
import { loadFlowAddon, type FlowAddon, type NativeBpfCapture, type NativeDestroyListener } from "./native";
import { hostname } from "node:os";
import { BYTES_RECORD_SIZE, clockMap, decodeRecords, OpenBeforeClose, RECORD_SIZE, RECORD_VERSION, recordLayoutMismatch, tcpStateName, type ClockMap, type EventStamp } from "./record";
import {
  AF_INET,
  AF_INET6,
  SocketOwnerScanner,
  ownNetns,
  parseDiagMessages,
  PROTO_NUMBER,
  STATE_CONNECTED_MASK,
  STATE_LISTEN_MASK,
  STATE_UDP_MASK,
  type DiagSocket,
  type ProcOwner,
} from "./sockdiag";
import { eventIdSource, makeEvent } from "../events/make";
import { EVENT_SCHEMA_VERSION, type FlowCapture, type FlowCloseEvent, type FlowEvent, type FlowOpenEvent, type FlowSide, type LostEvent } from "../events/types";
import { cgroupV2Root, probeFlowFeatures, type FlowFeatureReport } from "./features";

/** Which capture to use. `auto`: eBPF when it loads here, sock_diag otherwise. */
export type FlowMode = "auto" | "ebpf" | "sockdiag";

/** Which transports a flow source reports: TCP connections, UDP sockets, or both. */
export type FlowProtocols = "tcp" | "udp" | "both";

/** The addon's bit mask for a transport selection (FLOW_PROTO_* in native/flow/flow.h). */
export function protocolBits(protocols: FlowProtocols): number {
  return protocols === "both" ? 3 : protocols === "udp" ? 2 : 1;
}

/** Options of a flow source. */
export interface FlowSourceOptions extends FlowFilterSpec {
  readonly mode?: FlowMode;
  /** Transports to report; default `tcp`. UDP with eBPF needs cgroup v2 and CAP_NET_ADMIN. */
  readonly protocols?: FlowProtocols;
  readonly open?: boolean;
  readonly close?: boolean;
  readonly state?: boolean;
  /** eBPF ring buffer size in bytes (power of two, ≥ 4096); default 4 MiB. */
  readonly ringBytes?: number;
  /** sock_diag dump interval for live connections (ms); default 1000. */
  readonly dumpIntervalMs?: number;
  /** Report connections that existed at start (from a sock_diag dump, marked partial); default true. */
  readonly reportExisting?: boolean;
  /** How often lost counts are checked (ms); default 1000. */
  readonly lostCheckMs?: number;
  /** First payload bytes to capture per direction (eBPF only; 0 = off, at most 512). */
  readonly firstBytes?: number;
  /** Host name stamped on every event; default the machine's host name. */
  readonly host?: string;
  /** Errors thrown while handling a batch (by `onEvents`, say); default: a process warning. */
  readonly onError?: (err: Error) => void;
}

/** What a started source runs, and why not eBPF when it fell back. */
export interface FlowSourceStatus {
  readonly mode: FlowCapture;
  /** Why eBPF is not used (mode sockdiag); null when it is. */
  readonly ebpfUnavailable: string | null;
  /** Optional eBPF parts that are not active, and why (null when all requested parts run). */
  readonly degraded: string | null;
  readonly features: readonly FlowFeatureReport[];
}

/** Counters of a running source. */
export interface FlowSourceStats {
  readonly delivered: number;
  readonly kernelLost: number;
  /** State changes the kernel ran no capture program for (closes among them are recovered at socket destruction). */
  readonly kernelSkipped: number;
  readonly jsLost: number;
  readonly netlinkOverruns: number;
  /** Close records the kernel emitted at socket destruction because the change to CLOSE was skipped. */
  readonly closeAtDestroy: number;
}

type Listener = (events: FlowEvent[]) => void;

const DEFAULT_RING = 4 << 20;

function validRing(bytes: number): boolean {
  return Number.isInteger(bytes) && bytes >= 4096 && bytes <= 1 << 30 && (bytes & (bytes - 1)) === 0;
}

/**
 * One flow source: emits batches of flow events (open, close, state, lost) to `onEvents`.
 * `start()` picks the capture; `stop()` releases every link, map, fd, thread and timer.
 */
export class FlowSource {
  private readonly filter: FlowFilter;
  private readonly opts: FlowSourceOptions;
  private addon: FlowAddon | null = null;
  private bpf: NativeBpfCapture | null = null;
  private destroy: NativeDestroyListener | null = null;
  private timers: NodeJS.Timeout[] = [];
  private clock: ClockMap | null = null;
  private running: FlowSourceStatus | null = null;
  private delivered = 0;
  private lostSeen: Record<keyof typeof LOST_REASONS, number> = { kernel: 0, skipped: 0, js: 0, netlink: 0 };
  // sock_diag state: live sockets by cookie, listening ports, owners by inode.
  // An open event waits (`announce`) until the owner scan for its socket has finished
  // (`scanned`); `wanted`: the filter took the socket, so its open is or was due.
  private live = new Map<string, { event: FlowOpenEvent; seen: number; announce: boolean; wanted: boolean; scanned: boolean }>();
  private owners = new SocketOwnerScanner();
  private listeningPorts = new Set<number>();
  private dumpRound = 0;
  // eBPF mode: sockets found by the start-up dump, to complete their partial eBPF events.
  private preexisting = new Map<string, FlowOpenEvent>();
  // First payload bytes by cookie until the connection's close event takes them.
  private firstBytes = new Map<string, { sent?: string; received?: string }>();
  private degraded: string | null = null;
  // The last count read before the capture stopped.
  private closeAtDestroy = 0;
  private order = new OpenBeforeClose();
  private orderTimer: NodeJS.Timeout | null = null;
  private readonly stamp: EventStamp;
  private readonly protocols: FlowProtocols;
  // What the capture reports: the asked-for transports, less UDP when eBPF could not attach it.
  private reported: FlowProtocols = "tcp";

  constructor(
    options: FlowSourceOptions,
    private readonly onEvents: Listener,
  ) {
    this.opts = options;
    this.filter = compileFlowFilter(options);
    const host = options.host ?? hostname();
    if (typeof host !== "string" || host === "") throw new Error("host must be a non-empty string");
    this.stamp = { host, nextId: eventIdSource() };
    const fb = options.firstBytes ?? 0;
    if (!Number.isInteger(fb) || fb < 0 || fb > 512) throw new Error(`firstBytes must be 0-512, got ${fb}`);
    const protocols = options.protocols ?? "tcp";
    if (protocols !== "tcp" && protocols !== "udp" && protocols !== "both") throw new Error(`protocols must be tcp, udp or both, got ${String(protocols)}`);
    this.protocols = protocols;
    this.reported = protocols;
    const ring = options.ringBytes ?? DEFAULT_RING;
    if (!validRing(ring)) throw new Error(`ringBytes must be a power of two between 4096 and 1 GiB, got ${ring}`);
  }

  /** Starts capturing; throws when the chosen mode cannot run (the error says why). */
  start(): FlowSourceStatus {
    if (this.running !== null) return this.running;
    const mode = this.opts.mode ?? "auto";
    this.addon = loadFlowAddon();
    const features = probeFlowFeatures(this.addon);
    const c = this.addon.clocks();
    this.clock = clockMap(c.boottimeNs, c.realtimeNs);
    let ebpfUnavailable: string | null = null;
    if (mode !== "sockdiag") {
      try {
        this.startBpf();
      } catch (err) {
        ebpfUnavailable = explainBpfFailure(err, this.protocols);
        if (mode === "ebpf") {
          const e = new Error(`eBPF capture unavailable: ${ebpfUnavailable}`) as Error & { code: string };
          e.code = (err as { code?: string }).code ?? "ENOTSUP";
          throw e;
        }
      }
    } else {
      ebpfUnavailable = "mode sockdiag chosen";
    }
    try {
      if (this.bpf !== null) {
        if (this.opts.reportExisting !== false) this.dump(true);
      } else {
        this.startSockDiag();
      }
    } catch (err) {
      this.stop();
      throw err;
    }
    const lostEvery = this.opts.lostCheckMs ?? 1000;
    const t = setInterval(() => this.checkLost(), lostEvery);
    t.unref();
    this.timers.push(t);
    this.running = { mode: this.bpf !== null ? "ebpf" : "sockdiag", ebpfUnavailable, degraded: this.degraded, features };
    return this.running;
  }

  /** Stops capturing and frees everything; safe to call twice. */
  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.orderTimer !== null) clearTimeout(this.orderTimer);
    this.orderTimer = null;
    if (this.bpf !== null) {
      this.checkLost();
      this.closeAtDestroy = this.bpf.stats().closeAtDestroy;
      this.bpf.stop();
      this.bpf = null;
      // Closes still waiting for their open go out rather than vanish.
      this.emit(this.order.expire(Date.now(), true));
    }
    if (this.destroy !== null) {
      this.destroy.stop();
      this.destroy = null;
    }
    this.owners.stop();
    this.owners = new SocketOwnerScanner();
    this.live.clear();
    this.preexisting.clear();
    this.firstBytes.clear();
    this.degraded = null;
    this.reported = this.protocols;
    this.running = null;
  }

  /** The running mode and features, or null when stopped. */
  status(): FlowSourceStatus | null {
    return this.running;
  }

  stats(): FlowSourceStats {
    return {
      delivered: this.delivered,
      kernelLost: this.lostSeen.kernel,
      kernelSkipped: this.lostSeen.skipped,
      jsLost: this.lostSeen.js,
      netlinkOverruns: this.lostSeen.netlink,
      closeAtDestroy: this.bpf?.stats().closeAtDestroy ?? this.closeAtDestroy,
    };
  }

  /** Runs a batch handler; an error (a throwing listener) is reported, never fatal. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (this.opts.onError !== undefined) this.opts.onError(err as Error);
      else process.emitWarning(`flow source: ${(err as Error).message}`);
    }
  }

  private emit(events: FlowEvent[]): void {
    if (events.length === 0) return;
    this.delivered += events.length;
    this.onEvents(events);
  }

  private startBpf(): void {
    const addon = this.addon!;
    if (!addon.ebpfBuilt) {
      const e = new Error(addon.probe().skeletonReason ?? "the BPF program was not built") as Error & { code: string };
      e.code = "ENOTSUP";
      throw e;
    }
    const moved = recordLayoutMismatch(addon);
    if (addon.recordSize !== RECORD_SIZE || addon.bytesRecordSize !== BYTES_RECORD_SIZE || addon.recordVersion !== RECORD_VERSION || moved.length > 0) {
      throw new Error(`addon record layout ${addon.recordVersion}/${addon.recordSize}${moved.length > 0 ? ` (${moved.join(", ")})` : ""} does not match this package: npm rebuild`);
    }
    const events = (this.opts.open !== false ? 1 : 0) | (this.opts.close !== false ? 2 : 0) | (this.opts.state === true ? 4 : 0);
    const capture = new addon.BpfCapture();
    const k = this.filter.kernel;
    const firstBytes = this.opts.firstBytes ?? 0;
    // The cgroup v2 root carries the first-bytes programs and the sock_ops close hook.
    const cgroupPath = cgroupV2Root();
    const started = capture.start(
      {
        events,
        sides: k.sides,
        ports: k.ports,
        cidrs: k.cidrs,
        ...(k.cgroupId !== undefined ? { cgroupId: k.cgroupId } : {}),
        ringBytes: this.opts.ringBytes ?? DEFAULT_RING,
        ownerFromIo: true,
        protocols: protocolBits(this.protocols),
        ...(cgroupPath !== null ? { firstBytes, cgroupPath } : {}),
      },
      (batch) => this.guard(() => this.onBpfBatch(batch)),
    );
    // The start-up dump must not report sockets of a transport the kernel side does not follow.
    if (this.protocols === "both" && started.programs["sock_create"] !== true) this.reported = "tcp";
    const missing: string[] = [];
    if (started.degraded !== "") missing.push(started.degraded.replace(/; $/, ""));
    if (firstBytes > 0 && cgroupPath === null && this.protocols !== "udp") missing.push("first bytes off: cgroup v2 is not mounted");
    this.degraded = missing.length > 0 ? missing.join("; ") : null;
    this.bpf = capture;
  }

  private onBpfBatch(batch: Buffer): void {
    const { events: decoded, openPending } = decodeRecords(batch, this.clock!, this.stamp, (b) => {
      // Bounded: entries of connections whose close was filtered or lost must not pile up.
      if (this.firstBytes.size >= 65536) this.firstBytes.delete(this.firstBytes.keys().next().value as string);
      const entry = this.firstBytes.get(b.flowId) ?? {};
      entry[b.direction] = b.data.toString("base64");
      this.firstBytes.set(b.flowId, entry);
    });
    if (this.firstBytes.size > 0) {
      for (let i = 0; i < decoded.length; i++) {
        const e = decoded[i]!;
        if (e.type !== "flow-close") continue;
        const fb = this.firstBytes.get(e.flowId);
        if (fb === undefined) continue;
        this.firstBytes.delete(e.flowId);
        // Fresh from the decoder and not yet shared: completed in place (no copy per event).
        (e as { firstBytes?: typeof fb }).firstBytes = fb;
      }
    }
    if (this.preexisting.size > 0) {
      for (let i = 0; i < decoded.length; i++) {
        const e = decoded[i]!;
        if (!e.partial) continue;
        const old = this.preexisting.get(e.flowId);
        if (old === undefined) continue;
        // The kernel saw this socket only after it was created: side and owner come from the
        // dump. The event is fresh from the decoder and not yet shared: completed in place.
        const w = e as { -readonly [K in keyof typeof e]: (typeof e)[K] };
        if (w.side === "unknown") w.side = old.side;
        if (w.pid === null && old.pid !== null) {
          w.pid = old.pid;
          w.comm = old.comm;
          w.uid = old.uid;
          w.ownerFrom = old.ownerFrom;
        }
        if (e.type === "flow-close") {
          this.preexisting.delete(e.flowId);
          // Closed before its owner scan finished: the dump's open goes out first.
          const pending = this.live.get(e.flowId);
          if (pending?.announce === true) {
            pending.announce = false;
            this.emit([pending.event]);
          }
        }
      }
    }
    // Without open events there is no open to wait for.
    const events = this.opts.open === false ? decoded : this.order.order(decoded, openPending);
    if (this.order.size > 0 && this.orderTimer === null) {
      this.orderTimer = setTimeout(() => {
        this.orderTimer = null;
        this.emit(this.order.expire());
      }, 250);
      this.orderTimer.unref();
    }
    this.emit(events);
  }

  private startSockDiag(): void {
    const addon = this.addon!;
    const listener = new addon.DiagDestroyListener();
    listener.start((batch) => this.guard(() => this.onDestroyBatch(batch)), protocolBits(this.protocols));
    this.destroy = listener;
    this.dump(this.opts.reportExisting !== false);
    const every = this.opts.dumpIntervalMs ?? 1000;
    const t = setInterval(() => {
      try {
        this.dump(true);
      } catch {
        // A failed periodic dump is retried at the next tick; close events still arrive.
      }
    }, every);
    t.unref();
    this.timers.push(t);
  }

  /** One inet_diag dump: listening ports for the side, new live connections (and UDP sockets) as open events. */
  private dump(report: boolean): void {
    const addon = this.addon!;
    const round = ++this.dumpRound;
    const listening = new Set<number>();
    const sockets: DiagSocket[] = [];
    for (const af of [AF_INET, AF_INET6] as const) {
      if (this.reported !== "udp") {
        for (const s of parseDiagMessages(addon.diagDump(af, STATE_LISTEN_MASK))) listening.add(s.localPort);
        sockets.push(...parseDiagMessages(addon.diagDump(af, STATE_CONNECTED_MASK)));
      }
      if (this.reported !== "tcp") sockets.push(...parseDiagMessages(addon.diagDump(af, STATE_UDP_MASK, PROTO_NUMBER.udp), "udp"));
    }
    this.listeningPorts = listening;
    const netns = ownNetns();
    const now = new Date().toISOString();
    const fresh: DiagSocket[] = [];
    for (const s of sockets) {
      const known = this.live.get(s.cookie);
      if (known !== undefined) {
        known.seen = round;
        // A UDP socket is bound before it connects: a dump in between saw it without its peer.
        if (s.protocol === "udp" && !known.wanted && known.event.remotePort !== s.remotePort) this.udpConnected(known, s, report);
        continue;
      }
      const event = this.openFromDiag(s, null, netns, now, this.bpf !== null || round === 1);
      // With eBPF running, only pre-existing sockets come from here (the kernel reports the rest).
      const announce = report && this.filter.matches(event) && this.opts.open !== false;
      this.live.set(s.cookie, { event, seen: round, announce, wanted: announce, scanned: false });
      // eBPF events of this socket are completed from here even before its owner is known.
      if (this.bpf !== null) this.preexisting.set(s.cookie, event);
      fresh.push(s);
    }
    // Sockets gone without a destroy message (missed or in another namespace): forget them.
    for (const [cookie, entry] of this.live) if (round - entry.seen > 2) this.live.delete(cookie);
    if (fresh.length === 0) return;
    // The owner scan reads /proc off the event loop; the open events go out when it is done.
    const scanner = this.owners;
    void scanner.owners(fresh.map((s) => s.inode)).then(
      (owners) => this.guard(() => this.ownersFound(scanner, fresh, owners)),
      () => this.guard(() => this.ownersFound(scanner, fresh, new Map())),
    );
  }

  /** A UDP socket first dumped before it connected, now with its peer: the filter decides again. */
  private udpConnected(entry: { event: FlowOpenEvent; announce: boolean; wanted: boolean; scanned: boolean }, s: DiagSocket, report: boolean): void {
    entry.event = { ...entry.event, side: this.sideOf(s), family: s.family, localIp: s.localIp, localPort: s.localPort, remoteIp: s.remoteIp, remotePort: s.remotePort };
    entry.wanted = report && this.filter.matches(entry.event) && this.opts.open !== false;
    if (!entry.wanted) return;
    // Its owner scan is done: the open goes out now; else with the scan's results.
    if (entry.scanned) this.emit([entry.event]);
    else entry.announce = true;
  }

  private ownersFound(scanner: SocketOwnerScanner, fresh: DiagSocket[], owners: Map<number, ProcOwner>): void {
    if (scanner !== this.owners) return;
    const opened: FlowEvent[] = [];
    for (const s of fresh) {
      const entry = this.live.get(s.cookie);
      const owner = owners.get(s.inode);
      if (entry === undefined) continue;
      if (owner !== undefined) entry.event = { ...entry.event, pid: owner.pid, comm: owner.command, ownerFrom: "proc" };
      if (entry.announce) opened.push(entry.event);
      entry.announce = false;
      entry.scanned = true;
      if (this.bpf !== null) {
        if (this.preexisting.has(s.cookie)) this.preexisting.set(s.cookie, entry.event);
        this.live.delete(s.cookie);
      }
    }
    this.emit(opened);
  }

  private sideOf(s: DiagSocket): FlowSide {
    // A UDP socket has no listener: a connected one talks to its one peer, the others to any.
    if (s.protocol === "udp") return s.state === 1 ? "client" : "unknown";
    return this.listeningPorts.has(s.localPort) ? "server" : "client";
  }

  private openFromDiag(s: DiagSocket, owner: ProcOwner | null, netns: number | null, time: string, partial: boolean): FlowOpenEvent {
    return {
      schemaVersion: EVENT_SCHEMA_VERSION,
      type: "flow-open",
      id: this.stamp.nextId(),
      time,
      host: this.stamp.host,
      flowId: s.cookie,
      protocol: s.protocol,
      source: "sockdiag",
      side: this.sideOf(s),
      family: s.family,
      localIp: s.localIp,
      localPort: s.localPort,
      remoteIp: s.remoteIp,
      remotePort: s.remotePort,
      pid: owner?.pid ?? null,
      comm: owner?.command ?? null,
      uid: s.uid,
      ownerFrom: owner !== null ? "proc" : null,
      cgroupId: s.cgroupId,
      netns,
      partial,
    };
  }

  private onDestroyBatch(batch: Buffer): void {
    const now = new Date().toISOString();
    const netns = ownNetns();
    const out: FlowEvent[] = [];
    for (const s of parseDiagMessages(batch)) {
      const udp = s.protocol === "udp";
      // TCP listeners and sockets that never connected (no peer port) are not connections.
      if (!udp && (s.state === 10 || s.remotePort === 0)) continue;
      const known = this.live.get(s.cookie);
      // UDP: the dumps list bound sockets only; one never bound (nor seen) carried nothing.
      if (udp && known === undefined && s.localPort === 0) continue;
      this.live.delete(s.cookie);
      // Closed before its owner scan finished: the open goes out first, without an owner.
      if (known?.announce === true) out.push(known.event);
      const base = known?.event ?? this.openFromDiag(s, null, netns, now, true);
      const info = s.info;
      const close: FlowCloseEvent = {
        schemaVersion: EVENT_SCHEMA_VERSION,
        type: "flow-close",
        id: this.stamp.nextId(),
        time: now,
        host: this.stamp.host,
        flowId: s.cookie,
        protocol: s.protocol,
        source: "sockdiag",
        side: base.side,
        family: s.family,
        // Addresses from the destroy message (UDP's keep its bound port, checked on 6.18): the
        // dump may have seen the socket before bind completed.
        localIp: s.localIp,
        localPort: s.localPort,
        remoteIp: s.remoteIp,
        remotePort: s.remotePort,
        pid: base.pid,
        comm: base.comm,
        uid: base.uid,
        ownerFrom: base.ownerFrom,
        cgroupId: s.cgroupId ?? base.cgroupId,
        netns: base.netns,
        partial: known === undefined ? true : base.partial,
        end: "unknown",
        error: null,
        lastState: tcpStateName(s.state),
        established: udp ? s.state === 1 : info !== null ? info.bytesReceived > 0 || info.segsIn > 1 : false,
        // tcp_info counts retransmitted bytes in bytes_sent and may count the peer's FIN.
        bytesSent: info !== null ? info.bytesSent - info.bytesRetrans : 0,
        bytesReceived: info?.bytesReceived ?? 0,
        bytesExact: false,
        bytesRetransmitted: info?.bytesRetrans ?? 0,
        retransmits: info?.totalRetrans ?? 0,
        srttUs: info !== null && info.rttUs > 0 ? info.rttUs : null,
        rttMinUs: info !== null && info.minRttUs > 0 && info.minRttUs !== 0xffffffff ? info.minRttUs : null,
        segmentsIn: info?.segsIn ?? 0,
        segmentsOut: info?.segsOut ?? 0,
        durationMs: known !== undefined && !known.event.partial ? Date.now() - Date.parse(known.event.time) : null,
        handshakeMs: null,
      };
      if (this.opts.close !== false && this.filter.matches(close)) out.push(close);
    }
    this.emit(out);
  }

  private checkLost(): void {
    const out: LostEvent[] = [];
    const time = new Date();
    const push = (counter: keyof typeof LOST_REASONS, capture: FlowCapture, total: number): void => {
      const count = total - this.lostSeen[counter];
      if (count > 0) {
        this.lostSeen[counter] = total;
        const source = counter === "skipped" ? "kernel" : counter;
        out.push(makeEvent<LostEvent>({ type: "lost", source, capture, count, total, reason: LOST_REASONS[counter] }, { host: this.stamp.host, id: this.stamp.nextId(), time }));
      }
    };
    if (this.bpf !== null) {
      const s = this.bpf.stats();
      push("kernel", "ebpf", s.kernelLost);
      push("skipped", "ebpf", s.kernelSkipped);
      push("js", "ebpf", s.jsLost);
    }
    if (this.destroy !== null) {
      const s = this.destroy.stats();
      push("netlink", "sockdiag", s.kernelOverruns);
      push("js", "sockdiag", s.jsLost);
    }
    if (out.length > 0) this.onEvents(out);
  }
}

const LOST_REASONS = {
  kernel: "the eBPF ring buffer was full: raise the ring size or filter in the kernel",
  skipped: "the kernel skipped the capture program for TCP state changes (it was already running on that CPU): closes are still reported when the socket is destroyed, but an open or state event may be missing",
  js: "JavaScript did not keep up with the capture's batches",
  netlink: "sock_diag multicast overrun (each overrun counts 1; the real count is unknown)",
} as const;

/** A one-line reason for a failed eBPF start, naming the missing privilege when that is it. */
export function explainBpfFailure(err: unknown, protocols: FlowProtocols = "tcp"): string {
  const e = err as { code?: string; message?: string; reason?: string };
  // UDP alone is nothing but cgroup programs, which the kernel loads only with CAP_NET_ADMIN.
  if ((e.code === "EPERM" || e.code === "EACCES") && protocols === "udp") return "not permitted: UDP capture needs CAP_NET_ADMIN besides CAP_BPF + CAP_PERFMON (or root)";
  if (e.code === "EPERM" || e.code === "EACCES") return "not permitted: needs CAP_BPF + CAP_PERFMON (or root)";
  return e.reason ?? e.message ?? String(err);
}


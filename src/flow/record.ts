import { constants } from "node:os";
import { formatIPv4, formatIPv6 } from "../net/ip";
import { EVENT_SCHEMA_VERSION, type FlowCloseEvent, type FlowConnectionEvent, type FlowEnd, type FlowOwnerFrom, type FlowSide, type TcpStateName } from "../events/types";

/** What a producer stamps on every event: the host that observed it and a unique event id. */
export interface EventStamp {
  readonly host: string;
  nextId(): string;
}

// Layout of struct flow_record (native/flow/flow.h); the addon reports its size and version.
export const RECORD_VERSION = 2;
export const RECORD_SIZE = 168;
/** struct flow_bytes_record: the first payload bytes of one direction. */
export const BYTES_RECORD_SIZE = 544;
/**
 * Offsets of the fields the decoder reads (struct flow_record), as native/flow/flow.h pins
 * them with static asserts; the addon exports its own (`recordLayout`) and the source
 * refuses to start when they differ (recordLayoutMismatch).
 */
export const RECORD_LAYOUT = {
  version: 0,
  size: 2,
  kind: 4,
  side: 5,
  family: 6,
  flags: 7,
  cookie: 8,
  ts_ns: 16,
  start_ns: 24,
  established_ns: 32,
  cgroup_id: 40,
  netns: 48,
  pid: 52,
  uid: 56,
  owner_from: 60,
  old_state: 61,
  new_state: 62,
  protocol: 63,
  comm: 64,
  saddr: 80,
  daddr: 96,
  sport: 112,
  dport: 114,
  error: 116,
  bytes_sent: 120,
  bytes_retrans: 128,
  bytes_received: 136,
  total_retrans: 144,
  srtt_us: 148,
  rtt_min_us: 152,
  segs_in: 156,
  segs_out: 160,
} as const;
/** Offsets of struct flow_bytes_record's fields (the addon's `bytesRecordLayout`). */
export const BYTES_RECORD_LAYOUT = {
  version: 0,
  size: 2,
  kind: 4,
  direction: 5,
  length: 6,
  cookie: 16,
  ts_ns: 24,
  data: 32,
} as const;

/** The fields whose offsets differ between the decoder and the addon (`a:8≠16`), none when they agree. */
export function recordLayoutMismatch(addon: { readonly recordLayout?: Record<string, number>; readonly bytesRecordLayout?: Record<string, number> }): string[] {
  const out: string[] = [];
  const compare = (prefix: string, ours: Record<string, number>, theirs: Record<string, number> | undefined): void => {
    const names = new Set([...Object.keys(ours), ...Object.keys(theirs ?? {})]);
    for (const name of names) {
      if (ours[name] !== theirs?.[name]) out.push(`${prefix}${name}:${ours[name] ?? "-"}≠${theirs?.[name] ?? "-"}`);
    }
  };
  compare("", RECORD_LAYOUT, addon.recordLayout);
  compare("bytes.", BYTES_RECORD_LAYOUT, addon.bytesRecordLayout);
  return out;
}
const R = RECORD_LAYOUT;
const B = BYTES_RECORD_LAYOUT;
const KIND_BYTES = 4;
const KIND_OPEN = 1;
const KIND_CLOSE = 2;
const KIND_STATE = 3;
const F_PARTIAL = 0x01;
const F_FIN_IN = 0x02;
const F_ESTABLISHED = 0x04;
const F_OPEN_PENDING = 0x08;
const RTT_NONE = 0xffffffff;
const IPPROTO_UDP = 17;

/** Kernel TCP states (include/net/tcp_states.h), by number. */
export const TCP_STATES: readonly TcpStateName[] = [
  "UNKNOWN",
  "ESTABLISHED",
  "SYN_SENT",
  "SYN_RECV",
  "FIN_WAIT1",
  "FIN_WAIT2",
  "TIME_WAIT",
  "CLOSE",
  "CLOSE_WAIT",
  "LAST_ACK",
  "LISTEN",
  "CLOSING",
];

/** The state name for a kernel state number. */
export function tcpStateName(n: number): TcpStateName {
  return TCP_STATES[n] ?? "UNKNOWN";
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** errno number → name (ECONNRESET …), or `E<n>` when unknown. */
export function errnoName(n: number): string {
  return ERRNO_NAMES.get(n) ?? `E${n}`;
}

/** How a connection ended, from the socket error and the state before CLOSE. */
export function classifyEnd(error: number, lastState: TcpStateName): FlowEnd {
  const e = constants.errno;
  if (error === e.ECONNREFUSED) return "refused";
  if (error === e.ECONNRESET || error === e.EPIPE) return "reset";
  if (error === e.ETIMEDOUT || error === e.EHOSTUNREACH || error === e.ENETUNREACH) return error === e.ETIMEDOUT ? "timeout" : "error";
  if (error !== 0) return "error";
  // No error, straight to CLOSE from a state with data still flowing: this side sent RST.
  if (lastState === "ESTABLISHED" || lastState === "CLOSE_WAIT" || lastState === "SYN_RECV" || lastState === "SYN_SENT") return "abort";
  return "normal";
}

/** Converts kernel CLOCK_BOOTTIME nanoseconds to wall-clock time. */
export interface ClockMap {
  toIso(boottimeNs: bigint | number): string;
}

/** A clock map from one (boottime, realtime) pair read together. */
export function clockMap(boottimeNs: bigint, realtimeNs: bigint): ClockMap {
  // The offset is split into whole milliseconds and a nanosecond rest, so a boot-time
  // stamp read as a Number (exact below 2^53 ns, 104 days of uptime... and far beyond
  // for the rest) lands on the same millisecond as the exact BigInt sum.
  const offset = realtimeNs - boottimeNs;
  const offsetMs = Number(offset / 1_000_000n);
  const restNs = Number(offset % 1_000_000n);
  // Events come in bursts within the same millisecond: format each millisecond once.
  let lastMs = -1;
  let lastText = "";
  return {
    toIso: (ns) => {
      const msec = typeof ns === "bigint" ? Number((ns + offset) / 1_000_000n) : offsetMs + Math.floor((ns + restNs) / 1_000_000);
      if (msec !== lastMs) {
        lastMs = msec;
        lastText = new Date(msec).toISOString();
      }
      return lastText;
    },
  };
}

const SIDES: readonly FlowSide[] = ["unknown", "client", "server"];
const OWNERS: ReadonlyArray<FlowOwnerFrom | null> = [null, "connect", "io", "close", "create"];

// The last IPv4 address and command formatted: a busy host repeats both from record to
// record (loopback, one service), and formatting is most of a record's decode time.
let lastV4 = -1;
let lastV4Text = "";

/** Text of an address stored as 4 (IPv4) or 16 (IPv6) network-order bytes at `offset`. */
export function addressText(buf: Buffer, offset: number, family: 4 | 6): string {
  if (family === 4) {
    const v = buf.readUInt32BE(offset);
    if (v !== lastV4) {
      lastV4 = v;
      lastV4Text = formatIPv4(v);
    }
    return lastV4Text;
  }
  const groups = new Uint16Array(8);
  for (let i = 0; i < 8; i++) groups[i] = buf.readUInt16BE(offset + 2 * i);
  return formatIPv6(groups);
}

/** addressText for the decoder: the IPv4 case read through the batch's view. */
function v4OrV6Text(buf: Buffer, view: DataView, offset: number, family: 4 | 6): string {
  if (family === 6) return addressText(buf, offset, 6);
  const v = view.getUint32(offset, false);
  if (v !== lastV4) {
    lastV4 = v;
    lastV4Text = formatIPv4(v);
  }
  return lastV4Text;
}

const lastComm = new Int32Array(4);
let lastCommText: string | null = null;

function commAt(buf: Buffer, view: DataView, offset: number): string {
  const a = view.getInt32(offset, true);
  const b = view.getInt32(offset + 4, true);
  const c = view.getInt32(offset + 8, true);
  const d = view.getInt32(offset + 12, true);
  if (lastCommText !== null && a === lastComm[0] && b === lastComm[1] && c === lastComm[2] && d === lastComm[3]) return lastCommText;
  const raw = buf.subarray(offset, offset + 16);
  const end = raw.indexOf(0);
  lastComm[0] = a;
  lastComm[1] = b;
  lastComm[2] = c;
  lastComm[3] = d;
  lastCommText = raw.toString("utf8", 0, end < 0 ? 16 : end);
  return lastCommText;
}

/**
 * An unsigned 64-bit field as a Number, without a BigInt per read: exact below 2^53, which
 * nanosecond stamps, byte counts and cgroup ids stay under; -1 above it (see u64Text).
 */
function u64(v: DataView, o: number): number {
  const hi = v.getUint32(o + 4, true);
  return hi < 0x200000 ? hi * 0x100000000 + v.getUint32(o, true) : -1;
}

/** A 64-bit field as decimal text (socket cookies and cgroup ids), exact at any size. */
function u64Text(v: DataView, o: number): string {
  const n = u64(v, o);
  return n >= 0 ? String(n) : v.getBigUint64(o, true).toString();
}

function ms(fromNs: number, toNs: number): number {
  return (toNs - fromNs) / 1e6;
}

/** First payload bytes of one direction of a connection, by socket cookie. */
export interface FirstBytes {
  /** Socket cookie, decimal (the flow id). */
  readonly flowId: string;
  readonly direction: "sent" | "received";
  readonly data: Buffer;
}

/**
 * Decodes a batch of records from the ring buffer. Records of another version or size are
 * skipped (counted in `skipped`), never misread. First-bytes records go to `onBytes`.
 */
export function decodeRecords(
  batch: Buffer,
  clock: ClockMap,
  stamp: EventStamp,
  onBytes?: (bytes: FirstBytes) => void,
): { events: FlowConnectionEvent[]; skipped: number; openPending: Set<string> } {
  const events: FlowConnectionEvent[] = [];
  const openPending = new Set<string>();
  let skipped = 0;
  let off = 0;
  // Typed reads through one view: Buffer's read methods check their arguments on every call.
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  while (off + 4 <= batch.length) {
    const version = view.getUint16(off, true);
    const size = view.getUint16(off + 2, true);
    if (size < 8 || off + size > batch.length) {
      skipped++;
      break;
    }
    if (version === RECORD_VERSION && size === BYTES_RECORD_SIZE && batch[off + B.kind] === KIND_BYTES) {
      const length = Math.min(view.getUint16(off + B.length, true), BYTES_RECORD_SIZE - B.data);
      onBytes?.({
        flowId: u64Text(view, off + B.cookie),
        direction: batch[off + B.direction] === 1 ? "sent" : "received",
        data: Buffer.from(batch.subarray(off + B.data, off + B.data + length)),
      });
      off += size;
      continue;
    }
    if (version !== RECORD_VERSION || size !== RECORD_SIZE) {
      skipped++;
      off += size;
      continue;
    }
    const event = decodeRecord(batch, view, off, clock, stamp);
    if (event === null) skipped++;
    else {
      events.push(event);
      if (event.type === "flow-close" && (batch[off + R.flags]! & F_OPEN_PENDING) !== 0) openPending.add(event.flowId);
    }
    off += size;
  }
  return { events, skipped, openPending };
}

/**
 * Keeps each connection's open before its close. The kernel flags a close whose open was
 * being written by another CPU at that moment (the first I/O racing the close): such a
 * close is held until its open arrives, or for `holdMs` when the open never comes.
 */
export class OpenBeforeClose {
  private readonly held = new Map<string, { readonly event: FlowConnectionEvent; readonly since: number }>();

  constructor(private readonly holdMs = 200) {}

  /** Events of one batch in delivery order; `pending` are ids of flagged closes. */
  order(events: readonly FlowConnectionEvent[], pending: ReadonlySet<string>, now = Date.now()): FlowConnectionEvent[] {
    if (pending.size === 0 && this.held.size === 0) return events as FlowConnectionEvent[];
    const out: FlowConnectionEvent[] = [];
    const opened = new Set<string>();
    for (const e of events) {
      if (e.type === "flow-open") {
        out.push(e);
        opened.add(e.flowId);
        const h = this.held.get(e.flowId);
        if (h !== undefined) {
          this.held.delete(e.flowId);
          out.push(h.event);
        }
      } else if (e.type === "flow-close" && pending.has(e.flowId) && !opened.has(e.flowId)) {
        this.held.set(e.flowId, { event: e, since: now });
      } else {
        out.push(e);
      }
    }
    return out;
  }

  /** Held closes whose open did not come within `holdMs` (filtered or lost): release them. */
  expire(now = Date.now(), all = false): FlowConnectionEvent[] {
    const out: FlowConnectionEvent[] = [];
    for (const [id, h] of this.held) {
      if (all || now - h.since >= this.holdMs) {
        out.push(h.event);
        this.held.delete(id);
      }
    }
    return out;
  }

  get size(): number {
    return this.held.size;
  }
}

// Events are built as object literals with every field in one place: object spread of
// a large object costs microseconds per event in V8, which a busy host cannot afford.
function decodeRecord(b: Buffer, v: DataView, o: number, clock: ClockMap, stamp: EventStamp): FlowConnectionEvent | null {
  const kind = b[o + R.kind]!;
  const flags = b[o + R.flags]!;
  const family = b[o + R.family] === 6 ? 6 : 4;
  // Boot-time nanoseconds stay below 2^53 for 104 days of uptime; past that, exact BigInts.
  const exactNs = u64(v, o + R.ts_ns) < 0 || u64(v, o + R.start_ns) < 0 || u64(v, o + R.established_ns) < 0;
  const ts = exactNs ? 0 : u64(v, o + R.ts_ns);
  const rawPid = v.getUint32(o + R.pid, true);
  const owner = OWNERS[b[o + R.owner_from]!] ?? null;
  const known = owner !== null && rawPid !== 0;
  const netnsRaw = v.getUint32(o + R.netns, true);
  const flowId = u64Text(v, o + R.cookie);
  const time = exactNs ? clock.toIso(v.getBigUint64(o + R.ts_ns, true)) : clock.toIso(ts);
  const side = SIDES[b[o + R.side]!] ?? "unknown";
  const localIp = v4OrV6Text(b, v, o + R.saddr, family);
  const localPort = v.getUint16(o + R.sport, true);
  const remoteIp = v4OrV6Text(b, v, o + R.daddr, family);
  const remotePort = v.getUint16(o + R.dport, true);
  const pid = known ? rawPid : null;
  const comm = known ? commAt(b, v, o + R.comm) : null;
  const uid = known ? v.getUint32(o + R.uid, true) : null;
  const ownerFrom = known ? owner : null;
  const cgroupId = v.getUint32(o + R.cgroup_id, true) === 0 && v.getUint32(o + R.cgroup_id + 4, true) === 0 ? null : u64Text(v, o + R.cgroup_id);
  const netns = netnsRaw === 0 ? null : netnsRaw;
  const partial = (flags & F_PARTIAL) !== 0;
  const oldState = tcpStateName(b[o + R.old_state]!);
  const schemaVersion = EVENT_SCHEMA_VERSION;
  const source = "ebpf" as const;
  const protocol = b[o + R.protocol] === IPPROTO_UDP ? ("udp" as const) : ("tcp" as const);
  const host = stamp.host;
  if (kind === KIND_OPEN) {
    const id = stamp.nextId();
    return { schemaVersion, type: "flow-open", id, time, host, flowId, protocol, source, side, family, localIp, localPort, remoteIp, remotePort, pid, comm, uid, ownerFrom, cgroupId, netns, partial };
  }
  if (kind === KIND_STATE) {
    const id = stamp.nextId();
    const newState = tcpStateName(b[o + R.new_state]!);
    return { schemaVersion, type: "flow-state", id, time, host, flowId, protocol, source, side, family, localIp, localPort, remoteIp, remotePort, pid, comm, uid, ownerFrom, cgroupId, netns, partial, oldState, newState };
  }
  if (kind !== KIND_CLOSE) return null;
  if (protocol === "udp") return decodeUdpClose(b, v, o, stamp, { schemaVersion, time, host, flowId, protocol, source, side, family, localIp, localPort, remoteIp, remotePort, pid, comm, uid, ownerFrom, cgroupId, netns, partial });
  const error = v.getInt32(o + R.error, true);
  // Byte counters are exact as Numbers up to 8 PiB; the BigInt reads cover the rest.
  const sent = u64(v, o + R.bytes_sent) >= 0 ? u64(v, o + R.bytes_sent) : Number(v.getBigUint64(o + R.bytes_sent, true));
  const retrans = u64(v, o + R.bytes_retrans) >= 0 ? u64(v, o + R.bytes_retrans) : Number(v.getBigUint64(o + R.bytes_retrans, true));
  const received = u64(v, o + R.bytes_received) >= 0 ? u64(v, o + R.bytes_received) : Number(v.getBigUint64(o + R.bytes_received, true));
  const srtt = v.getUint32(o + R.srtt_us, true);
  const rttMin = v.getUint32(o + R.rtt_min_us, true);
  let durationMs: number | null;
  let handshakeMs: number | null;
  if (exactNs) {
    const tsBig = v.getBigUint64(o + R.ts_ns, true);
    const startBig = v.getBigUint64(o + R.start_ns, true);
    const estBig = v.getBigUint64(o + R.established_ns, true);
    durationMs = startBig === 0n ? null : Number(tsBig - startBig) / 1e6;
    handshakeMs = side === "client" && startBig !== 0n && estBig !== 0n ? Number(estBig - startBig) / 1e6 : null;
  } else {
    const start = u64(v, o + R.start_ns);
    const established = u64(v, o + R.established_ns);
    durationMs = start === 0 ? null : ms(start, ts);
    handshakeMs = side === "client" && start !== 0 && established !== 0 ? ms(start, established) : null;
  }
  const close: FlowCloseEvent = {
    schemaVersion,
    type: "flow-close",
    id: stamp.nextId(),
    time,
    host,
    flowId,
    protocol,
    source,
    side,
    family,
    localIp,
    localPort,
    remoteIp,
    remotePort,
    pid,
    comm,
    uid,
    ownerFrom,
    cgroupId,
    netns,
    partial,
    end: classifyEnd(error, oldState),
    error: error === 0 ? null : errnoName(error),
    lastState: oldState,
    established: (flags & F_ESTABLISHED) !== 0,
    // bytes_sent counts retransmitted bytes again; bytes_received counts the peer's FIN.
    bytesSent: sent - retrans,
    bytesReceived: received - ((flags & F_FIN_IN) !== 0 && received > 0 ? 1 : 0),
    bytesExact: true,
    bytesRetransmitted: retrans,
    retransmits: v.getUint32(o + R.total_retrans, true),
    srttUs: srtt === 0 ? null : srtt,
    rttMinUs: rttMin === RTT_NONE || rttMin === 0 ? null : rttMin,
    segmentsIn: v.getUint32(o + R.segs_in, true),
    segmentsOut: v.getUint32(o + R.segs_out, true),
    durationMs,
    handshakeMs,
  };
  return close;
}

/** The fields every flow event of one record shares, as decodeRecord read them. */
type UdpCloseBase = Omit<FlowCloseEvent, "type" | "id" | "end" | "error" | "lastState" | "established" | "bytesSent" | "bytesReceived" | "bytesExact" | "bytesRetransmitted" | "retransmits" | "srttUs" | "rttMinUs" | "segmentsIn" | "segmentsOut" | "durationMs" | "handshakeMs">;

/**
 * A UDP socket's close: payload bytes and datagrams each way as the cgroup_skb programs
 * counted them; the state before CLOSE is ESTABLISHED while the socket was connected.
 */
function decodeUdpClose(b: Buffer, v: DataView, o: number, stamp: EventStamp, base: UdpCloseBase): FlowCloseEvent {
  const error = v.getInt32(o + R.error, true);
  const start = u64(v, o + R.start_ns);
  const ts = u64(v, o + R.ts_ns);
  const datagramsSent = v.getUint32(o + R.segs_out, true);
  const datagramsReceived = v.getUint32(o + R.segs_in, true);
  const sent = u64(v, o + R.bytes_sent);
  const received = u64(v, o + R.bytes_received);
  return {
    ...base,
    type: "flow-close",
    id: stamp.nextId(),
    // A connected UDP socket learns of an unreachable peer (ICMP) as a socket error.
    end: classifyEnd(error, "CLOSE"),
    error: error === 0 ? null : errnoName(error),
    lastState: tcpStateName(b[o + R.old_state]!),
    established: (b[o + R.flags]! & F_ESTABLISHED) !== 0,
    bytesSent: sent >= 0 ? sent : Number(v.getBigUint64(o + R.bytes_sent, true)),
    bytesReceived: received >= 0 ? received : Number(v.getBigUint64(o + R.bytes_received, true)),
    bytesExact: true,
    bytesRetransmitted: 0,
    retransmits: 0,
    srttUs: null,
    rttMinUs: null,
    segmentsIn: datagramsReceived,
    segmentsOut: datagramsSent,
    datagramsSent,
    datagramsReceived,
    durationMs: start > 0 && ts >= start ? ms(start, ts) : null,
    handshakeMs: null,
  };
}

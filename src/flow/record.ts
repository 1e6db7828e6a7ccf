import { constants } from "node:os";
import { formatIPv4, formatIPv6 } from "../net/ip";
import { EVENT_SCHEMA_VERSION, type FlowCloseEvent, type FlowConnectionEvent, type FlowEnd, type FlowOwnerFrom, type FlowSide, type TcpStateName } from "../events/types";

/** What a producer stamps on every event: the host that observed it and a unique event id. */
export interface EventStamp {
  readonly host: string;
  nextId(): string;
}

// Layout of struct flow_record (native/flow/flow.h); the addon reports its size and version.
export const RECORD_VERSION = 1;
export const RECORD_SIZE = 168;
/** struct flow_bytes_record: the first payload bytes of one direction. */
export const BYTES_RECORD_SIZE = 544;
const KIND_BYTES = 4;
const KIND_OPEN = 1;
const KIND_CLOSE = 2;
const KIND_STATE = 3;
const F_PARTIAL = 0x01;
const F_FIN_IN = 0x02;
const F_ESTABLISHED = 0x04;
const F_OPEN_PENDING = 0x08;
const RTT_NONE = 0xffffffff;

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
  toIso(boottimeNs: bigint): string;
}

/** A clock map from one (boottime, realtime) pair read together. */
export function clockMap(boottimeNs: bigint, realtimeNs: bigint): ClockMap {
  const offset = realtimeNs - boottimeNs;
  // Events come in bursts within the same millisecond: format each millisecond once.
  let lastMs = -1;
  let lastText = "";
  return {
    toIso: (ns) => {
      const msec = Number((ns + offset) / 1_000_000n);
      if (msec !== lastMs) {
        lastMs = msec;
        lastText = new Date(msec).toISOString();
      }
      return lastText;
    },
  };
}

const SIDES: readonly FlowSide[] = ["unknown", "client", "server"];
const OWNERS: ReadonlyArray<FlowOwnerFrom | null> = [null, "connect", "io", "close"];

/** Text of an address stored as 4 (IPv4) or 16 (IPv6) network-order bytes at `offset`. */
export function addressText(buf: Buffer, offset: number, family: 4 | 6): string {
  if (family === 4) return formatIPv4(buf.readUInt32BE(offset));
  const groups = new Uint16Array(8);
  for (let i = 0; i < 8; i++) groups[i] = buf.readUInt16BE(offset + 2 * i);
  return formatIPv6(groups);
}

function commAt(buf: Buffer, offset: number): string {
  const raw = buf.subarray(offset, offset + 16);
  const end = raw.indexOf(0);
  return raw.toString("utf8", 0, end < 0 ? 16 : end);
}

function ms(fromNs: bigint, toNs: bigint): number {
  return Number(toNs - fromNs) / 1e6;
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
  while (off + 4 <= batch.length) {
    const version = batch.readUInt16LE(off);
    const size = batch.readUInt16LE(off + 2);
    if (size < 8 || off + size > batch.length) {
      skipped++;
      break;
    }
    if (version === RECORD_VERSION && size === BYTES_RECORD_SIZE && batch[off + 4] === KIND_BYTES) {
      const length = Math.min(batch.readUInt16LE(off + 6), BYTES_RECORD_SIZE - 32);
      onBytes?.({
        flowId: batch.readBigUInt64LE(off + 16).toString(),
        direction: batch[off + 5] === 1 ? "sent" : "received",
        data: Buffer.from(batch.subarray(off + 32, off + 32 + length)),
      });
      off += size;
      continue;
    }
    if (version !== RECORD_VERSION || size !== RECORD_SIZE) {
      skipped++;
      off += size;
      continue;
    }
    const event = decodeRecord(batch, off, clock, stamp);
    if (event === null) skipped++;
    else {
      events.push(event);
      if (event.type === "flow-close" && (batch[off + 7]! & F_OPEN_PENDING) !== 0) openPending.add(event.flowId);
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
function decodeRecord(b: Buffer, o: number, clock: ClockMap, stamp: EventStamp): FlowConnectionEvent | null {
  const kind = b[o + 4]!;
  const flags = b[o + 7]!;
  const family = b[o + 6] === 6 ? 6 : 4;
  const ts = b.readBigUInt64LE(o + 16);
  const cgroup = b.readBigUInt64LE(o + 40);
  const rawPid = b.readUInt32LE(o + 52);
  const owner = OWNERS[b[o + 60]!] ?? null;
  const known = owner !== null && rawPid !== 0;
  const netnsRaw = b.readUInt32LE(o + 48);
  const flowId = b.readBigUInt64LE(o + 8).toString();
  const time = clock.toIso(ts);
  const side = SIDES[b[o + 5]!] ?? "unknown";
  const localIp = addressText(b, o + 80, family);
  const localPort = b.readUInt16LE(o + 112);
  const remoteIp = addressText(b, o + 96, family);
  const remotePort = b.readUInt16LE(o + 114);
  const pid = known ? rawPid : null;
  const comm = known ? commAt(b, o + 64) : null;
  const uid = known ? b.readUInt32LE(o + 56) : null;
  const ownerFrom = known ? owner : null;
  const cgroupId = cgroup === 0n ? null : cgroup.toString();
  const netns = netnsRaw === 0 ? null : netnsRaw;
  const partial = (flags & F_PARTIAL) !== 0;
  const oldState = tcpStateName(b[o + 61]!);
  const schemaVersion = EVENT_SCHEMA_VERSION;
  const source = "ebpf" as const;
  const protocol = "tcp" as const;
  const host = stamp.host;
  if (kind === KIND_OPEN) {
    const id = stamp.nextId();
    return { schemaVersion, type: "flow-open", id, time, host, flowId, protocol, source, side, family, localIp, localPort, remoteIp, remotePort, pid, comm, uid, ownerFrom, cgroupId, netns, partial };
  }
  if (kind === KIND_STATE) {
    const id = stamp.nextId();
    const newState = tcpStateName(b[o + 62]!);
    return { schemaVersion, type: "flow-state", id, time, host, flowId, protocol, source, side, family, localIp, localPort, remoteIp, remotePort, pid, comm, uid, ownerFrom, cgroupId, netns, partial, oldState, newState };
  }
  if (kind !== KIND_CLOSE) return null;
  const start = b.readBigUInt64LE(o + 24);
  const established = b.readBigUInt64LE(o + 32);
  const error = b.readInt32LE(o + 116);
  const sent = b.readBigUInt64LE(o + 120);
  const retrans = b.readBigUInt64LE(o + 128);
  const received = b.readBigUInt64LE(o + 136);
  const srtt = b.readUInt32LE(o + 148);
  const rttMin = b.readUInt32LE(o + 152);
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
    bytesSent: Number(sent - retrans),
    bytesReceived: Number(received) - ((flags & F_FIN_IN) !== 0 && received > 0n ? 1 : 0),
    bytesExact: true,
    bytesRetransmitted: Number(retrans),
    retransmits: b.readUInt32LE(o + 144),
    srttUs: srtt === 0 ? null : srtt,
    rttMinUs: rttMin === RTT_NONE || rttMin === 0 ? null : rttMin,
    segmentsIn: b.readUInt32LE(o + 156),
    segmentsOut: b.readUInt32LE(o + 160),
    durationMs: start === 0n ? null : ms(start, ts),
    handshakeMs: side === "client" && start !== 0n && established !== 0n ? ms(start, established) : null,
  };
  return close;
}

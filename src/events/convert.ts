// Turns the messages this package's nodes pass along into the declared events, so that
// `mqtt events` publishes contracts (schemas/*.json) rather than whatever a message holds.
// Pure: no I/O, no clock unless the caller gives none.

import type { ConnectionInfo } from "../connection";
import { isTrafficSession } from "../connection";
import { isTrafficEvent, makeEvent } from "./make";
import type {
  ClassificationEvent,
  ConnectionAcceptedEvent,
  FlowConnectionEvent,
  ForwardEnd,
  ForwardIdentity,
  ForwardSummaryEvent,
  OriginalDst,
  TrafficEvent,
} from "./types";
import type { ClassificationFields, ClassifiedAs } from "../classify/types";
import type { ForwardSummary } from "../forward/forward";

/**
 * What a forward node sends as `msg.payload` when a forwarded (or rejected) connection
 * is over: the forwarding core's summary. `toEvent` turns it into a `forward-summary` event.
 */
export type { ForwardSummary } from "../forward/forward";

/** The parts of a Node-RED message `toEvent` reads. */
export interface EventSourceMessage {
  readonly _session?: unknown;
  readonly payload?: unknown;
  readonly classification?: unknown;
}

/** Options of `toEvent`. */
export interface ToEventOptions {
  /** Host name stamped on converted events (the agent's). */
  readonly host: string;
  /** Event time; default now (a connection message uses its accept time). */
  readonly time?: Date;
  /** Event id; default a fresh unique one. */
  readonly id?: string;
}

const FORWARD_IDENTITIES: readonly ForwardIdentity[] = ["none", "proxy-v1", "proxy-v2", "transparent"];
const FORWARD_ENDS: readonly ForwardEnd[] = [
  "closed",
  "rejected",
  "client-reset",
  "upstream-reset",
  "idle-timeout",
  "connect-failed",
  "loop",
  "no-target",
  "stopped",
  "error",
];
const LISTENER_MODES: readonly string[] = ["redirect", "tproxy", "plain"];

type Fields = Record<string, unknown>;

function isObject(value: unknown): value is Fields {
  return value !== null && typeof value === "object" && !Array.isArray(value) && !Buffer.isBuffer(value);
}

function isPort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 65535;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

/** True when `value` has the shape of a forward node's summary (see ForwardSummary). */
export function isForwardSummary(value: unknown): value is ForwardSummary {
  if (!isObject(value)) return false;
  const v = value;
  return (
    typeof v["id"] === "string" &&
    v["id"] !== "" &&
    (v["action"] === "forward" || v["action"] === "reject") &&
    FORWARD_IDENTITIES.includes(v["identity"] as ForwardIdentity) &&
    FORWARD_ENDS.includes(v["end"] as ForwardEnd) &&
    isCount(v["bytesToUpstream"]) &&
    isCount(v["bytesToClient"]) &&
    isCount(v["durationMs"]) &&
    isObject(v["client"]) &&
    typeof v["client"]["address"] === "string"
  );
}

/** True when `value` has the shape of a `transparent in` connection message payload. */
export function isConnectionInfo(value: unknown): value is ConnectionInfo {
  if (!isObject(value)) return false;
  const v = value;
  return (
    typeof v["id"] === "string" &&
    LISTENER_MODES.includes(v["mode"] as string) &&
    (v["family"] === 4 || v["family"] === 6) &&
    typeof v["localAddress"] === "string" &&
    isPort(v["localPort"]) &&
    typeof v["remoteAddress"] === "string" &&
    isPort(v["remotePort"]) &&
    typeof v["acceptedAt"] === "number"
  );
}

/** `msg.classification` as the classify node sets it. */
interface ClassificationLike {
  readonly protocol: ClassifiedAs;
  readonly confidence: number;
  readonly fields: ClassificationFields;
  readonly bytes: number;
  readonly rule: string | null;
  readonly output: number;
}

function isClassification(value: unknown): value is ClassificationLike {
  if (!isObject(value)) return false;
  const v = value;
  return (
    typeof v["protocol"] === "string" &&
    typeof v["confidence"] === "number" &&
    isObject(v["fields"]) &&
    isCount(v["bytes"]) &&
    (typeof v["rule"] === "string" || v["rule"] === null) &&
    Number.isInteger(v["output"]) &&
    (v["output"] as number) >= 0
  );
}

function originalDstOf(info: ConnectionInfo): OriginalDst | undefined {
  const d = info.originalDst;
  if (d === undefined || d.method === "none" || !isPort(d.port)) return undefined;
  return { ip: d.address, port: d.port, method: d.method };
}

function lengthOf(bytes: unknown): number | undefined {
  if (bytes instanceof Uint8Array) return bytes.byteLength;
  // A message that went through JSON (a file, a link to another runtime) carries {type:"Buffer",data}.
  if (isObject(bytes) && bytes["type"] === "Buffer" && Array.isArray(bytes["data"])) return bytes["data"].length;
  return undefined;
}

/** A `transparent in` connection message → `connection-accepted`. */
export function connectionAcceptedEvent(info: ConnectionInfo, options: ToEventOptions): ConnectionAcceptedEvent {
  const body: Omit<ConnectionAcceptedEvent, "schemaVersion" | "id" | "time" | "host"> & { -readonly [K in "originalDst" | "originalDstError" | "clientIp" | "clientPort" | "proxyVersion" | "firstBytesLength"]?: ConnectionAcceptedEvent[K] } = {
    type: "connection-accepted",
    connectionId: info.id,
    ...(info.protocol === "udp" ? { protocol: "udp" as const } : {}),
    mode: info.mode,
    side: "server",
    family: info.family,
    localIp: info.localAddress,
    localPort: info.localPort,
    remoteIp: info.remoteAddress,
    remotePort: info.remotePort,
  };
  const dst = originalDstOf(info);
  if (dst !== undefined) body.originalDst = dst;
  if (info.originalDstError !== undefined) body.originalDstError = { code: String(info.originalDstError.code), message: String(info.originalDstError.message) };
  const proxy = info.proxy;
  if (proxy !== undefined) {
    body.proxyVersion = proxy.version;
    if (proxy.command === "proxy" && proxy.sourceAddress !== undefined) {
      body.clientIp = proxy.sourceAddress;
      if (isPort(proxy.sourcePort)) body.clientPort = proxy.sourcePort;
    }
  }
  const length = lengthOf(info.firstBytes);
  if (length !== undefined) body.firstBytesLength = length;
  return makeEvent<ConnectionAcceptedEvent>(body, { host: options.host, ...(options.id !== undefined ? { id: options.id } : {}), time: options.time ?? new Date(info.acceptedAt) });
}

/** The socket a classification was about: a connection message or a flow event. */
function classifiedSocket(msg: EventSourceMessage): Partial<ClassificationEvent> {
  const payload = msg.payload;
  if (isConnectionInfo(payload)) {
    const dst = originalDstOf(payload);
    return {
      connectionId: isTrafficSession(msg._session) ? msg._session.id : payload.id,
      ...(payload.protocol === "udp" ? { transport: "udp" as const } : {}),
      side: "server",
      family: payload.family,
      localIp: payload.localAddress,
      localPort: payload.localPort,
      remoteIp: payload.remoteAddress,
      remotePort: payload.remotePort,
      ...(dst !== undefined ? { originalDst: dst } : {}),
    };
  }
  if (isTrafficEvent(payload) && (payload.type === "flow-open" || payload.type === "flow-close" || payload.type === "flow-state")) {
    const f = payload as FlowConnectionEvent;
    return { flowId: f.flowId, side: f.side, family: f.family, localIp: f.localIp, localPort: f.localPort, remoteIp: f.remoteIp, remotePort: f.remotePort };
  }
  return isTrafficSession(msg._session) ? { connectionId: msg._session.id } : {};
}

/** A message with `msg.classification` (the classify node's output) → `classification`. */
export function classificationEvent(msg: EventSourceMessage & { classification: ClassificationLike }, options: ToEventOptions): ClassificationEvent {
  const c = msg.classification;
  return makeEvent<ClassificationEvent>(
    {
      type: "classification",
      ...classifiedSocket(msg),
      protocol: c.protocol,
      confidence: Math.min(1, Math.max(0, c.confidence)),
      fields: { ...c.fields },
      rule: c.rule,
      output: c.output,
      bytesInspected: c.bytes,
    },
    { host: options.host, ...(options.id !== undefined ? { id: options.id } : {}), ...(options.time !== undefined ? { time: options.time } : {}) },
  );
}

/** A forward node's summary → `forward-summary`, with the protocol `classify` recognised when it did. */
export function forwardSummaryEvent(summary: ForwardSummary, options: ToEventOptions, protocol?: ClassifiedAs): ForwardSummaryEvent {
  const family = summary.client.address.includes(":") ? 6 : 4;
  return makeEvent<ForwardSummaryEvent>(
    {
      type: "forward-summary",
      connectionId: summary.id,
      action: summary.action,
      ...(summary.protocol === "udp"
        ? { transport: "udp" as const, datagramsUp: summary.datagramsToUpstream ?? 0, datagramsDown: summary.datagramsToClient ?? 0, datagramsDropped: summary.datagramsDropped ?? 0 }
        : {}),
      ...(summary.target !== null ? { target: { address: summary.target.address, port: summary.target.port } } : {}),
      identity: summary.identity,
      bytesUp: summary.bytesToUpstream,
      bytesDown: summary.bytesToClient,
      durationMs: summary.durationMs,
      end: summary.end,
      ...(summary.error !== undefined ? { error: summary.error.code } : {}),
      ...(summary.pump !== null ? { pump: summary.pump } : {}),
      ...(protocol !== undefined ? { protocol } : {}),
      side: "server" as const,
      family,
      remoteIp: summary.client.address,
      remotePort: summary.client.port,
    },
    { host: options.host, ...(options.id !== undefined ? { id: options.id } : {}), ...(options.time !== undefined ? { time: options.time } : {}) },
  );
}

const FLOW_TYPES: ReadonlySet<string> = new Set(["flow-open", "flow-state", "flow-close"]);

/**
 * The event a message stands for, or null when it is none of the known kinds (publish it
 * as it is). In order: a payload that already is an event other than a flow event
 * (returned unchanged), a forward summary, a classified message (`msg.classification`:
 * its payload, a connection or a flow event, gives the addresses), a flow event (unchanged),
 * a `transparent in` connection message (`msg._session` + connection info).
 */
export function toEvent(msg: EventSourceMessage, options: ToEventOptions): TrafficEvent | null {
  const payload = msg.payload;
  const event = isTrafficEvent(payload);
  if (event && !FLOW_TYPES.has(payload.type)) return payload;
  const classification = msg.classification;
  if (isForwardSummary(payload)) return forwardSummaryEvent(payload, options, isClassification(classification) ? classification.protocol : undefined);
  // A flow event that went through classify stands for its classification.
  if (isClassification(classification)) return classificationEvent({ ...msg, classification }, options);
  if (event) return payload;
  if (isTrafficSession(msg._session) && isConnectionInfo(payload)) return connectionAcceptedEvent(payload, options);
  return null;
}

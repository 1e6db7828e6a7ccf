// Every event this package publishes. scripts/schemas.js generates schemas/<type>.json
// from the interfaces below (one per event, plus schemas/event.json for the union), so
// the JSDoc here is what subscribers read in the schema `description`s.

/**
 * Version of the event contracts. Raised when a field is removed or changes meaning;
 * adding an optional field does not raise it.
 */
export const EVENT_SCHEMA_VERSION = 1;

/** Every event `type`, which is also the schema file name (`schemas/<type>.json`). */
export const EVENT_TYPES = [
  "connection-accepted",
  "classification",
  "forward-summary",
  "flow-open",
  "flow-close",
  "flow-state",
  "lost",
  "agent-status",
  "mqtt-stats",
] as const;

/** Name of an event type. */
export type EventType = (typeof EVENT_TYPES)[number];

/**
 * Who opened the connection, seen from the observed socket: `client` when this socket
 * connected out (the local process called connect), `server` when it was accepted (the
 * remote peer connected in).
 */
export type Side = "client" | "server";

/** Fields every event carries. */
export interface EventBase {
  /** Version of the event contracts this event follows (see EVENT_SCHEMA_VERSION). */
  schemaVersion: 1;
  /**
   * Unique id of this event, stable across redelivery: a subscriber that sees the same id
   * twice got an MQTT at-least-once duplicate and may drop it.
   * @minLength 1
   */
  id: string;
  /**
   * When the event happened, ISO 8601 in UTC with milliseconds.
   * @format date-time
   */
  time: string;
  /**
   * Name of the host (agent) that observed the event; topics carry it so that many agents
   * can share one broker.
   * @minLength 1
   */
  host: string;
}

/** An address and port. */
export interface Endpoint {
  /** IPv4 dotted quad or IPv6 text (RFC 5952 form, IPv4-mapped addresses as `::ffff:a.b.c.d`). */
  ip: string;
  /**
   * @minimum 0
   * @maximum 65535
   */
  port: number;
}

/** The addresses of one observed socket. */
export interface SocketAddresses {
  /** IP family of the socket. */
  family: 4 | 6;
  /** Address of this end of the observed socket (the address it is bound to). */
  localIp: string;
  /**
   * @minimum 0
   * @maximum 65535
   */
  localPort: number;
  /** Address of the other end of the observed socket (its peer, before any PROXY header or forwarding header). */
  remoteIp: string;
  /**
   * @minimum 0
   * @maximum 65535
   */
  remotePort: number;
}

/** A transparent listener accepted a connection. */
export interface ConnectionAcceptedEvent extends EventBase, SocketAddresses {
  type: "connection-accepted";
  /**
   * Id of the live connection (`msg._session.id`).
   * @minLength 1
   */
  connectionId: string;
  /** How the connection reached the listener. */
  mode: "redirect" | "tproxy" | "plain";
  /** An accepted socket: the peer opened the connection. */
  side: "server";
  /** Where the client meant to connect before redirection, when known. */
  originalDst?: Endpoint & {
    /** How the listener learned it. */
    method: "so_original_dst" | "tproxy-local-address" | "proxy-protocol";
  };
  /** The real client address (PROXY header or trusted forwarding headers), when it differs from `remoteIp`. */
  clientIp?: string;
}

/** The protocol of a connection was recognised from its first bytes. */
export interface ClassificationEvent extends EventBase {
  type: "classification";
  /** @minLength 1 */
  connectionId: string;
  /** The side of the classified socket (see Side). */
  side: Side;
  /** Recognised protocol (`tls`, `http1`, `http2`, `grpc`, `ssh`, `mqtt`, `redis`, `postgresql`, `kafka`, `dubbo`, `proxy`), or `unknown`. */
  protocol: string;
  /** TLS ClientHello server name, when the protocol is TLS and it sent one. */
  sni?: string;
  /** TLS ALPN protocols offered, in the client's order. */
  alpn?: string[];
  /** HTTP Host (HTTP/1) or :authority (HTTP/2). */
  httpHost?: string;
  /** Name of the rule that matched, or `default` when none did (unknown traffic is routed, never dropped). */
  rule: string;
  /**
   * Index of the output the message left by.
   * @minimum 0
   */
  output: number;
  /**
   * Bytes inspected before deciding.
   * @minimum 0
   */
  bytesInspected: number;
}

/** A forwarded connection ended; totals for both directions. */
export interface ForwardSummaryEvent extends EventBase, SocketAddresses {
  type: "forward-summary";
  /** @minLength 1 */
  connectionId: string;
  /** Side of the downstream (client-facing) socket whose addresses this event carries. */
  side: Side;
  /** Where the connection was forwarded to (absent when rejected). */
  upstream?: Endpoint;
  /** What the forward did: `forwarded` to an upstream, `rejected` by policy, or `failed` to connect. */
  action: "forwarded" | "rejected" | "failed";
  /** Whether the upstream connection used the client's source address (transparent bind). */
  preservedSource: boolean;
  /** Whether a PROXY protocol header was sent upstream. */
  proxyHeader: boolean;
  /**
   * Bytes from the client towards the upstream.
   * @minimum 0
   */
  bytesUp: number;
  /**
   * Bytes from the upstream towards the client.
   * @minimum 0
   */
  bytesDown: number;
  /**
   * Milliseconds from accept to the close of both directions.
   * @minimum 0
   */
  durationMs: number;
  /** errno name (ECONNREFUSED, ETIMEDOUT, …) when the forward failed. */
  error?: string;
}

/** Fields of the flow events (eBPF flow source or its sock_diag fallback). */
export interface FlowFields extends SocketAddresses {
  /**
   * Id of the flow, the same on its open, state and close events.
   * @minLength 1
   */
  flowId: string;
  protocol: "tcp" | "udp";
  /** Who opened the flow, seen from the observed socket (see Side). */
  side: Side;
  /** Process that owns the socket, when the source knows it. */
  pid?: number;
  /** Command name of that process (kernel `comm`, at most 15 characters). */
  comm?: string;
  /** cgroup v2 id of the socket's owner, when the source knows it. */
  cgroupId?: string;
}

/** A flow was opened. */
export interface FlowOpenEvent extends EventBase, FlowFields {
  type: "flow-open";
}

/** A TCP flow changed state. */
export interface FlowStateEvent extends EventBase, FlowFields {
  type: "flow-state";
  /** Previous TCP state (`SYN_SENT`, `ESTABLISHED`, …). */
  oldState: string;
  /** New TCP state. */
  newState: string;
}

/** A flow was closed. */
export interface FlowCloseEvent extends EventBase, FlowFields {
  type: "flow-close";
  /**
   * Bytes this socket sent.
   * @minimum 0
   */
  bytesSent: number;
  /**
   * Bytes this socket received.
   * @minimum 0
   */
  bytesReceived: number;
  /**
   * Milliseconds the flow was open, when its open was seen.
   * @minimum 0
   */
  durationMs?: number;
}

/** Events were lost before they could be published; says where and how many. */
export interface LostEvent extends EventBase {
  type: "lost";
  /** Where they were lost: the kernel ring buffer, the publisher queue (overflow), or a node's input. */
  source: "ring-buffer" | "publisher-queue" | "input";
  /**
   * Events lost since the previous lost event from this source.
   * @minimum 1
   */
  count: number;
  /** Why, in words an operator can act on. */
  reason?: string;
}

/** The agent's status, published retained as the birth message and as the last will. */
export interface AgentStatusEvent extends EventBase {
  type: "agent-status";
  /** `online` (birth), `offline` (clean shutdown or last will set by the broker). */
  status: "online" | "offline";
  /** Version of this package. */
  version: string;
  /** Capture features this agent can use (`tproxy`, `redirect`, `ebpf`, `sock_diag`, …). */
  features: string[];
}

/** Counts of one publisher, sent periodically. */
export interface MqttStatsEvent extends EventBase {
  type: "mqtt-stats";
  /** Whether the broker connection is up. */
  connected: boolean;
  /**
   * Events waiting to be published.
   * @minimum 0
   */
  queued: number;
  /**
   * Published, not yet acknowledged (QoS 1/2).
   * @minimum 0
   */
  inFlight: number;
  /**
   * Events published and acknowledged (QoS 0: written) since start.
   * @minimum 0
   */
  sent: number;
  /**
   * Events dropped by the overflow policy since start.
   * @minimum 0
   */
  dropped: number;
  /**
   * Events held in the on-disk spool.
   * @minimum 0
   */
  spooled: number;
  /**
   * Milliseconds between stats events.
   * @minimum 1
   */
  intervalMs: number;
}

/** Any event of this package. */
export type TrafficEvent =
  | ConnectionAcceptedEvent
  | ClassificationEvent
  | ForwardSummaryEvent
  | FlowOpenEvent
  | FlowStateEvent
  | FlowCloseEvent
  | LostEvent
  | AgentStatusEvent
  | MqttStatsEvent;

/** The interface name of each event type, used by the schema generator. */
export const EVENT_INTERFACES: Readonly<Record<EventType, string>> = {
  "connection-accepted": "ConnectionAcceptedEvent",
  classification: "ClassificationEvent",
  "forward-summary": "ForwardSummaryEvent",
  "flow-open": "FlowOpenEvent",
  "flow-close": "FlowCloseEvent",
  "flow-state": "FlowStateEvent",
  lost: "LostEvent",
  "agent-status": "AgentStatusEvent",
  "mqtt-stats": "MqttStatsEvent",
};

// Every event this package publishes. scripts/schemas.js generates schemas/<type>.json
// from the interfaces below (one per event, plus schemas/event.json for the union), so
// the JSDoc here is what subscribers read in the schema `description`s. This is the one
// declaration of every event: producers (flow source, listener messages through
// `toEvent`, the MQTT nodes) build these types and nothing else.

import type { ClassificationFields, ClassifiedAs } from "../classify/types";

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
  "limit",
  "policy-verdict",
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
   * Port number.
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
   * Port of this end of the socket.
   * @minimum 0
   * @maximum 65535
   */
  localPort: number;
  /** Address of the other end of the observed socket (its peer, before any PROXY header or forwarding header). */
  remoteIp: string;
  /**
   * Port of the other end of the socket.
   * @minimum 0
   * @maximum 65535
   */
  remotePort: number;
}

/** A transparent listener accepted a connection. */
export interface ConnectionAcceptedEvent extends EventBase, SocketAddresses {
  /** Event type (see EVENT_TYPES); also the schema file name. */
  type: "connection-accepted";
  /**
   * Id of the live connection (`msg._session.id`); classification and forward-summary
   * events of the same connection carry it too.
   * @minLength 1
   */
  connectionId: string;
  /** Transport: a TCP connection, or a UDP session (one client address and port to one original destination, ended by an idle timeout). */
  protocol?: "tcp" | "udp";
  /** How the connection reached the listener. */
  mode: "redirect" | "tproxy" | "plain";
  /** An accepted socket: the peer opened the connection. */
  side: "server";
  /** Where the client meant to connect before redirection, when known. */
  originalDst?: OriginalDst;
  /** Why there is no `originalDst` in mode redirect/tproxy: `code` is the errno name (ENOENT: no conntrack entry) or ERR_NOT_REDIRECTED. */
  originalDstError?: {
    /** errno name or error code. */
    code: string;
    /** The error in words. */
    message: string;
  };
  /** The real client address from the PROXY protocol header, when the peer sent one with addresses. */
  clientIp?: string;
  /**
   * Port of the real client from the PROXY protocol header.
   * @minimum 0
   * @maximum 65535
   */
  clientPort?: number;
  /**
   * PROXY protocol version the peer used, when it sent a header.
   */
  proxyVersion?: 1 | 2;
  /**
   * First bytes of the stream the listener read before handing the connection on (a count; the bytes stay with the connection).
   * @minimum 0
   */
  firstBytesLength?: number;
}

/** Where a redirected client meant to connect. */
export interface OriginalDst extends Endpoint {
  /** How the listener learned it. */
  method: "so_original_dst" | "tproxy-local-address" | "ip_recvorigdstaddr" | "proxy-protocol";
}

/**
 * The protocol of a connection was recognised from its first bytes (the `classify` node's
 * `msg.classification`, with the connection's addresses when the message carried them).
 */
export interface ClassificationEvent extends EventBase {
  /** Event type (see EVENT_TYPES); also the schema file name. */
  type: "classification";
  /**
   * Id of the live connection (`msg._session.id`) when the bytes came from a transparent listener.
   * @minLength 1
   */
  connectionId?: string;
  /**
   * Id of the flow (socket cookie) when the bytes came from a flow event's first bytes.
   * @pattern ^[0-9]+$
   */
  flowId?: string;
  /**
   * Transport, present for `udp`: the bytes were a UDP session's first datagrams (a QUIC
   * Initial, a DNS query). (`protocol` is what was recognised.)
   */
  transport?: "udp";
  /** Side of the socket whose first bytes were classified (see FlowSide), when known. */
  side?: FlowSide;
  /** IP family of that socket, when known. */
  family?: 4 | 6;
  /** Address of this end of the socket (see SocketAddresses), when known. */
  localIp?: string;
  /**
   * Port of this end of the socket.
   * @minimum 0
   * @maximum 65535
   */
  localPort?: number;
  /** Address of the other end of the socket, when known. */
  remoteIp?: string;
  /**
   * Port of the other end of the socket.
   * @minimum 0
   * @maximum 65535
   */
  remotePort?: number;
  /** Where the client meant to connect before redirection, when known. */
  originalDst?: OriginalDst;
  /**
   * What the stream is: a protocol (`tls`, `http1`, `http2`, `grpc`, `ssh`, `mqtt`, `redis`,
   * `postgresql`, `kafka`, `dubbo`, `socks4`, `socks5`, `proxy`, `dns`, `quic`), or an outcome:
   * `unknown` (no sniffer matched), `incomplete` (the byte cap or deadline came first),
   * `server-first` (the client sent nothing; the server speaks first).
   */
  protocol: ClassifiedAs;
  /**
   * 1 when the bytes passed the protocol's full structural checks; lower when they were cut short or the signature is weak.
   * @minimum 0
   * @maximum 1
   */
  confidence: number;
  /**
   * Facts read from the first bytes (TLS SNI and ALPN, HTTP host and path, …); only those
   * the protocol carries. Every TLS ClientHello, over TCP or QUIC, adds its client
   * fingerprints: `ja4` (FoxIO JA4), `ja3` (the JA3 text) and `ja3Hash` (its MD5).
   */
  fields: ClassificationFields;
  /** Name of the routing rule that matched, or null when none did (the "other" output: unknown traffic is routed, never dropped). */
  rule: string | null;
  /**
   * Index (0-based) of the output the message left by.
   * @minimum 0
   */
  output: number;
  /**
   * Bytes examined before deciding.
   * @minimum 0
   */
  bytesInspected: number;
}

/**
 * How a forwarded connection ended: `closed` (both directions closed normally),
 * `rejected` (policy rejected it, no upstream), `client-reset` / `upstream-reset` (that
 * side reset it), `idle-timeout`, `connect-failed` (refused, timed out or unreachable:
 * see `error`), `loop` (the target was the listener itself), `no-target` (no target
 * could be chosen), `stopped` (the forward node was closed), `error` (another error).
 */
export type ForwardEnd =
  | "closed"
  | "rejected"
  | "client-reset"
  | "upstream-reset"
  | "idle-timeout"
  | "connect-failed"
  | "loop"
  | "no-target"
  | "stopped"
  | "error";

/**
 * How the client's identity was passed to the target: `none`, a PROXY protocol header
 * (`proxy-v1`, `proxy-v2`), or `transparent` (the upstream connection was bound to the
 * client's own address with IP_TRANSPARENT).
 */
export type ForwardIdentity = "none" | "proxy-v1" | "proxy-v2" | "transparent";

/** A forwarded (or rejected) connection ended; totals for both directions. */
export interface ForwardSummaryEvent extends EventBase {
  /** Event type (see EVENT_TYPES); also the schema file name. */
  type: "forward-summary";
  /**
   * Id of the live connection (`msg._session.id`).
   * @minLength 1
   */
  connectionId: string;
  /** What the forward did: `forward` to a target, or `reject` by policy. */
  action: "forward" | "reject";
  /**
   * Transport, present for `udp`: a UDP session's summary comes when it idles out (end
   * `idle-timeout`, or `rejected`). (`protocol` is what `classify` recognised.)
   */
  transport?: "udp";
  /**
   * UDP: datagrams from the client towards the target (with `bytesUp` their payload bytes).
   * @minimum 0
   */
  datagramsUp?: number;
  /**
   * UDP: datagrams from the target towards the client (with `bytesDown` their payload bytes).
   * @minimum 0
   */
  datagramsDown?: number;
  /**
   * UDP: client datagrams not sent on (rejected, over the queue while undecided, or refused by the kernel).
   * @minimum 0
   */
  datagramsDropped?: number;
  /** Where the connection was forwarded to (absent when rejected or no target was chosen). */
  target?: TargetAddress;
  /** How the client's identity was passed on (see ForwardIdentity). */
  identity: ForwardIdentity;
  /**
   * Payload bytes from the client towards the target.
   * @minimum 0
   */
  bytesUp: number;
  /**
   * Payload bytes from the target towards the client.
   * @minimum 0
   */
  bytesDown: number;
  /**
   * Milliseconds from the forward's start to the close of both directions.
   * @minimum 0
   */
  durationMs: number;
  /** How it ended (see ForwardEnd). */
  end: ForwardEnd;
  /** errno name (ECONNREFUSED, ETIMEDOUT, EPERM, …) or ERR_FORWARD_ code when it ended with an error. */
  error?: string;
  /** Who moved the bytes: the native splice pump or Node streams; absent when no upstream connection was made. */
  pump?: "native" | "js";
  /** What `classify` recognised the connection as, when the forwarded message went through it. */
  protocol?: ClassifiedAs;
  /** Side of the client-facing socket whose addresses follow: always `server` (it was accepted). */
  side?: "server";
  /** IP family of the client-facing socket, when the summary carried its addresses. */
  family?: 4 | 6;
  /** Address of the listener end of the client-facing socket. */
  localIp?: string;
  /**
   * Port of this end of the socket.
   * @minimum 0
   * @maximum 65535
   */
  localPort?: number;
  /** The client (peer of the accepted socket). */
  remoteIp?: string;
  /**
   * Port of the other end of the socket.
   * @minimum 0
   * @maximum 65535
   */
  remotePort?: number;
}

/** The upstream a connection was forwarded to, as resolved. */
export interface TargetAddress {
  /**
   * IP address the forward connected to.
   * @minLength 1
   */
  address: string;
  /**
   * Port number.
   * @minimum 1
   * @maximum 65535
   */
  port: number;
}

/**
 * Who opened a flow, seen from the observed socket (see Side); `unknown` when the source
 * saw the socket only after it was created and nothing told its side (partial flows).
 */
export type FlowSide = Side | "unknown";

/** Which capture produced a flow event: the eBPF programs, or the sock_diag fallback. */
export type FlowCapture = "ebpf" | "sockdiag";

/**
 * Where the owner (pid, comm, uid) was taken, in the owner's process context: `connect`
 * (the client's connect), `io` (the first send or receive of an accepted socket), `close`
 * (the close of a socket that never did I/O), `create` (UDP: the socket() call), `proc`
 * (matched by socket inode in /proc, sock_diag fallback).
 */
export type FlowOwnerFrom = "connect" | "io" | "close" | "create" | "proc";

/**
 * How a flow ended: `normal` (FIN), `reset` (the peer reset it: ECONNRESET/EPIPE),
 * `abort` (this side reset it: close with unread data, SO_LINGER 0), `refused`
 * (ECONNREFUSED), `timeout` (ETIMEDOUT), `error` (another socket error, see `error`),
 * `unknown` (sock_diag does not say).
 */
export type FlowEnd = "normal" | "reset" | "abort" | "refused" | "timeout" | "error" | "unknown";

/** TCP state names, as `ss` prints them (`UNKNOWN` for a number the kernel added later). */
export type TcpStateName =
  | "ESTABLISHED"
  | "SYN_SENT"
  | "SYN_RECV"
  | "FIN_WAIT1"
  | "FIN_WAIT2"
  | "TIME_WAIT"
  | "CLOSE"
  | "CLOSE_WAIT"
  | "LAST_ACK"
  | "LISTEN"
  | "CLOSING"
  | "UNKNOWN";

/**
 * Fields of the flow events (the `flow source`: eBPF, or its sock_diag fallback). Every
 * field is always present; `null` means the source does not know it.
 *
 * A UDP flow is one UDP socket, from its creation to its close. Its addresses are those of
 * its first datagram (eBPF) or of the socket (sock_diag, and eBPF for a socket that carried
 * none): a socket that is not connected may talk to other peers too, and its remote address
 * is 0.0.0.0 (or ::) port 0 while no peer is known. Its side: `client` when it sent the
 * first datagram, `server` when it received it (eBPF); sock_diag calls a connected socket
 * `client` and does not know the side of the others.
 */
export interface FlowFields extends SocketAddresses {
  /**
   * Id of the flow: the socket cookie, decimal. The same on the flow's open, state and close
   * events, and the same from eBPF and sock_diag. The two ends of one loopback connection are
   * two sockets, so two flows.
   * @pattern ^[0-9]+$
   */
  flowId: string;
  /** Transport protocol: `tcp` (a connection) or `udp` (a UDP socket). */
  protocol: "tcp" | "udp";
  /** Which capture reported the event (see FlowCapture). */
  source: FlowCapture;
  /** Who opened the flow (see FlowSide). */
  side: FlowSide;
  /**
   * Process (thread group id) that owns the socket; null when not known.
   * @minimum 1
   */
  pid: number | null;
  /** Command name of that process (kernel `comm`, at most 15 bytes); null when not known. */
  comm: string | null;
  /**
   * User id of that process (eBPF) or of the socket (sock_diag); null when not known.
   * @minimum 0
   */
  uid: number | null;
  /** Where the owner was taken (see FlowOwnerFrom); null when the owner is not known. */
  ownerFrom: FlowOwnerFrom | null;
  /**
   * cgroup v2 id of the socket (decimal); null when not known.
   * @pattern ^[0-9]+$
   */
  cgroupId: string | null;
  /**
   * Inode of the socket's network namespace (as `stat /proc/<pid>/ns/net` shows); null when not known.
   * @minimum 1
   */
  netns: number | null;
  /**
   * The flow existed before capture started (or was first seen by a periodic dump): its
   * start time, handshake and early counters are missing.
   */
  partial: boolean;
}

/**
 * A flow opened. TCP: it reached ESTABLISHED (an accepted socket: reported once its owner
 * is known). UDP: the socket carried its first datagram (or, without one, at its close).
 */
export interface FlowOpenEvent extends EventBase, FlowFields {
  /** Event type (see EVENT_TYPES); also the schema file name. */
  type: "flow-open";
}

/** A TCP state change of a flow (only when state events are selected). */
export interface FlowStateEvent extends EventBase, FlowFields {
  /** Event type (see EVENT_TYPES); also the schema file name. */
  type: "flow-state";
  /** State before the change. */
  oldState: TcpStateName;
  /** State after the change. */
  newState: TcpStateName;
}

/**
 * First payload bytes of a flow, each direction, base64 (RFC 4648, with padding): always the
 * start of the byte stream. A direction is absent when its start was not seen in order
 * (data carried by the handshake's last ACK, a connection older than the capture).
 */
export interface FlowFirstBytes {
  /**
   * First bytes this socket sent, base64.
   * @pattern ^[A-Za-z0-9+/]*={0,2}$
   */
  sent?: string;
  /**
   * First bytes this socket received, base64.
   * @pattern ^[A-Za-z0-9+/]*={0,2}$
   */
  received?: string;
}

/** A flow closed, with its final counters. */
export interface FlowCloseEvent extends EventBase, FlowFields {
  /** Event type (see EVENT_TYPES); also the schema file name. */
  type: "flow-close";
  /** How it ended (see FlowEnd). */
  end: FlowEnd;
  /** The socket error as an errno name (ECONNREFUSED, ECONNRESET, ETIMEDOUT, …); null when none. */
  error: string | null;
  /** The state before CLOSE (UDP: ESTABLISHED while connected, CLOSE otherwise). */
  lastState: TcpStateName;
  /** Whether the flow ever reached ESTABLISHED (UDP: whether the socket was connected at its close). */
  established: boolean;
  /**
   * Payload bytes this socket sent (retransmissions counted once, no SYN/FIN; UDP: datagram payloads).
   * @minimum 0
   */
  bytesSent: number;
  /**
   * Payload bytes this socket received (no SYN/FIN; UDP: payloads of the datagrams queued to it).
   * @minimum 0
   */
  bytesReceived: number;
  /**
   * True when the byte counts are exact payload; false when they may include the peer's FIN
   * (TCP from sock_diag cannot tell) or are not known at all (UDP from sock_diag: the
   * kernel's UDP dump has no counters, so both counts are 0).
   */
  bytesExact: boolean;
  /**
   * UDP: datagrams this socket sent (a UDP_SEGMENT send counts each segment); absent for TCP
   * and when not known (sock_diag).
   * @minimum 0
   */
  datagramsSent?: number;
  /**
   * UDP: datagrams queued to this socket (including any it dropped for a full receive
   * buffer); absent for TCP and when not known (sock_diag).
   * @minimum 0
   */
  datagramsReceived?: number;
  /**
   * Bytes sent again by retransmission.
   * @minimum 0
   */
  bytesRetransmitted: number;
  /**
   * Segments retransmitted.
   * @minimum 0
   */
  retransmits: number;
  /**
   * Smoothed round-trip time in microseconds; null when never measured.
   * @minimum 0
   */
  srttUs: number | null;
  /**
   * Minimum round-trip time in microseconds; null when there was no sample.
   * @minimum 0
   */
  rttMinUs: number | null;
  /**
   * Segments received (UDP: datagrams, 0 when not known).
   * @minimum 0
   */
  segmentsIn: number;
  /**
   * Segments sent (UDP: datagrams, 0 when not known).
   * @minimum 0
   */
  segmentsOut: number;
  /**
   * Milliseconds from the SYN (client), the accepted socket's creation (server) or the
   * UDP socket's creation to the close; null when partial.
   * @minimum 0
   */
  durationMs: number | null;
  /**
   * Milliseconds from SYN sent to ESTABLISHED, client side only; null otherwise.
   * @minimum 0
   */
  handshakeMs: number | null;
  /** First payload bytes each way, when first-bytes capture is on (eBPF with cgroup_skb on the cgroup v2 root). */
  firstBytes?: FlowFirstBytes;
}

/**
 * Where events were lost: `kernel` (the eBPF ring buffer was full), `js` (batches the JS
 * thread could not take), `netlink` (sock_diag multicast overrun: the count is unknown,
 * each overrun counts 1), `publisher-queue` (the MQTT publisher's queue overflowed,
 * drop-oldest), `input` (a node could not take its input).
 */
export type LostWhere = "kernel" | "js" | "netlink" | "publisher-queue" | "input";

/** Events were lost before they could be delivered or published; says where and how many. */
export interface LostEvent extends EventBase {
  /** Event type (see EVENT_TYPES); also the schema file name. */
  type: "lost";
  /** Where they were lost (see LostWhere). */
  source: LostWhere;
  /** The flow capture that lost them (kernel, js, netlink), when a flow source did. */
  capture?: FlowCapture;
  /**
   * Events lost since the previous lost event from this source.
   * @minimum 1
   */
  count: number;
  /**
   * Events lost at this place since the producer started, when it counts them.
   * @minimum 1
   */
  total?: number;
  /** Why, in words an operator can act on. */
  reason?: string;
}

/** The agent's status, published retained as the birth message and as the last will. */
export interface AgentStatusEvent extends EventBase {
  /** Event type (see EVENT_TYPES); also the schema file name. */
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
  /** Event type (see EVENT_TYPES); also the schema file name. */
  type: "mqtt-stats";
  /** Whether the broker connection is up. */
  connected: boolean;
  /**
   * Events waiting to be published.
   * @minimum 0
   */
  queued: number;
  /**
   * Handed to the client, not yet called back: QoS 1/2 awaiting acknowledgement, and at
   * QoS 0 at most one message waiting for the socket to drain.
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

/**
 * A `limit` node refused connections of one key: sent once when a run of refusals (a
 * burst) starts, every update interval while it lasts, and when it ends, never once per
 * connection, so a flood costs a few events rather than one per connection.
 */
export interface LimitEvent extends EventBase {
  /** Event type (see EVENT_TYPES); also the schema file name. */
  type: "limit";
  /** `start` (first refusal), `update` (still refusing), `end` (quiet again, or the key was evicted). */
  phase: "start" | "update" | "end";
  /** Name of the limit node (its id when it has no name). */
  limiter: string;
  /** What the key is: `client-ip`, `sni`, `host`, `rule` or `property`. */
  keyKind: "client-ip" | "sni" | "host" | "rule" | "property";
  /**
   * The key whose limit was reached: an address, a network in CIDR form
   * (`2001:db8:1:2::/64`), a name, a rule, or `(none)` for messages without a key.
   * @minLength 1
   */
  key: string;
  /** What the first refusal of the burst hit: `rate` (token bucket) or `concurrency` (open connections cap). */
  reason: "rate" | "concurrency";
  /** What happened to refused connections: `reject-fin`, `reject-rst`, or `output` (sent to the node's second output). */
  action: "reject-fin" | "reject-rst" | "output";
  /** Refusals in this burst so far. */
  rejected: {
    /**
     * Over the rate.
     * @minimum 0
     */
    rate: number;
    /**
     * Over the concurrency cap.
     * @minimum 0
     */
    concurrency: number;
  };
  /**
   * Connections of this key let through while the burst lasted.
   * @minimum 0
   */
  allowed: number;
  /**
   * When the burst's first refusal happened, ISO 8601 in UTC.
   * @format date-time
   */
  startedAt: string;
  /**
   * From the first refusal to the latest, in ms.
   * @minimum 0
   */
  durationMs: number;
  /** On `end`: the key left the bounded key table while still refused, rather than going quiet. */
  evicted?: boolean;
  /** The limits in force. */
  limits: {
    /**
     * New connections per second per key; 0 when there is no rate limit.
     * @minimum 0
     */
    rate: number;
    /**
     * Token bucket size.
     * @minimum 0
     */
    burst: number;
    /**
     * Open connections per key; 0 when there is no cap.
     * @minimum 0
     */
    maxConcurrent: number;
  };
}

/**
 * What a policy node decided, or in shadow mode would have decided, about one message
 * (one connection): an `ip filter` deny, a `classify` rule taking it, a `forward` reject.
 * In shadow mode the connection passed as if allowed; this event is the only trace of
 * what enforcement would have done.
 */
export interface PolicyVerdictEvent extends EventBase {
  /** Event type (see EVENT_TYPES); also the schema file name. */
  type: "policy-verdict";
  /** `enforce`: the verdict was carried out; `shadow`: it was only reported and the connection passed. */
  mode: "enforce" | "shadow";
  /**
   * What enforcement does or would do: `deny` (ip filter), `route` (a classify rule takes the
   * connection to its output), `reject` (forward closes the connection).
   */
  verdict: "deny" | "route" | "reject";
  /** Type of the node that decided: `ip filter`, `classify` or `forward`. */
  nodeType: "ip filter" | "classify" | "forward";
  /**
   * Id of that node in the flow.
   * @minLength 1
   */
  nodeId: string;
  /** Name of that node, when it has one. */
  nodeName?: string;
  /**
   * Name of the rule that decided (ip filter or classify rule; for forward the classify rule
   * that routed the connection there), or null when no rule matched (an ip filter's no-match
   * default, a forward without a classification).
   */
  rule: string | null;
  /** Why, in words: the matched rule and what it matched on, or the default that applied. */
  reason: string;
  /**
   * classify: the output (0-based) enforcement routes to.
   * @minimum 0
   */
  output?: number;
  /**
   * Id of the live connection (`msg._session.id`), when the message carried one.
   * @minLength 1
   */
  connectionId?: string;
  /** The address the decision was about (ip filter) or the connection's client address, when known. */
  clientIp?: string;
}

/** The flow events of one connection. */
export type FlowConnectionEvent = FlowOpenEvent | FlowStateEvent | FlowCloseEvent;

/** Everything a flow source emits: flow events and its lost counts. */
export type FlowEvent = FlowConnectionEvent | LostEvent;

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
  | MqttStatsEvent
  | LimitEvent
  | PolicyVerdictEvent;

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
  limit: "LimitEvent",
  "policy-verdict": "PolicyVerdictEvent",
};

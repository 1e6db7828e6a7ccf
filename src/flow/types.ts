/**
 * Flow events: one per TCP connection of the host (open and close, optionally each state
 * change), from eBPF or from the sock_diag fallback. `localIp`/`remoteIp` are relative to
 * the observed socket; `side` says who opened the connection (`client`: this socket
 * connected out; `server`: it was accepted from a listener).
 */
export const FLOW_SCHEMA_VERSION = 1 as const;

/** Where an event came from. */
export type FlowEventSource = "ebpf" | "sockdiag";
/** Who opened the connection, seen from the observed socket. */
export type FlowSide = "client" | "server" | "unknown";
/** Where the owner (pid, command, uid) was taken. `proc`: matched by socket inode in /proc. */
export type FlowOwnerFrom = "connect" | "io" | "close" | "proc";
/** How a connection ended. `abort`: this side reset it (close with unread data, SO_LINGER 0); `unknown`: sock_diag does not say. */
export type FlowEnd = "normal" | "reset" | "abort" | "refused" | "timeout" | "error" | "unknown";
/** TCP state names, as `ss` prints them. */
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

/** Fields every connection event has. */
export interface FlowEventBase {
  readonly schema: typeof FLOW_SCHEMA_VERSION;
  readonly source: FlowEventSource;
  /** The socket cookie, decimal: the same connection has the same id in every event. */
  readonly id: string;
  /** When the event happened (ISO 8601). */
  readonly time: string;
  readonly side: FlowSide;
  readonly family: 4 | 6;
  readonly localIp: string;
  readonly localPort: number;
  readonly remoteIp: string;
  readonly remotePort: number;
  /** Owning process (thread group id); null when not known. */
  readonly pid: number | null;
  readonly command: string | null;
  readonly uid: number | null;
  readonly ownerFrom: FlowOwnerFrom | null;
  /** cgroup v2 id of the socket (decimal); null when not known. */
  readonly cgroupId: string | null;
  /** Network namespace inode; null when not known. */
  readonly netns: number | null;
  /** The connection existed before capture started: start time and early counters are missing. */
  readonly partial: boolean;
}

/** A connection reached ESTABLISHED (for accepted sockets: reported when the owner is known). */
export interface FlowOpenEvent extends FlowEventBase {
  readonly type: "flow.open";
}

/** A TCP state change (only when state events are selected). */
export interface FlowStateEvent extends FlowEventBase {
  readonly type: "flow.state";
  readonly oldState: TcpStateName;
  readonly newState: TcpStateName;
}

/** A connection closed, with its final counters. */
export interface FlowCloseEvent extends FlowEventBase {
  readonly type: "flow.close";
  readonly end: FlowEnd;
  /** The socket error as an errno name (ECONNREFUSED, ECONNRESET, ETIMEDOUT, …), null when none. */
  readonly error: string | null;
  /** The state before CLOSE. */
  readonly lastState: TcpStateName;
  readonly established: boolean;
  /** Payload bytes this socket sent (retransmissions not counted twice, no SYN/FIN). */
  readonly bytesSent: number;
  /** Payload bytes this socket received (no SYN/FIN). */
  readonly bytesReceived: number;
  /** False when the count may include the peer's FIN (sock_diag cannot tell). */
  readonly bytesExact: boolean;
  readonly bytesRetransmitted: number;
  readonly retransmits: number;
  /** Smoothed RTT in microseconds, null when never measured. */
  readonly srttUs: number | null;
  /** Minimum RTT in microseconds, null when there was no sample. */
  readonly rttMinUs: number | null;
  readonly segmentsIn: number;
  readonly segmentsOut: number;
  /** From the SYN (client) or the accepted socket's creation (server); null when partial. */
  readonly durationMs: number | null;
  /** SYN sent → ESTABLISHED on the client side; null otherwise. */
  readonly handshakeMs: number | null;
  /**
   * The first payload bytes each way (base64), when first-bytes capture is on (eBPF with
   * cgroup_skb on the cgroup v2 root): enough to name the protocol or read a TLS SNI.
   */
  readonly firstBytes?: { readonly sent?: string; readonly received?: string };
}

/** Events the source could not deliver, by where they were lost. */
export interface FlowLostEvent {
  readonly schema: typeof FLOW_SCHEMA_VERSION;
  readonly type: "flow.lost";
  readonly source: FlowEventSource;
  readonly time: string;
  /** `kernel`: the ring buffer was full; `js`: batches the JS thread could not take; `netlink`: multicast overrun (count unknown, each overrun counts 1). */
  readonly where: "kernel" | "js" | "netlink";
  /** Lost since the previous lost event. */
  readonly count: number;
  /** Lost since the source started. */
  readonly total: number;
}

export type FlowConnectionEvent = FlowOpenEvent | FlowStateEvent | FlowCloseEvent;
export type FlowEvent = FlowConnectionEvent | FlowLostEvent;

import type { ProxyHeader } from "./proxy-protocol/types";

/**
 * `msg._session` on messages about a live connection. Node-RED clones messages, so the
 * socket itself stays in the listener's process-wide table and messages carry its id.
 */
export interface TrafficSessionRef {
  readonly type: "traffic";
  readonly id: string;
}

/** How the listener got the original destination. */
export type OriginalDstMethod = "so_original_dst" | "tproxy-local-address" | "ip_recvorigdstaddr" | "proxy-protocol" | "none";

/** `msg.payload` of a connection message: plain facts about one accepted connection. */
export interface ConnectionInfo {
  readonly id: string;
  /** `udp`: a session of datagrams between one client address and port and one original destination; absent in messages of earlier versions: `tcp`. */
  readonly protocol?: "tcp" | "udp";
  readonly mode: "redirect" | "tproxy" | "plain";
  readonly family: 4 | 6;
  /** Address and port of the accepting socket. */
  readonly localAddress: string;
  readonly localPort: number;
  /** The socket peer: who connected (before any PROXY header). */
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly originalDst?: { readonly address: string; readonly port: number; readonly family: 4 | 6; readonly method: OriginalDstMethod };
  /**
   * Why there is no `originalDst` in mode redirect/tproxy: `code` is the errno name
   * (ENOENT: no conntrack entry) or ERR_NOT_REDIRECTED (the client dialled the listener itself).
   */
  readonly originalDstError?: { readonly code: string; readonly message: string };
  /** The PROXY protocol header the peer sent, when the listener expects one. */
  readonly proxy?: ProxyHeader;
  /** First bytes of the stream, kept by the listener for replay; for UDP the first datagram. */
  readonly firstBytes?: Buffer;
  /** UDP: the client's first datagrams (as many as classifying them needed, at most 4), each whole. */
  readonly firstDatagrams?: readonly Buffer[];
  /** Milliseconds since the epoch. */
  readonly acceptedAt: number;
  /** When the listener finished reading the PROXY header and first bytes and sent the message. */
  readonly readyAt?: number;
}

/** True when `msg` refers to a live connection from this package's listener. */
export function isTrafficSession(value: unknown): value is TrafficSessionRef {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as { type?: unknown }).type === "traffic" &&
    typeof (value as { id?: unknown }).id === "string"
  );
}

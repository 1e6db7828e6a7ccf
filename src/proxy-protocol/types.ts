/** A PROXY protocol header (haproxy's proxy-protocol.txt, versions 1 and 2). */
export interface ProxyHeader {
  readonly version: 1 | 2;
  /** `proxy`: addresses below describe the original connection; `local`: health check, use the socket. */
  readonly command: "proxy" | "local";
  /** Address family of the original connection; `unspec` (v1 UNKNOWN, v2 AF_UNSPEC) carries no addresses. */
  readonly family: "tcp4" | "tcp6" | "udp4" | "udp6" | "unix-stream" | "unix-dgram" | "unspec";
  /** Original client (source) address and port, canonical text; absent for local/unspec. */
  readonly sourceAddress?: string;
  readonly sourcePort?: number;
  /** Original destination address and port; absent for local/unspec. */
  readonly destinationAddress?: string;
  readonly destinationPort?: number;
  /** v2 TLVs in wire order (empty for v1). */
  readonly tlvs: readonly ProxyTlv[];
  /** Decoded well-known TLVs, for convenience. */
  readonly alpn?: string;
  readonly authority?: string;
  readonly uniqueId?: Buffer;
  readonly netns?: string;
  readonly ssl?: ProxySslInfo;
  /** Bytes the header occupies at the start of the stream; the payload starts after them. */
  readonly length: number;
}

/** One v2 TLV: type byte and raw value. */
export interface ProxyTlv {
  readonly type: number;
  readonly value: Buffer;
}

/** PP2_TYPE_SSL contents. */
export interface ProxySslInfo {
  /** PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS bit field. */
  readonly client: number;
  /** 0 when the client presented a certificate that verified. */
  readonly verify: number;
  readonly version?: string;
  readonly cn?: string;
  readonly cipher?: string;
  readonly sigAlg?: string;
  readonly keyAlg?: string;
}

/**
 * Result of feeding the first bytes of a stream to the parser:
 * - `header`: a complete, valid header (its `length` bytes are consumed);
 * - `incomplete`: the bytes so far are a valid prefix, wait for more (up to the limits);
 * - `not-proxy`: the stream does not start with a PROXY header.
 * Malformed headers throw a TrafficError with code ERR_PROXY_V1 or ERR_PROXY_V2.
 */
export type ProxyParseResult =
  | { readonly kind: "header"; readonly header: ProxyHeader }
  | { readonly kind: "incomplete"; readonly version: 1 | 2 | 0 }
  | { readonly kind: "not-proxy" };

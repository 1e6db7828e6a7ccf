/** Protocols a sniffer can recognise from the first bytes a client sends. */
export type SniffedProtocol =
  | "tls"
  | "http1"
  | "http2"
  | "grpc"
  | "ssh"
  | "mqtt"
  | "redis"
  | "postgresql"
  | "kafka"
  | "dubbo"
  | "socks4"
  | "socks5"
  | "proxy"
  | "dns"
  | "quic";

/**
 * Outcomes that are not a protocol:
 * - `unknown`: every sniffer declined the bytes;
 * - `incomplete`: the byte cap, the time limit or the end of the stream came while some
 *   sniffer still needed more bytes (`fields.candidates` names them);
 * - `server-first`: the client sent nothing within the server-first wait, as with SMTP,
 *   MySQL, FTP, POP3, IMAP (`fields.serverFirstHint` guesses from the destination port).
 */
export type ClassificationOutcome = "unknown" | "incomplete" | "server-first";

/** What a classification says the stream is. */
export type ClassifiedAs = SniffedProtocol | ClassificationOutcome;

/** Facts a sniffer read from the first bytes. Only the ones its protocol carries are set. */
export interface ClassificationFields {
  // TLS ClientHello
  /** server_name (SNI) host name, as sent (ASCII, lower-cased). */
  sni?: string;
  /** ALPN protocol names in the client's order. */
  alpn?: string[];
  /** Offered versions, newest first ("TLS1.3", "TLS1.2", …), GREASE left out. */
  tlsVersions?: string[];
  /** An encrypted_client_hello extension was present: the SNI above is the public (outer) name. */
  ech?: boolean;
  /** A hybrid post-quantum key share (X25519MLKEM768 or its Kyber draft) was offered. */
  postQuantum?: boolean;
  /** ALPN offers HTTP (h2, h3 or http/1.x): HTTPS rather than some other TLS protocol. */
  https?: boolean;
  /**
   * JA4 client fingerprint (FoxIO JA4 specification): `t` over TCP or `q` over QUIC, TLS
   * version, `d`/`i` SNI or not, cipher and extension counts, ALPN first and last
   * character, then truncated SHA-256 of the sorted ciphers and of the sorted extensions
   * with the signature algorithms. GREASE left out. Example `t13d1516h2_8daaf6152771_e5627efa2ab1`.
   */
  ja4?: string;
  /** JA3 text: ClientHello version, ciphers, extensions, groups, point formats (decimal, GREASE left out). */
  ja3?: string;
  /** MD5 of the JA3 text (32 lower-case hex digits), as older tools and block lists carry it. */
  ja3Hash?: string;
  // HTTP/1.x and HTTP/2
  /** HTTP request method (GET, POST, PRI for the HTTP/2 preface). */
  method?: string;
  /** Host header (HTTP/1) or :authority (HTTP/2), lower-cased, port kept. */
  host?: string;
  /** HTTP request path (HTTP/1 request target or HTTP/2 :path). */
  path?: string;
  /** "1.0", "1.1" or "2". */
  httpVersion?: string;
  /** HTTP Content-Type header value. */
  contentType?: string;
  /** HTTP/1 Upgrade header value (websocket, h2c, …). */
  upgrade?: string;
  /** gRPC service name, from the HTTP/2 :path. */
  grpcService?: string;
  /** gRPC method name, from the HTTP/2 :path. */
  grpcMethod?: string;
  // SSH
  /** Protocol version from the banner ("2.0"). */
  sshVersion?: string;
  /** Software version from the banner ("OpenSSH_9.2p1"). */
  software?: string;
  // MQTT
  /** "3.1", "3.1.1" or "5.0". */
  mqttVersion?: string;
  /** MQTT or Kafka client id. */
  clientId?: string;
  // Redis
  /** First command name, upper-cased ("PING", "HELLO", "COMMAND"). */
  command?: string;
  // PostgreSQL
  /** `startup`, `ssl` (SSLRequest), `gssenc` (GSSENCRequest) or `cancel`. */
  pgRequest?: "startup" | "ssl" | "gssenc" | "cancel";
  /** PostgreSQL startup user name. */
  user?: string;
  /** PostgreSQL startup database name. */
  database?: string;
  /** PostgreSQL startup application_name. */
  applicationName?: string;
  // Kafka
  /** Kafka request API key. */
  apiKey?: number;
  /** Kafka request API name (Metadata, ApiVersions, …). */
  apiName?: string;
  /** Kafka request API version. */
  apiVersion?: number;
  /** Kafka request correlation id. */
  correlationId?: number;
  // Dubbo
  /** Dubbo serialization id from the header flags. */
  serialization?: number;
  /** Dubbo two-way (request expects a response) flag. */
  twoWay?: boolean;
  /** Dubbo event (heartbeat) flag. */
  event?: boolean;
  // SOCKS
  /** SOCKS request command. */
  socksCommand?: "connect" | "bind" | "udp-associate";
  /** SOCKS5 authentication methods offered. */
  socksMethods?: number[];
  /** SOCKS target host (name or address). */
  targetHost?: string;
  /** SOCKS target port. */
  targetPort?: number;
  // PROXY protocol
  /** PROXY protocol header version. */
  proxyVersion?: 1 | 2;
  // QUIC (the TLS ClientHello fields above come from its Initial packets)
  /** QUIC version of the Initial packets: 1 (RFC 9000) or 2 (RFC 9369). */
  quicVersion?: 1 | 2;
  // DNS over TCP and UDP
  /** DNS question name. */
  dnsName?: string;
  /** DNS question type (A, AAAA, …). */
  dnsType?: string;
  /** DNS header flags that are set, of "aa", "tc", "rd", "ad", "cd", in that order. */
  dnsFlags?: string[];
  // Outcomes
  /** For `incomplete`: the sniffers that still wanted more bytes. */
  candidates?: SniffedProtocol[];
  /** For `server-first`: a guess from the destination port ("smtp", "mysql", …). */
  serverFirstHint?: string;
}

/** The final answer about a stream's first bytes. */
export interface Classification {
  readonly protocol: ClassifiedAs;
  /**
   * 1 when the bytes passed the protocol's full structural checks; lower when they were
   * cut short (decided at the cap or the deadline) or the signature is weak.
   */
  readonly confidence: number;
  readonly fields: ClassificationFields;
  /** How many bytes were examined. */
  readonly bytes: number;
}

/** A sniffer's answer for the bytes seen so far. */
export type SniffVerdict =
  | { readonly kind: "match"; readonly protocol: SniffedProtocol; readonly confidence: number; readonly fields: ClassificationFields }
  | { readonly kind: "no" }
  | { readonly kind: "more" };

/**
 * One protocol's sniffer: a pure function over the bytes seen so far (always from the
 * first byte of the stream). `final` is true when no more bytes will come (cap, deadline
 * or end of stream): a sniffer that has enough to be fairly sure then answers `match`
 * with a lower confidence instead of `more`. Sniffers never throw on any input.
 */
export interface Sniffer {
  readonly protocol: SniffedProtocol;
  sniff(bytes: Buffer, final: boolean): SniffVerdict;
}

/** The shared "not this protocol" answer (no allocation on the hot path). */
export const NO: SniffVerdict = Object.freeze({ kind: "no" });
/** The shared "need more bytes" answer. */
export const MORE: SniffVerdict = Object.freeze({ kind: "more" });

/** Builds a match verdict. */
export function match(protocol: SniffedProtocol, confidence: number, fields: ClassificationFields): SniffVerdict {
  return { kind: "match", protocol, confidence, fields };
}

import { TrafficError } from "../errors";
import { dnsSniffer } from "./dns";
import { dubboSniffer } from "./dubbo";
import { http1Sniffer } from "./http1";
import { http2Sniffer } from "./http2";
import { kafkaSniffer } from "./kafka";
import { mqttSniffer } from "./mqtt";
import { postgresqlSniffer } from "./postgresql";
import { proxySniffer } from "./proxy";
import { redisSniffer } from "./redis";
import { socks4Sniffer, socks5Sniffer } from "./socks";
import { sshSniffer } from "./ssh";
import { tlsSniffer, tlsSnifferWith } from "./tls";
import type { FingerprintSet } from "./fingerprint";
import type { MoreBytesSource } from "./more-bytes";
import { Classification, SniffedProtocol, Sniffer } from "./types";

/**
 * Every sniffer, in the order they are asked. Strong signatures come first. Among the
 * length-prefixed binary protocols, PostgreSQL goes first (a Kafka Metadata v0 header
 * can begin like a startup packet), then DNS (a DNS query without the RD flag reads as
 * a Kafka Produce header, while a Kafka request under 64 KiB starts with two zero
 * bytes, which DNS rejects as a length), then Kafka.
 */
export const DEFAULT_SNIFFERS: readonly Sniffer[] = [
  tlsSniffer,
  http1Sniffer,
  http2Sniffer,
  proxySniffer,
  sshSniffer,
  mqttSniffer,
  redisSniffer,
  postgresqlSniffer,
  dubboSniffer,
  socks4Sniffer,
  socks5Sniffer,
  dnsSniffer,
  kafkaSniffer,
];

/**
 * The default sniffers with a TLS sniffer that adds only the given fingerprints: a caller
 * whose rules and outputs need no JA3 (or no fingerprint at all) skips computing it.
 */
export function sniffersWithFingerprints(fingerprints: FingerprintSet): readonly Sniffer[] {
  return DEFAULT_SNIFFERS.map((s) => (s === tlsSniffer ? tlsSnifferWith(fingerprints) : s));
}

/** Limits of one classification. */
export interface ClassifierOptions {
  /** Bytes examined at most (default 16384, like Envoy's TLS inspector); beyond it the answer is final. */
  readonly maxBytes?: number;
  /** Milliseconds from the first call until an undecided stream is final (default 5000). */
  readonly timeoutMs?: number;
  /** Milliseconds without a single client byte after which the stream counts as server-first (default 300). */
  readonly serverFirstMs?: number;
  /** Which sniffers to run, in order (default: all). */
  readonly sniffers?: readonly Sniffer[];
}

/** Options with every default filled in. */
export interface ClassifierLimits {
  readonly maxBytes: number;
  readonly timeoutMs: number;
  readonly serverFirstMs: number;
}

const DEFAULTS: ClassifierLimits = { maxBytes: 16384, timeoutMs: 5000, serverFirstMs: 300 };

// Well-known ports of protocols where the server speaks first.
const SERVER_FIRST_PORTS: Readonly<Record<number, string>> = {
  21: "ftp",
  25: "smtp",
  110: "pop3",
  143: "imap",
  465: "smtp",
  587: "smtp",
  3306: "mysql",
  5222: "xmpp",
  6379: "redis",
};

function limit(name: string, value: number | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
    throw new TrafficError("ERR_CLASSIFY_CONFIG", `${name} must be an integer from 0 to ${max}`, name);
  }
  return value;
}

/** Checks classifier options and fills in the defaults. */
export function classifierLimits(options: ClassifierOptions = {}): ClassifierLimits {
  return {
    maxBytes: Math.max(1, limit("maxBytes", options.maxBytes, DEFAULTS.maxBytes, 1 << 20)),
    timeoutMs: limit("timeoutMs", options.timeoutMs, DEFAULTS.timeoutMs, 600_000),
    serverFirstMs: limit("serverFirstMs", options.serverFirstMs, DEFAULTS.serverFirstMs, 600_000),
  };
}

function asBuffer(bytes: unknown): Buffer {
  if (Buffer.isBuffer(bytes)) return bytes;
  if (bytes instanceof Uint8Array) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  throw new TrafficError("ERR_CLASSIFY_INPUT", "expected a Buffer or Uint8Array of the stream's first bytes", "bytes");
}

/**
 * Runs the sniffers once over `bytes` (always from the stream's first byte).
 * Returns the classification, or null when some sniffer needs more bytes and the
 * stream may still deliver them (`final` false). With `final` true the answer is never
 * null: a match, `unknown`, `incomplete` or (no bytes at all) `server-first`.
 */
export function runSniffers(
  bytes: Buffer,
  final: boolean,
  sniffers: readonly Sniffer[] = DEFAULT_SNIFFERS,
  destinationPort?: number,
): Classification | null {
  const n = bytes.length;
  if (n === 0) {
    if (!final) return null;
    const hint = destinationPort === undefined ? undefined : SERVER_FIRST_PORTS[destinationPort];
    return { protocol: "server-first", confidence: hint === undefined ? 0.5 : 0.7, fields: hint === undefined ? {} : { serverFirstHint: hint }, bytes: 0 };
  }
  let waiting: SniffedProtocol[] | null = null;
  for (let i = 0; i < sniffers.length; i++) {
    const sniffer = sniffers[i]!;
    const v = sniffer.sniff(bytes, final);
    if (v.kind === "match") return { protocol: v.protocol, confidence: v.confidence, fields: v.fields, bytes: n };
    if (v.kind === "more") {
      // A strong sniffer that waits must not lose to a weaker one that happens to match
      // a prefix: the first undecided sniffer decides the wait (unless final).
      if (!final) return null;
      (waiting ??= []).push(sniffer.protocol);
    }
  }
  if (waiting !== null) return { protocol: "incomplete", confidence: 0, fields: { candidates: waiting }, bytes: n };
  return { protocol: "unknown", confidence: 0, fields: {}, bytes: n };
}

/** Classifies bytes in one call, treating them as all there is (a flow event, a capture). */
export function classifyBytes(bytes: Uint8Array, options: ClassifierOptions & { destinationPort?: number } = {}): Classification {
  const b = asBuffer(bytes);
  const { maxBytes } = classifierLimits(options);
  const view = b.length > maxBytes ? b.subarray(0, maxBytes) : b;
  return runSniffers(view, true, options.sniffers ?? DEFAULT_SNIFFERS, options.destinationPort)!;
}

/**
 * Incremental classification of one stream: `push` each chunk as it arrives; the answer
 * is final as soon as a sniffer matches, all decline, the byte cap is reached, `expire`
 * is called at the deadline, or `end` at the end of the stream. Memory is bounded by
 * `maxBytes`: bytes beyond it are not kept.
 */
export class StreamClassifier {
  readonly limits: ClassifierLimits;
  private readonly sniffers: readonly Sniffer[];
  private readonly destinationPort: number | undefined;
  private buffer: Buffer;
  private length = 0;
  private result: Classification | null = null;
  private readonly startedAt: number;

  constructor(options: ClassifierOptions & { destinationPort?: number; now?: number } = {}) {
    this.limits = classifierLimits(options);
    this.sniffers = options.sniffers ?? DEFAULT_SNIFFERS;
    this.destinationPort = options.destinationPort;
    this.buffer = Buffer.alloc(0);
    this.startedAt = options.now ?? Date.now();
  }

  /** The final classification, or null while undecided. */
  get classification(): Classification | null {
    return this.result;
  }

  /** Bytes kept so far (at most `maxBytes`). */
  get bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  /** Milliseconds until the current wait ends: the server-first wait before any byte, the time limit after. */
  remainingMs(now = Date.now()): number {
    const wait = this.length === 0 ? Math.min(this.limits.serverFirstMs, this.limits.timeoutMs) : this.limits.timeoutMs;
    return Math.max(0, this.startedAt + wait - now);
  }

  /** Adds the next chunk of the stream; returns the classification once final, else null. */
  push(chunk: Uint8Array, now = Date.now()): Classification | null {
    if (this.result !== null) return this.result;
    const c = asBuffer(chunk);
    const room = this.limits.maxBytes - this.length;
    const take = Math.min(room, c.length);
    if (take > 0) {
      if (this.length + take > this.buffer.length) {
        // Grow geometrically up to the cap: a ClientHello in several segments copies little.
        const size = Math.min(this.limits.maxBytes, Math.max(this.length + take, this.buffer.length * 2, 2048));
        const next = Buffer.allocUnsafe(size);
        this.buffer.copy(next, 0, 0, this.length);
        this.buffer = next;
      }
      c.copy(this.buffer, this.length, 0, take);
      this.length += take;
    }
    const atCap = this.length >= this.limits.maxBytes;
    if (atCap) return this.finish();
    if (now - this.startedAt >= this.limits.timeoutMs) return this.finish();
    this.result = runSniffers(this.bytes, false, this.sniffers, this.destinationPort);
    return this.result;
  }

  /**
   * Reads the rest of a live connection's first bytes from `source` (by connection id) until
   * the answer is final: a match, the byte cap, the stream's end, or the current wait over.
   * Rejects when the source fails; the bytes pushed so far stay for a final answer by `end`.
   */
  async readFrom(source: MoreBytesSource, id: string): Promise<Classification> {
    while (this.result === null) {
      const deadline = Date.now() + this.remainingMs();
      const more = await source.readMore(id, this.length, this.limits.maxBytes, deadline);
      // The source answers with every byte from the start of the stream: the new ones follow ours.
      const grew = more !== null && more.bytes.length > this.length;
      if (grew) this.push(more.bytes.subarray(this.length));
      if (!grew || more.ended || Date.now() >= deadline) return this.finish();
    }
    return this.result;
  }

  /** The deadline passed: decide with what there is. */
  expire(): Classification {
    return this.finish();
  }

  /** The stream ended (or the caller gave up): decide with what there is. */
  end(): Classification {
    return this.finish();
  }

  private finish(): Classification {
    const result = this.result ?? runSniffers(this.bytes, true, this.sniffers, this.destinationPort)!;
    this.result = result;
    return result;
  }
}

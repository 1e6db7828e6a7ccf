import { TrafficError } from "../errors";
import { sniffDnsDatagram } from "./dns";
import type { FingerprintSet } from "./fingerprint";
import { QuicInitialReader } from "./quic";
import { Classification, NO, SniffVerdict } from "./types";

/** Limits of one UDP session's classification. */
export interface DatagramClassifierOptions {
  /**
   * Client datagrams examined at most (default 4): a post-quantum ClientHello spans two
   * Initials, and a retransmission or a Retry's restart may come between.
   */
  readonly maxDatagrams?: number;
  /** Fingerprints of a QUIC ClientHello to add to its fields (default `all`). */
  readonly fingerprints?: FingerprintSet;
}

const DEFAULT_MAX_DATAGRAMS = 4;
const MAX_MAX_DATAGRAMS = 64;

function maxDatagrams(options: DatagramClassifierOptions): number {
  const v = options.maxDatagrams;
  if (v === undefined) return DEFAULT_MAX_DATAGRAMS;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > MAX_MAX_DATAGRAMS) {
    throw new TrafficError("ERR_CLASSIFY_CONFIG", `maxDatagrams must be an integer from 1 to ${MAX_MAX_DATAGRAMS}`, "maxDatagrams");
  }
  return v;
}

function asBuffer(bytes: unknown): Buffer {
  if (Buffer.isBuffer(bytes)) return bytes;
  if (bytes instanceof Uint8Array) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  throw new TrafficError("ERR_CLASSIFY_INPUT", "expected a Buffer or Uint8Array holding one datagram", "datagram");
}

/**
 * Classification of one UDP session from its first client-to-server datagrams: `push`
 * each datagram; the answer is `quic` (with the TLS ClientHello fields from its Initial
 * packets), `dns`, `unknown`, or at the datagram cap or `end` a QUIC session whose
 * ClientHello never completed (`quic`, confidence 0.5, version only) or `incomplete`.
 */
export class DatagramClassifier {
  readonly maxDatagrams: number;
  // Made at the first long header packet: most UDP sessions are not QUIC.
  private quic: QuicInitialReader | null = null;
  private count = 0;
  private bytes = 0;
  private result: Classification | null = null;
  private readonly fingerprints: FingerprintSet;

  constructor(options: DatagramClassifierOptions = {}) {
    this.maxDatagrams = maxDatagrams(options);
    this.fingerprints = options.fingerprints ?? "all";
  }

  /** The final classification, or null while undecided. */
  get classification(): Classification | null {
    return this.result;
  }

  /** Adds the next client datagram; returns the classification once final, else null. */
  push(datagram: Uint8Array): Classification | null {
    if (this.result !== null) return this.result;
    const b = asBuffer(datagram);
    this.count++;
    this.bytes += b.length;
    if (this.quic === null && b.length > 0 && (b[0]! & 0x80) !== 0) this.quic = new QuicInitialReader(this.fingerprints);
    const q = this.quic === null ? NO : this.quic.push(b);
    if (q.kind === "match") return this.decide(q);
    if (q.kind === "more") return this.count >= this.maxDatagrams ? this.end() : null;
    // QUIC said no, so no Initial was ever read: the session may be DNS.
    return this.decide(sniffDnsDatagram(b));
  }

  /** No more datagrams will be examined: decide with what there is. */
  end(): Classification {
    if (this.result !== null) return this.result;
    if (this.count === 0) return (this.result = { protocol: "incomplete", confidence: 0, fields: { candidates: ["quic", "dns"] }, bytes: 0 });
    return this.decide(this.quic === null ? NO : this.quic.final());
  }

  private decide(v: SniffVerdict | null): Classification {
    this.result =
      v !== null && v.kind === "match"
        ? { protocol: v.protocol, confidence: v.confidence, fields: v.fields, bytes: this.bytes }
        : { protocol: "unknown", confidence: 0, fields: {}, bytes: this.bytes };
    return this.result;
  }
}

/** Classifies a UDP session's first client datagrams in one call, treating them as all there is. */
export function classifyDatagrams(datagrams: readonly Uint8Array[], options: DatagramClassifierOptions = {}): Classification {
  const c = new DatagramClassifier(options);
  for (const d of datagrams) {
    const r = c.push(d);
    if (r !== null) return r;
  }
  return c.end();
}

import { latin1, lowerAscii, u16, u24 } from "./bytes";
import {
  FingerprintSet,
  HELLO_ALPN,
  HELLO_ALPN_ENDS,
  HELLO_CIPHERS_END,
  HELLO_CIPHERS_START,
  HELLO_EXTENSIONS_END,
  HELLO_EXTENSIONS_START,
  HELLO_FLAGS,
  HELLO_GROUPS_END,
  HELLO_GROUPS_START,
  HELLO_LEGACY_VERSION,
  HELLO_MAX_VERSION,
  HELLO_POINT_FORMATS_END,
  HELLO_POINT_FORMATS_START,
  HELLO_QUIC,
  HELLO_SIG_ALGS_END,
  HELLO_SIG_ALGS_START,
  HELLO_SNI,
  helloFingerprints,
  HelloTransport,
  isGrease,
  resetHelloShape,
} from "./fingerprint";
import { ClassificationFields, match, MORE, NO, Sniffer, SniffVerdict } from "./types";

// RFC 8446 5.1: a TLSPlaintext fragment is at most 2^14 bytes.
const MAX_RECORD = 16384;
// A ClientHello bigger than this is not worth waiting for (Envoy's tls_inspector uses the same cap).
const MAX_CLIENT_HELLO = 16384;
const HANDSHAKE = 0x16;
const CLIENT_HELLO = 1;

const EXT_SERVER_NAME = 0;
const EXT_SUPPORTED_GROUPS = 10;
const EXT_EC_POINT_FORMATS = 11;
const EXT_SIGNATURE_ALGORITHMS = 13;
const EXT_ALPN = 16;
const EXT_SUPPORTED_VERSIONS = 43;
const EXT_KEY_SHARE = 51;
// draft-ietf-tls-esni: encrypted_client_hello.
const EXT_ECH = 0xfe0d;

/** Hybrid post-quantum key share groups (X25519MLKEM768 and relatives, the Kyber drafts). */
const PQ_GROUPS = new Set([0x11eb, 0x11ec, 0x11ed, 0x6399, 0x639a]);

/** Name of a TLS protocol version number. */
export function tlsVersionName(v: number): string {
  switch (v) {
    case 0x0304:
      return "TLS1.3";
    case 0x0303:
      return "TLS1.2";
    case 0x0302:
      return "TLS1.1";
    case 0x0301:
      return "TLS1.0";
    case 0x0300:
      return "SSL3.0";
    default:
      return `0x${v.toString(16).padStart(4, "0")}`;
  }
}

/**
 * Parses a complete ClientHello body in b[start, end), with its JA4 (`transport` is its
 * first character) and JA3 fingerprints (`fingerprints`: true or `all`; `ja4` alone; false
 * or `none` for neither, which costs nothing). Returns null when
 * the structure is broken: any length that points outside its parent makes the bytes "not TLS".
 */
export function parseClientHello(b: Buffer, start: number, end: number, transport: HelloTransport = "t", fingerprints: boolean | FingerprintSet = true): ClassificationFields | null {
  let p = start;
  if (p + 38 > end) return null;
  const legacyVersion = u16(b, p);
  if (legacyVersion < 0x0300 || legacyVersion > 0x0304) return null;
  const shape = resetHelloShape(fingerprints !== false && fingerprints !== "none");
  shape[HELLO_LEGACY_VERSION] = legacyVersion;
  let flags = transport === "q" ? HELLO_QUIC : 0;
  let maxVersion = 0;
  p += 34; // version + random
  const sid = b[p]!;
  if (sid > 32) return null;
  p += 1 + sid;
  if (p + 2 > end) return null;
  const cipherLen = u16(b, p);
  if (cipherLen < 2 || (cipherLen & 1) !== 0) return null;
  shape[HELLO_CIPHERS_START] = p + 2;
  shape[HELLO_CIPHERS_END] = Math.min(p + 2 + cipherLen, end);
  p += 2 + cipherLen;
  if (p + 1 > end) return null;
  const compLen = b[p]!;
  if (compLen < 1) return null;
  p += 1 + compLen;
  if (p > end) return null;
  // The fields are gathered in locals and the object made at the end, fingerprints first:
  // its layout then depends on which fields the hello has, never on the order they came
  // in, which keeps the stores into it fast.
  let sni: string | undefined;
  let alpn: string[] | undefined;
  let postQuantum = false;
  let ech = false;
  let versions: string[] | null = null;
  if (p < end) {
    if (p + 2 > end) return null;
    const extEnd = p + 2 + u16(b, p);
    if (extEnd > end) return null;
    p += 2;
    shape[HELLO_EXTENSIONS_START] = p;
    shape[HELLO_EXTENSIONS_END] = extEnd;
    while (p < extEnd) {
      if (p + 4 > extEnd) return null;
      const type = u16(b, p);
      const len = u16(b, p + 2);
      const body = p + 4;
      const bodyEnd = body + len;
      if (bodyEnd > extEnd) return null;
      switch (type) {
        case EXT_SERVER_NAME: {
          flags |= HELLO_SNI;
          if (len === 0) break; // a server's empty acknowledgement; harmless here
          if (len < 2 || body + 2 + u16(b, body) !== bodyEnd) return null;
          let q = body + 2;
          while (q < bodyEnd) {
            if (q + 3 > bodyEnd) return null;
            const nameType = b[q]!;
            const nameLen = u16(b, q + 1);
            if (q + 3 + nameLen > bodyEnd) return null;
            if (nameType === 0 && sni === undefined && nameLen > 0) {
              sni = lowerAscii(latin1(b, q + 3, q + 3 + nameLen));
            }
            q += 3 + nameLen;
          }
          break;
        }
        case EXT_ALPN: {
          if (len < 2 || body + 2 + u16(b, body) !== bodyEnd) return null;
          const values: string[] = [];
          let q = body + 2;
          while (q < bodyEnd) {
            const l = b[q]!;
            if (l === 0 || q + 1 + l > bodyEnd) return null;
            if (values.length === 0) {
              flags |= HELLO_ALPN;
              shape[HELLO_ALPN_ENDS] = (b[q + 1]! << 8) | b[q + l]!;
            }
            values.push(latin1(b, q + 1, q + 1 + l));
            q += 1 + l;
          }
          alpn = values;
          break;
        }
        case EXT_SUPPORTED_VERSIONS: {
          if (len < 1 || body + 1 + b[body]! !== bodyEnd || (b[body]! & 1) !== 0) return null;
          versions = [];
          for (let q = body + 1; q < bodyEnd; q += 2) {
            const v = u16(b, q);
            if (isGrease(v)) continue;
            versions.push(tlsVersionName(v));
            if (v > maxVersion) maxVersion = v;
          }
          break;
        }
        case EXT_KEY_SHARE: {
          if (len < 2 || body + 2 + u16(b, body) !== bodyEnd) return null;
          let q = body + 2;
          while (q < bodyEnd) {
            if (q + 4 > bodyEnd) return null;
            if (PQ_GROUPS.has(u16(b, q))) postQuantum = true;
            q += 4 + u16(b, q + 2);
          }
          if (q !== bodyEnd) return null;
          break;
        }
        case EXT_ECH:
          ech = true;
          break;
        case EXT_SIGNATURE_ALGORITHMS:
        case EXT_SUPPORTED_GROUPS:
          // Both are a 16-bit length and 16-bit code points (RFC 8446 4.2.3, 4.2.7). A
          // malformed list is only left out of the fingerprints: the hello stays TLS.
          if (len < 2 || body + 2 + u16(b, body) !== bodyEnd || (len & 1) !== 0) break;
          if (type === EXT_SIGNATURE_ALGORITHMS) {
            shape[HELLO_SIG_ALGS_START] = body + 2;
            shape[HELLO_SIG_ALGS_END] = bodyEnd;
          } else {
            shape[HELLO_GROUPS_START] = body + 2;
            shape[HELLO_GROUPS_END] = bodyEnd;
          }
          break;
        case EXT_EC_POINT_FORMATS:
          if (len < 1 || body + 1 + b[body]! !== bodyEnd) break;
          shape[HELLO_POINT_FORMATS_START] = body + 1;
          shape[HELLO_POINT_FORMATS_END] = bodyEnd;
          break;
        default:
          break;
      }
      p = bodyEnd;
    }
    if (p !== extEnd) return null;
  }
  shape[HELLO_FLAGS] = flags;
  shape[HELLO_MAX_VERSION] = maxVersion;
  const set = fingerprints === true ? "all" : fingerprints === false ? "none" : fingerprints;
  let fields: ClassificationFields;
  if (set === "none") fields = {};
  else {
    const found = helloFingerprints(b, shape, transport, set);
    fields = set === "all" ? { ja4: found.ja4, ja3: found.ja3, ja3Hash: found.ja3Hash } : { ja4: found.ja4 };
  }
  fields.tlsVersions = versions ?? [tlsVersionName(legacyVersion)];
  if (sni !== undefined) fields.sni = sni;
  if (alpn !== undefined) {
    let https = false;
    for (let i = 0; i < alpn.length; i++) {
      const a = alpn[i]!;
      if (a === "h2" || a === "h3" || a.startsWith("http/1")) https = true;
    }
    fields.alpn = alpn;
    fields.https = https;
  }
  if (postQuantum) fields.postQuantum = true;
  if (ech) fields.ech = true;
  return fields;
}

function checkRecordHeader(b: Buffer, at: number): SniffVerdict | null {
  const n = b.length - at;
  if (n >= 1 && b[at] !== HANDSHAKE) return NO;
  if (n >= 2 && b[at + 1] !== 3) return NO;
  if (n >= 3 && b[at + 2]! > 4) return NO;
  if (n >= 5) {
    const len = u16(b, at + 3);
    if (len === 0 || len > MAX_RECORD) return NO;
  }
  return n >= 5 ? null : MORE;
}

function verdictFor(b: Buffer, start: number, end: number, fingerprints: FingerprintSet): SniffVerdict {
  const fields = parseClientHello(b, start, end, "t", fingerprints);
  return fields === null ? NO : match("tls", 1, fields);
}

/**
 * TLS: a ClientHello handshake message, possibly spread over several records (large
 * post-quantum key shares) and arriving over several TCP segments.
 */
export function sniffTls(b: Buffer, fingerprints: FingerprintSet = "all"): SniffVerdict {
  const head = checkRecordHeader(b, 0);
  if (head !== null) return head;
  const n = b.length;
  const recLen = u16(b, 3);
  if (n >= 6 && b[5] !== CLIENT_HELLO) return NO;
  if (n < 9) return recLen < 4 && n >= 5 + recLen ? gather(b, fingerprints) : MORE;
  const hsLen = u24(b, 6);
  if (hsLen < 38 || hsLen > MAX_CLIENT_HELLO) return NO;
  // The common case: the whole ClientHello in the first record, read in place.
  if (recLen >= hsLen + 4) {
    if (n < 9 + hsLen) return MORE;
    return verdictFor(b, 9, 9 + hsLen, fingerprints);
  }
  return gather(b, fingerprints);
}

// Reassembles a handshake message from consecutive handshake records.
function gather(b: Buffer, fingerprints: FingerprintSet): SniffVerdict {
  const n = b.length;
  let at = 0;
  let have = 0;
  let total = -1;
  const parts: Array<[number, number]> = [];
  while (at < n) {
    const head = checkRecordHeader(b, at);
    if (head !== null) return head;
    const len = u16(b, at + 3);
    const start = at + 5;
    const end = Math.min(start + len, n);
    parts.push([start, end]);
    have += end - start;
    if (total < 0 && have >= 4) {
      const hs = Buffer.concat(parts.map(([s, e]) => b.subarray(s, e)), 4);
      if (hs[0] !== CLIENT_HELLO) return NO;
      const hsLen = u24(hs, 1);
      if (hsLen < 38 || hsLen > MAX_CLIENT_HELLO) return NO;
      total = hsLen + 4;
    }
    if (total >= 0 && have >= total) {
      const hs = Buffer.concat(parts.map(([s, e]) => b.subarray(s, e)), total);
      return verdictFor(hs, 4, total, fingerprints);
    }
    if (end < start + len) return MORE;
    at = start + len;
  }
  return MORE;
}

/** The TLS sniffer, with all fingerprints. */
export const tlsSniffer: Sniffer = { protocol: "tls", sniff: (b) => sniffTls(b) };

// Each its own function, also for `all`: V8 optimises a sniffer for the inputs it has seen,
// and the default chain's TLS sniffer sees every stream, not only ClientHellos.
const TLS_SNIFFERS: Record<FingerprintSet, Sniffer> = {
  all: { protocol: "tls", sniff: (b) => sniffTls(b, "all") },
  ja4: { protocol: "tls", sniff: (b) => sniffTls(b, "ja4") },
  none: { protocol: "tls", sniff: (b) => sniffTls(b, "none") },
};

/** The TLS sniffer that adds only the given fingerprints to its fields. */
export function tlsSnifferWith(fingerprints: FingerprintSet): Sniffer {
  return TLS_SNIFFERS[fingerprints];
}

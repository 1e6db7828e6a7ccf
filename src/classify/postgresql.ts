import { i32, isUtf8Text, utf8 } from "./bytes";
import { ClassificationFields, match, MORE, NO, Sniffer, SniffVerdict } from "./types";

// PostgreSQL protocol (its docs, "Message Formats"): request codes in the version field.
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
// The server's MAX_STARTUP_PACKET_LENGTH.
const MAX_STARTUP = 10000;

/**
 * PostgreSQL: the first message has no type byte: a length, then a protocol version
 * (3.x StartupMessage) or a request code (SSLRequest, GSSENCRequest, CancelRequest).
 * A StartupMessage is read to its declared end: name/value pairs closed by an empty name.
 */
export function sniffPostgresql(b: Buffer): SniffVerdict {
  const n = b.length;
  // Lengths below 2^24 begin with a zero byte; rejecting others early keeps this cheap.
  if (n === 0) return MORE;
  if (b[0] !== 0) return NO;
  if (n < 8) return MORE;
  const len = i32(b, 0);
  const code = i32(b, 4);
  if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
    return len === 8 ? match("postgresql", 1, { pgRequest: code === SSL_REQUEST ? "ssl" : "gssenc" }) : NO;
  }
  if (code === CANCEL_REQUEST) {
    if (len !== 16) return NO;
    return n < 16 ? MORE : match("postgresql", 1, { pgRequest: "cancel" });
  }
  if (code >>> 16 !== 3 || (code & 0xffff) > 2) return NO;
  if (len < 9 || len > MAX_STARTUP) return NO;
  // Validate what has arrived so far, then wait for the declared end.
  const end = Math.min(n, len);
  const fields: ClassificationFields = { pgRequest: "startup" };
  let p = 8;
  let key: string | null = null;
  while (p < end) {
    const z = b.indexOf(0, p);
    if (z < 0 || z >= end) break;
    if (!isUtf8Text(b, p, z)) return NO;
    if (key === null) {
      if (z === p) {
        // The terminating empty name must be the last byte of the message.
        if (z !== len - 1) return NO;
        return match("postgresql", 1, fields);
      }
      key = utf8(b, p, z);
    } else {
      const value = utf8(b, p, z);
      if (key === "user") fields.user = value;
      else if (key === "database") fields.database = value;
      else if (key === "application_name") fields.applicationName = value;
      key = null;
    }
    p = z + 1;
  }
  if (n >= len) return NO; // the declared length ended inside a pair
  return MORE;
}

/** The PostgreSQL sniffer. */
export const postgresqlSniffer: Sniffer = { protocol: "postgresql", sniff: sniffPostgresql };

import { ascii, lowerAscii, startsWith, u24 } from "./bytes";
import { decodeHeaderBlock } from "./hpack";
import { ClassificationFields, match, MORE, NO, Sniffer, SniffVerdict } from "./types";

// RFC 9113 3.4: the client connection preface.
const PREFACE = ascii("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const FRAME_HEADER = 9;
const HEADERS = 0x1;
const CONTINUATION = 0x9;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
// Frames before the first HEADERS are SETTINGS, WINDOW_UPDATE, PRIORITY: a handful.
const MAX_FRAMES = 32;
// The default SETTINGS_MAX_FRAME_SIZE a client must respect before the server's SETTINGS.
const MAX_FRAME = 16384;

/** Reads gRPC service and method from a path "/package.Service/Method". */
function grpcParts(path: string, fields: ClassificationFields): void {
  const slash = path.indexOf("/", 1);
  if (path.charCodeAt(0) !== 47 || slash < 0) return;
  fields.grpcService = path.slice(1, slash);
  fields.grpcMethod = path.slice(slash + 1);
}

// The preface alone already proves HTTP/2; what follows only adds fields.
const PREFACE_ONLY = 1;

const WANTED: ReadonlySet<string> = new Set([":method", ":path", ":authority", "host", "content-type"]);

function fromHeaderBlock(block: Uint8Array, start: number, end: number): SniffVerdict {
  const headers = decodeHeaderBlock(block, start, end, WANTED);
  const fields: ClassificationFields = { httpVersion: "2" };
  if (headers === null) return match("http2", PREFACE_ONLY, fields);
  for (const h of headers) {
    switch (h.name) {
      case ":method":
        fields.method = h.value;
        break;
      case ":path":
        fields.path = h.value;
        break;
      case ":authority":
        fields.host = lowerAscii(h.value);
        break;
      case "host":
        if (fields.host === undefined) fields.host = lowerAscii(h.value);
        break;
      case "content-type":
        fields.contentType = h.value;
        break;
      default:
        break;
    }
  }
  // gRPC (its PROTOCOL-HTTP2 doc): content-type application/grpc, optionally +proto, +json, ….
  const ct = fields.contentType;
  if (ct !== undefined && ct.startsWith("application/grpc") && (ct.length === 16 || ct.charCodeAt(16) === 43 || ct.charCodeAt(16) === 59)) {
    if (fields.path !== undefined) grpcParts(fields.path, fields);
    return match("grpc", 1, fields);
  }
  return match("http2", 1, fields);
}

/**
 * HTTP/2 with prior knowledge: the 24-byte preface, then frames up to the first HEADERS
 * (with its CONTINUATIONs), whose HPACK block gives :method, :path, :authority and
 * content-type. `application/grpc` content makes it gRPC, with service and method.
 */
export function sniffHttp2(b: Buffer, final: boolean): SniffVerdict {
  const pre = startsWith(b, 0, PREFACE);
  if (pre < 0) return NO;
  if (pre === 0) return MORE;
  let p = PREFACE.length;
  const n = b.length;
  const partial = (): SniffVerdict => (final ? match("http2", PREFACE_ONLY, { httpVersion: "2" }) : MORE);
  for (let frames = 0; frames < MAX_FRAMES; frames++) {
    if (p + FRAME_HEADER > n) return partial();
    const len = u24(b, p);
    const type = b[p + 3]!;
    const flags = b[p + 4]!;
    if (len > MAX_FRAME) return match("http2", PREFACE_ONLY, { httpVersion: "2" });
    if (type !== HEADERS) {
      p += FRAME_HEADER + len;
      continue;
    }
    const stream = ((b[p + 5]! & 0x7f) << 24) | (b[p + 6]! << 16) | (b[p + 7]! << 8) | b[p + 8]!;
    let start = p + FRAME_HEADER;
    let end = start + len;
    if (end > n) return partial();
    if (flags & PADDED) {
      const pad = b[start]!;
      start++;
      end -= pad;
    }
    if (flags & PRIORITY) start += 5;
    if (start > end) return match("http2", PREFACE_ONLY, { httpVersion: "2" });
    if (flags & END_HEADERS) return fromHeaderBlock(b, start, end);
    // RFC 9113 6.10: CONTINUATION frames of the same stream follow immediately.
    const parts: Buffer[] = [b.subarray(start, end)];
    let q = p + FRAME_HEADER + len;
    for (;;) {
      if (q + FRAME_HEADER > n) return partial();
      const clen = u24(b, q);
      if (b[q + 3] !== CONTINUATION || clen > MAX_FRAME || (((b[q + 5]! & 0x7f) << 24) | u24(b, q + 6)) !== stream) {
        return match("http2", PREFACE_ONLY, { httpVersion: "2" });
      }
      if (q + FRAME_HEADER + clen > n) return partial();
      parts.push(b.subarray(q + FRAME_HEADER, q + FRAME_HEADER + clen));
      if (b[q + 4]! & END_HEADERS) {
        const block = Buffer.concat(parts);
        return fromHeaderBlock(block, 0, block.length);
      }
      q += FRAME_HEADER + clen;
    }
  }
  return match("http2", PREFACE_ONLY, { httpVersion: "2" });
}

/** The HTTP/2 (and gRPC) sniffer. */
export const http2Sniffer: Sniffer = { protocol: "http2", sniff: sniffHttp2 };

import { i32, isPrintableAscii, isUtf8Text, u16, utf8 } from "./bytes";
import { ClassificationFields, match, MORE, NO, Sniffer, SniffVerdict } from "./types";

// Kafka's default socket.request.max.bytes.
const MAX_REQUEST = 100 * 1024 * 1024;
// Requests up to this size are read to their declared end before they count as Kafka.
const WAIT_LIMIT = 16384;
// Highest request api key in current Kafka releases is below this; leave headroom.
const MAX_API_KEY = 100;
const MAX_API_VERSION = 40;

/** Names of the request api keys a client typically opens a connection with. */
const API_NAMES: Readonly<Record<number, string>> = {
  0: "Produce",
  1: "Fetch",
  2: "ListOffsets",
  3: "Metadata",
  8: "OffsetCommit",
  9: "OffsetFetch",
  10: "FindCoordinator",
  11: "JoinGroup",
  12: "Heartbeat",
  13: "LeaveGroup",
  14: "SyncGroup",
  17: "SaslHandshake",
  18: "ApiVersions",
  19: "CreateTopics",
  20: "DeleteTopics",
  22: "InitProducerId",
  32: "DescribeConfigs",
  36: "SaslAuthenticate",
};

function hasControl(b: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (b[i]! < 0x20 || b[i] === 0x7f) return true;
  return false;
}

/**
 * Kafka: a size-prefixed request with header v1/v2: api key, api version, correlation
 * id and a nullable client id string. Small requests are read to their declared size.
 */
export function sniffKafka(b: Buffer, final: boolean): SniffVerdict {
  const n = b.length;
  if (n === 0) return MORE;
  if (b[0] !== 0) return NO; // sizes stay far below 2^24 for a first request
  if (n < 4) return MORE;
  const size = i32(b, 0);
  if (size < 10 || size > MAX_REQUEST) return NO;
  if (n < 6) return MORE;
  const apiKey = u16(b, 4);
  if (apiKey > MAX_API_KEY) return NO;
  if (n < 8) return MORE;
  const apiVersion = u16(b, 6);
  if (apiVersion > MAX_API_VERSION) return NO;
  if (n < 14) return MORE;
  const correlationId = i32(b, 8);
  if (correlationId < 0) return NO;
  const idLen = u16(b, 12);
  const fields: ClassificationFields = { apiKey, apiVersion, correlationId };
  const name = API_NAMES[apiKey];
  if (name !== undefined) fields.apiName = name;
  if (idLen !== 0xffff) {
    if (14 + idLen > size + 4) return NO;
    if (n < 14 + idLen) return MORE;
    // Client ids are names ("rdkafka", "console-producer"): no control characters.
    if (!isUtf8Text(b, 14, 14 + idLen) || hasControl(b, 14, 14 + idLen)) return NO;
    fields.clientId = utf8(b, 14, 14 + idLen);
  }
  if (size + 4 <= WAIT_LIMIT) {
    if (n < size + 4) return final ? match("kafka", 0.7, fields) : MORE;
    return match("kafka", 0.9, fields);
  }
  // A big first request cannot be read whole: insist on a printable client id, which
  // a length-prefixed message of another protocol rarely has in this place.
  if (idLen === 0xffff || idLen === 0 || !isPrintableAscii(b, 14, 14 + idLen)) return NO;
  return match("kafka", 0.7, fields);
}

/** The Kafka sniffer. */
export const kafkaSniffer: Sniffer = { protocol: "kafka", sniff: sniffKafka };

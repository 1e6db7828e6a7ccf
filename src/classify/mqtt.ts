import { isUtf8Text, u16, utf8 } from "./bytes";
import { ClassificationFields, match, MORE, NO, Sniffer, SniffVerdict } from "./types";

const CONNECT = 0x10;
// Packets longer than this are judged on their variable header and client id alone.
const WAIT_LIMIT = 16384;

/** Reads an MQTT variable byte integer at `p`: [value, bytes used], [-1, 0] when cut short, null when invalid. */
function varint(b: Buffer, p: number): [number, number] | null {
  let value = 0;
  for (let k = 0; k < 4; k++) {
    if (p + k >= b.length) return [-1, 0];
    const c = b[p + k]!;
    value += (c & 0x7f) * 128 ** k;
    if ((c & 0x80) === 0) return [value, k + 1];
  }
  return null;
}

/**
 * MQTT: a CONNECT packet (3.1 "MQIsdp" level 3, 3.1.1 "MQTT" level 4, 5.0 level 5).
 * Waits for the whole packet as its remaining length declares (up to 16 KiB) so a
 * truncated or padded CONNECT is not taken for MQTT.
 */
export function sniffMqtt(b: Buffer, final: boolean): SniffVerdict {
  const n = b.length;
  if (n === 0) return MORE;
  if (b[0] !== CONNECT) return NO;
  const rl = varint(b, 1);
  if (rl === null) return NO;
  if (rl[0] < 0) return MORE;
  const remaining = rl[0];
  const p0 = 1 + rl[1];
  const total = p0 + remaining;
  if (remaining < 12) return NO;
  // Variable header: protocol name, level, flags, keep alive.
  if (n < p0 + 2) return MORE;
  const nameLen = u16(b, p0);
  let version: string;
  let level: number;
  if (nameLen === 4) {
    if (n < p0 + 7) return MORE;
    if (b[p0 + 2] !== 0x4d || b[p0 + 3] !== 0x51 || b[p0 + 4] !== 0x54 || b[p0 + 5] !== 0x54) return NO;
    level = b[p0 + 6]!;
    if (level === 4) version = "3.1.1";
    else if (level === 5) version = "5.0";
    else return NO;
  } else if (nameLen === 6) {
    if (n < p0 + 9) return MORE;
    if (b.toString("latin1", p0 + 2, p0 + 8) !== "MQIsdp") return NO;
    level = b[p0 + 8]!;
    if (level !== 3) return NO;
    version = "3.1";
  } else return NO;
  let p = p0 + 2 + nameLen + 1;
  if (n < p + 3) return MORE;
  const flags = b[p]!;
  if ((flags & 0x01) !== 0) return NO; // reserved bit
  if ((flags & 0x04) === 0 && (flags & 0x38) !== 0) return NO; // will QoS/retain without a will
  if ((flags & 0x18) === 0x18) return NO; // will QoS 3
  p += 3;
  if (level === 5) {
    const props = varint(b, p);
    if (props === null) return NO;
    if (props[0] < 0) return MORE;
    p += props[1] + props[0];
    if (p > total) return NO;
  }
  if (n < p + 2) return n >= total ? NO : MORE;
  const idLen = u16(b, p);
  if (p + 2 + idLen > total) return NO;
  if (n < p + 2 + idLen) return MORE;
  if (!isUtf8Text(b, p + 2, p + 2 + idLen)) return NO;
  const fields: ClassificationFields = { mqttVersion: version, clientId: utf8(b, p + 2, p + 2 + idLen) };
  if (total <= WAIT_LIMIT && n < total) return final ? match("mqtt", 0.8, fields) : MORE;
  return match("mqtt", total <= WAIT_LIMIT ? 1 : 0.8, fields);
}

/** The MQTT sniffer. */
export const mqttSniffer: Sniffer = { protocol: "mqtt", sniff: sniffMqtt };

import { i32 } from "./bytes";
import { match, MORE, NO, Sniffer, SniffVerdict } from "./types";

const HEADER = 16;

/**
 * Dubbo (the Dubbo 2 protocol): a 16-byte header with magic 0xdabb, a flag byte (request,
 * two-way, event, serialization id), a status byte, an 8-byte request id and a body length.
 */
export function sniffDubbo(b: Buffer): SniffVerdict {
  const n = b.length;
  if (n >= 1 && b[0] !== 0xda) return NO;
  if (n >= 2 && b[1] !== 0xbb) return NO;
  if (n >= 3) {
    const flag = b[2]!;
    if ((flag & 0x80) === 0 || (flag & 0x1f) === 0) return NO; // a client sends requests
  }
  if (n < HEADER) return MORE;
  if (i32(b, 12) < 0) return NO;
  const flag = b[2]!;
  return match("dubbo", 1, { serialization: flag & 0x1f, twoWay: (flag & 0x40) !== 0, event: (flag & 0x20) !== 0 });
}

/** The Dubbo sniffer. */
export const dubboSniffer: Sniffer = { protocol: "dubbo", sniff: sniffDubbo };

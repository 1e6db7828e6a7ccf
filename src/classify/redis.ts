import { latin1 } from "./bytes";
import { match, MORE, NO, Sniffer, SniffVerdict } from "./types";

const CR = 0x0d;
const LF = 0x0a;
// Longest Redis command names are about 30 characters; leave room for module commands.
const MAX_COMMAND = 64;

/** Reads a RESP length line ("123\r\n") at `p`: [value, next offset], MORE-ish -1, or null when invalid. */
function lengthLine(b: Buffer, p: number, maxDigits: number): [number, number] | -1 | null {
  let v = 0;
  let digits = 0;
  for (let i = p; i < b.length; i++) {
    const c = b[i]!;
    if (c >= 0x30 && c <= 0x39) {
      if (++digits > maxDigits) return null;
      v = v * 10 + (c - 0x30);
    } else if (c === CR) {
      if (digits === 0) return null;
      if (i + 1 >= b.length) return -1;
      return b[i + 1] === LF ? [v, i + 2] : null;
    } else return null;
  }
  return -1;
}

/**
 * Redis: a RESP array of bulk strings (`*N\r\n$len\r\nCOMMAND\r\n…`), as redis-cli and
 * every client library send commands. The first element is the command name.
 */
export function sniffRedis(b: Buffer): SniffVerdict {
  const n = b.length;
  if (n === 0) return MORE;
  if (b[0] !== 0x2a) return NO; // '*'
  const count = lengthLine(b, 1, 7);
  if (count === null) return NO;
  if (count === -1) return MORE;
  if (count[0] < 1) return NO;
  let p = count[1];
  if (p >= n) return MORE;
  if (b[p] !== 0x24) return NO; // '$'
  const len = lengthLine(b, p + 1, 3);
  if (len === null) return NO;
  if (len === -1) return MORE;
  if (len[0] < 1 || len[0] > MAX_COMMAND) return NO;
  p = len[1];
  const end = p + len[0];
  for (let i = p; i < end && i < n; i++) {
    const c = b[i]! | 0x20;
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || b[i] === 0x2d || b[i] === 0x5f || b[i] === 0x7c || b[i] === 0x2e)) return NO;
  }
  if (n < end + 2) return MORE;
  if (b[end] !== CR || b[end + 1] !== LF) return NO;
  return match("redis", 1, { command: latin1(b, p, end).toUpperCase() });
}

/** The Redis sniffer. */
export const redisSniffer: Sniffer = { protocol: "redis", sniff: sniffRedis };

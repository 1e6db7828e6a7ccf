/** Small byte helpers shared by the sniffers; all bounds are the caller's to check. */

/** Big-endian unsigned 16-bit value at `i`. */
export function u16(b: Buffer, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}

/** Big-endian unsigned 24-bit value at `i`. */
export function u24(b: Buffer, i: number): number {
  return (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
}

/** Big-endian unsigned 32-bit value at `i`. */
export function u32(b: Buffer, i: number): number {
  return ((b[i]! << 24) >>> 0) + ((b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!);
}

/** Big-endian signed 32-bit value at `i`. */
export function i32(b: Buffer, i: number): number {
  return (b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!;
}

/**
 * Compares the bytes from `at` with `expected` as far as both go: `1` when all of
 * `expected` is there, `0` when the bytes so far are a prefix of it, `-1` on a mismatch.
 */
export function startsWith(b: Buffer, at: number, expected: Uint8Array): 1 | 0 | -1 {
  const n = Math.min(b.length - at, expected.length);
  for (let i = 0; i < n; i++) if (b[at + i] !== expected[i]) return -1;
  return n === expected.length ? 1 : 0;
}

/** True when bytes [start, end) are all visible ASCII (0x21-0x7e). */
export function isVisibleAscii(b: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = b[i]!;
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

/** True when bytes [start, end) are printable ASCII including space. */
export function isPrintableAscii(b: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = b[i]!;
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/** True when bytes [start, end) are valid UTF-8 without NUL (MQTT and Kafka strings). */
export function isUtf8Text(b: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = b[i]!;
    if (c === 0) return false;
    if (c < 0x80) continue;
    let extra: number;
    if (c >= 0xc2 && c <= 0xdf) extra = 1;
    else if (c >= 0xe0 && c <= 0xef) extra = 2;
    else if (c >= 0xf0 && c <= 0xf4) extra = 3;
    else return false;
    if (i + extra >= end) return false;
    for (let k = 1; k <= extra; k++) if ((b[i + k]! & 0xc0) !== 0x80) return false;
    i += extra;
  }
  return true;
}

// Buffer#latin1Slice skips toString's encoding lookup and argument checks: the fastest
// way to turn a few bytes into a string. Callers always pass in-range offsets.
type Latin1Slicer = { latin1Slice(start: number, end: number): string };

/** Bytes [start, end) as a latin1 string (one char per byte: never throws, no decoding cost). */
export function latin1(b: Buffer, start: number, end: number): string {
  return (b as unknown as Latin1Slicer).latin1Slice(start, end);
}

/** Bytes [start, end) as UTF-8 text. */
export function utf8(b: Buffer, start: number, end: number): string {
  return b.toString("utf8", start, end);
}

/** ASCII text of a literal, as bytes (for signatures compared on the hot path). */
export function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (ch) => ch.charCodeAt(0));
}

/** Lower-cases ASCII text only when needed (most names already are). */
export function lowerAscii(text: string): string {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 65 && c <= 90) return text.toLowerCase();
  }
  return text;
}

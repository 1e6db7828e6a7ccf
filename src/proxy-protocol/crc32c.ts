/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum that
 * PP2_TYPE_CRC32C carries (proxy-protocol.txt 2.2.3 refers to RFC 4960,
 * Appendix B). Table-driven, slicing by four bytes: PROXY headers are short,
 * so the table setup is paid once per process and the loop stays branch-free.
 */

const POLY = 0x82f63b78;

const TABLE = buildTable();

function buildTable(): Uint32Array {
  const t = new Uint32Array(256 * 4);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let s = 1; s < 4; s++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[s * 256 + n] = c >>> 0;
    }
  }
  return t;
}

/**
 * Continues a CRC32C over `data[start, end)`. `previous` is the result of an
 * earlier call (0 to start), so a checksum can be computed piecewise:
 * `crc32c(b, crc32c(a))` equals the checksum of `a` followed by `b`.
 */
export function crc32c(data: Uint8Array, previous = 0, start = 0, end = data.length): number {
  if (start < 0) start = 0;
  if (end > data.length) end = data.length;
  let crc = ~previous >>> 0;
  let i = start;
  const t = TABLE;
  for (; i + 4 <= end; i += 4) {
    crc ^= data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    crc =
      t[768 + (crc & 0xff)]! ^
      t[512 + ((crc >>> 8) & 0xff)]! ^
      t[256 + ((crc >>> 16) & 0xff)]! ^
      t[crc >>> 24]!;
  }
  for (; i < end; i++) crc = t[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

/** Continues a CRC32C over `count` zero bytes (the zeroed checksum field). */
export function crc32cZeros(count: number, previous = 0): number {
  let crc = ~previous >>> 0;
  for (let i = 0; i < count; i++) crc = TABLE[crc & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

/**
 * A small HPACK (RFC 7541) decoder for the first request's header block: enough to read
 * :method, :path, :authority and content-type. Every length is bounds-checked; a broken
 * block decodes to null, never an exception.
 */

// RFC 7541 Appendix A: the static table, 1-based.
const STATIC: ReadonlyArray<readonly [string, string]> = [
  ["", ""],
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

const STATIC_TABLE_SIZE = STATIC.length - 1;

// RFC 7541 Appendix B: code length in bits of symbols 0-256, one character each
// (code point minus 48). The code is canonical (codes of one length are consecutive in
// symbol order, shorter codes first), so the lengths alone rebuild it.
const CODE_LENGTHS =
  "=GLLLLLLLHNLLNLLLLLLLLNLLLLLLLLL6::<=68;::8;8666555666666678?6<:=67777777777777777777777878=C=>6?56565666577666567655677777?;>=LDFDDFFFGFGGGGGHGHHFGHGGGGEFGFGGHFEDFFGGEGFFHEFGGEEFEGFGGDFFFGFFGJJDCFGFIJJJKKJHICEJKKJKHEEJJLKKKDHDEFEEGFFIIHHJGJKJJKKKKKLKKKKKJN";
const EOS = 256;
const MAX_CODE = 30;

// Canonical decoding tables: for each length, the first code, how many codes, and where
// their symbols start in SYMBOLS.
const FIRST_CODE = new Int32Array(MAX_CODE + 1);
const COUNT = new Int32Array(MAX_CODE + 1);
const FIRST_INDEX = new Int32Array(MAX_CODE + 1);
const SYMBOLS = new Uint16Array(257);
(() => {
  const lengths = Array.from(CODE_LENGTHS, (ch) => ch.charCodeAt(0) - 48);
  const order = lengths.map((len, sym) => [len, sym] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let code = 0;
  let prevLen = order[0]![0];
  for (let k = 0; k < order.length; k++) {
    const [len, sym] = order[k]!;
    if (k > 0) code = (code + 1) << (len - prevLen);
    prevLen = len;
    if (COUNT[len] === 0) {
      FIRST_CODE[len] = code;
      FIRST_INDEX[len] = k;
    }
    COUNT[len]!++;
    SYMBOLS[k] = sym;
  }
})();

// Codes of at most 8 bits, looked up by the next 8 input bits: (symbol << 4) | length, 0 = longer code.
const FAST = new Uint16Array(256);
(() => {
  for (let len = 5; len <= 8; len++) {
    for (let k = 0; k < COUNT[len]!; k++) {
      const code = FIRST_CODE[len]! + k;
      const sym = SYMBOLS[FIRST_INDEX[len]! + k]!;
      const spread = 8 - len;
      for (let tail = 0; tail < 1 << spread; tail++) FAST[(code << spread) | tail] = (sym << 4) | len;
    }
  }
})();

/** Huffman code length of each symbol (0-256), for tests and encoders. */
export function huffmanCodeLengths(): number[] {
  return Array.from(CODE_LENGTHS, (ch) => ch.charCodeAt(0) - 48);
}

/** One symbol read bit by bit from absolute bit position `pos`: (symbol << 5) | length, or -1. */
function decodeOneSlow(b: Uint8Array, pos: number, endBit: number): number {
  let code = 0;
  for (let len = 1; len <= MAX_CODE && pos < endBit; len++, pos++) {
    code = code * 2 + ((b[pos >> 3]! >> (7 - (pos & 7))) & 1);
    const count = COUNT[len]!;
    if (count > 0) {
      const offset = code - FIRST_CODE[len]!;
      if (offset >= 0 && offset < count) return (SYMBOLS[FIRST_INDEX[len]! + offset]! << 5) | len;
    }
  }
  return -1;
}

// Decoded bytes are collected here, then turned into one string (strings never exceed the block).
let scratch = Buffer.allocUnsafe(4096);

/** Decodes Huffman-coded bytes b[start, end) to a latin1 string, or null when invalid. */
export function huffmanDecode(b: Uint8Array, start: number, end: number): string | null {
  // Every symbol takes at least 5 bits, so the output is at most 8/5 of the input.
  const room = Math.ceil(((end - start) * 8) / 5);
  if (room > scratch.length) scratch = Buffer.allocUnsafe(room);
  const out = scratch;
  let n = 0;
  let acc = 0; // pending bits, right-aligned; at most 31 of them
  let bits = 0;
  let i = start;
  for (;;) {
    // Refill to at least 8 pending bits (or to the end of the input).
    while (bits <= 23 && i < end) {
      acc = ((acc << 8) | b[i++]!) >>> 0;
      bits += 8;
    }
    if (bits === 0) break;
    let sym = -1;
    let len = 0;
    if (bits >= 8) {
      const e = FAST[(acc >>> (bits - 8)) & 0xff]!;
      if (e !== 0) {
        sym = e >> 4;
        len = e & 15;
      }
    }
    if (sym < 0) {
      const max = Math.min(bits, MAX_CODE);
      for (let l = 5; l <= max; l++) {
        const count = COUNT[l]!;
        if (count === 0) continue;
        const offset = ((acc >>> (bits - l)) & ((1 << l) - 1)) - FIRST_CODE[l]!;
        if (offset >= 0 && offset < count) {
          sym = SYMBOLS[FIRST_INDEX[l]! + offset]!;
          len = l;
          break;
        }
      }
      if (sym < 0 && i < end) {
        // A code longer than the pending bits (24 or more of them): read it bit by bit from
        // where it starts, then resume byte-wise after it. Only rare symbols get here.
        const at = (i - start) * 8 - bits;
        const one = decodeOneSlow(b, start * 8 + at, end * 8);
        if (one < 0) return null;
        sym = one >> 5;
        const after = at + (one & 31);
        i = start + (after >> 3);
        bits = 0;
        acc = 0;
        if ((after & 7) !== 0) {
          bits = 8 - (after & 7);
          acc = b[i++]! & ((1 << bits) - 1);
        }
        if (sym === EOS) return null;
        out[n++] = sym;
        continue;
      }
      if (sym < 0) {
        // RFC 7541 5.2: the tail is padding, fewer than 8 bits, all ones.
        if (bits > 7 || (acc & ((1 << bits) - 1)) !== (1 << bits) - 1) return null;
        break;
      }
    }
    if (sym === EOS) return null; // EOS inside a string is an error
    out[n++] = sym;
    bits -= len;
    acc = bits === 0 ? 0 : (acc & ((1 << bits) - 1)) >>> 0;
  }
  return (out as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(0, n);
}

/** A decoded header field. */
export interface HeaderField {
  readonly name: string;
  readonly value: string;
}

const DEFAULT_TABLE_SIZE = 4096;

/**
 * Decodes one header block b[start, end) with a fresh dynamic table (the first HEADERS
 * frame of a connection). Returns the fields in order, or null when the block is broken.
 * With `wanted`, only those names are returned and other values are skipped undecoded
 * (their lengths are still checked): a sniffer needs four headers, not the cookies.
 */
export function decodeHeaderBlock(b: Uint8Array, start: number, end: number, wanted?: ReadonlySet<string>): HeaderField[] | null {
  const out: HeaderField[] = [];
  const dynamic: HeaderField[] = [];
  let dynamicSize = 0;
  let maxSize = DEFAULT_TABLE_SIZE;
  let p = start;

  // RFC 7541 5.1 integers; returns -1 on overrun or on values beyond 2^28.
  const integer = (prefixBits: number): number => {
    const limit = (1 << prefixBits) - 1;
    let value = b[p]! & limit;
    p++;
    if (value < limit) return value;
    let shift = 0;
    for (;;) {
      if (p >= end || shift > 21) return -1;
      const c = b[p++]!;
      value += (c & 0x7f) * 2 ** shift;
      shift += 7;
      if ((c & 0x80) === 0) return value;
    }
  };
  const string = (skip: boolean): string | null => {
    if (p >= end) return null;
    const huffman = (b[p]! & 0x80) !== 0;
    const len = integer(7);
    if (len < 0 || p + len > end) return null;
    const s = skip ? "" : huffman ? huffmanDecode(b, p, p + len) : Buffer.from(b.buffer, b.byteOffset + p, len).toString("latin1");
    p += len;
    return s;
  };
  const entry = (index: number): HeaderField | null => {
    if (index >= 1 && index <= STATIC_TABLE_SIZE) {
      const [name, value] = STATIC[index]!;
      return { name, value };
    }
    return dynamic[index - STATIC_TABLE_SIZE - 1] ?? null;
  };
  const evict = (): void => {
    while (dynamicSize > maxSize && dynamic.length > 0) {
      const last = dynamic.pop()!;
      dynamicSize -= last.name.length + last.value.length + 32;
    }
  };

  while (p < end) {
    const c = b[p]!;
    if (c & 0x80) {
      const index = integer(7);
      const field = index > 0 ? entry(index) : null;
      if (field === null) return null;
      if (wanted === undefined || wanted.has(field.name)) out.push(field);
    } else if ((c & 0xe0) === 0x20) {
      // Dynamic table size update: may only shrink below the default here.
      const size = integer(5);
      if (size < 0 || size > DEFAULT_TABLE_SIZE) return null;
      maxSize = size;
      evict();
    } else {
      const indexing = (c & 0xc0) === 0x40;
      const index = integer(indexing ? 6 : 4);
      if (index < 0) return null;
      let name: string | null;
      if (index === 0) name = string(false);
      else name = entry(index)?.name ?? null;
      if (name === null) return null;
      const keep = wanted === undefined || wanted.has(name);
      const value = string(!keep);
      if (value === null) return null;
      const field = { name, value };
      if (keep) out.push(field);
      if (indexing) {
        // A skipped value counts as empty here, so the table may keep an entry a real
        // decoder would have evicted; that only accepts a reference a real encoder never makes.
        dynamic.unshift(field);
        dynamicSize += name.length + value.length + 32;
        evict();
      }
    }
  }
  return out;
}

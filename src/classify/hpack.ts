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

/** Number of static table entries. */
export const STATIC_TABLE_SIZE = STATIC.length - 1;

/** Name and value of static table entry `index` (1-based), for tests. */
export function staticEntry(index: number): readonly [string, string] | undefined {
  return index >= 1 && index <= STATIC_TABLE_SIZE ? STATIC[index] : undefined;
}

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

/** Huffman code length of each symbol (0-256), for tests and encoders. */
export function huffmanCodeLengths(): number[] {
  return Array.from(CODE_LENGTHS, (ch) => ch.charCodeAt(0) - 48);
}

/** Decodes Huffman-coded bytes b[start, end) to a latin1 string, or null when invalid. */
export function huffmanDecode(b: Uint8Array, start: number, end: number): string | null {
  let out = "";
  let code = 0;
  let len = 0;
  for (let i = start; i < end; i++) {
    const byte = b[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      len++;
      const count = COUNT[len]!;
      if (count > 0) {
        const offset = code - FIRST_CODE[len]!;
        if (offset >= 0 && offset < count) {
          const sym = SYMBOLS[FIRST_INDEX[len]! + offset]!;
          if (sym === EOS) return null; // RFC 7541 5.2: EOS in a string is an error
          out += String.fromCharCode(sym);
          code = 0;
          len = 0;
          continue;
        }
      }
      if (len >= MAX_CODE) return null;
    }
  }
  // Padding: fewer than 8 bits, all ones (the most significant bits of EOS).
  if (len > 7 || code !== (1 << len) - 1) return null;
  return out;
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
 */
export function decodeHeaderBlock(b: Uint8Array, start: number, end: number): HeaderField[] | null {
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
  const string = (): string | null => {
    if (p >= end) return null;
    const huffman = (b[p]! & 0x80) !== 0;
    const len = integer(7);
    if (len < 0 || p + len > end) return null;
    const s = huffman ? huffmanDecode(b, p, p + len) : Buffer.from(b.buffer, b.byteOffset + p, len).toString("latin1");
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
      out.push(field);
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
      if (index === 0) name = string();
      else name = entry(index)?.name ?? null;
      if (name === null) return null;
      const value = string();
      if (value === null) return null;
      const field = { name, value };
      out.push(field);
      if (indexing) {
        dynamic.unshift(field);
        dynamicSize += name.length + value.length + 32;
        evict();
      }
    }
  }
  return out;
}

import { Cipher, createCipheriv, createDecipheriv, createHmac } from "node:crypto";
import { aes128EncryptBlock, aes128RoundKeys } from "./aes-block";
import { u24, u32 } from "./bytes";
import type { FingerprintSet } from "./fingerprint";
import { parseClientHello } from "./tls";
import { match, MORE, NO, SniffVerdict } from "./types";

/** QUIC versions whose Initial packets can be read: RFC 9000/9001 (v1) and RFC 9369 (v2). */
export type QuicVersion = 1 | 2;

const V1 = 0x00000001;
const V2 = 0x6b3343cf;

interface VersionParams {
  readonly version: QuicVersion;
  readonly salt: Buffer;
  readonly key: string;
  readonly iv: string;
  readonly hp: string;
  /** Long header packet type bits (RFC 9000 17.2; RFC 9369 3.2 renumbers them). */
  readonly initial: number;
  readonly retry: number;
}

// RFC 9001 5.2.
const PARAMS_V1: VersionParams = { version: 1, salt: Buffer.from("38762cf7f55934b34d179ae6a4c80cadccbb7f0a", "hex"), key: "quic key", iv: "quic iv", hp: "quic hp", initial: 0, retry: 3 };
// RFC 9369 3.3.1 and 3.3.2.
const PARAMS_V2: VersionParams = { version: 2, salt: Buffer.from("0dede3def700a6db819381be6e269dcbf9bd2ed9", "hex"), key: "quicv2 key", iv: "quicv2 iv", hp: "quicv2 hp", initial: 1, retry: 0 };
const VERSIONS: ReadonlyMap<number, VersionParams> = new Map([
  [V1, PARAMS_V1],
  [V2, PARAMS_V2],
]);

/** The client's Initial secret and the packet protection keys derived from it. */
export interface QuicInitialKeys {
  readonly secret: Buffer;
  readonly key: Buffer;
  readonly iv: Buffer;
  readonly hp: Buffer;
}

// RFC 8446 7.1 HKDF-Expand-Label with an empty context; every output here is at most one
// SHA-256 block, so HKDF-Expand is a single HMAC.
function expandLabel(secret: Buffer, label: string, length: number): Buffer {
  const full = `tls13 ${label}`;
  const info = Buffer.allocUnsafe(4 + full.length + 1);
  info.writeUInt16BE(length, 0);
  info[2] = full.length;
  info.write(full, 3, "latin1");
  info[3 + full.length] = 0;
  info[4 + full.length] = 1;
  return createHmac("sha256", secret).update(info).digest().subarray(0, length);
}

/**
 * Derives the client Initial keys from the Destination Connection ID of the client's first
 * Initial (RFC 9001 5.2, RFC 9369 3.3). Returns null for a version without Initial keys here.
 */
export function quicInitialKeys(dcid: Uint8Array, version: number): QuicInitialKeys | null {
  const params = VERSIONS.get(version);
  if (params === undefined) return null;
  const initial = createHmac("sha256", params.salt).update(dcid).digest();
  const secret = expandLabel(initial, "client in", 32);
  return { secret, key: expandLabel(secret, params.key, 16), iv: expandLabel(secret, params.iv, 12), hp: expandLabel(secret, params.hp, 16) };
}

interface CachedKeys {
  readonly key: Buffer;
  readonly iv: Buffer;
  // Header protection encrypts one block per packet, done here (aes-block.ts); AES-128-ECB
  // without padding is stateless across update() calls, so one cipher object under the
  // packet key serves the GCM counter-mode keystream of every packet.
  readonly hp: Int32Array;
  readonly ctr: Cipher;
}

function ecb(key: Buffer): Cipher {
  const c = createCipheriv("aes-128-ecb", key, null);
  c.setAutoPadding(false);
  return c;
}

// Retransmitted Initials and the second Initial of a large ClientHello share the DCID:
// a small cache saves five HMACs per packet. Cleared whole when full to stay bounded.
const KEY_CACHE_MAX = 512;
const keyCache = new Map<string, CachedKeys>();

function cachedKeys(b: Buffer, dcidStart: number, dcidEnd: number, version: number): CachedKeys | null {
  const id = `${version}:${b.toString("latin1", dcidStart, dcidEnd)}`;
  const hit = keyCache.get(id);
  if (hit !== undefined) return hit;
  const keys = quicInitialKeys(b.subarray(dcidStart, dcidEnd), version);
  if (keys === null) return null;
  const entry = { key: keys.key, iv: keys.iv, hp: aes128RoundKeys(keys.hp), ctr: ecb(keys.key) };
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
  keyCache.set(id, entry);
  return entry;
}

// The end of the last varint() read: the readers here are synchronous, and a result
// object per integer was most of the garbage of a packet.
let varintEnd = 0;

/** Reads a QUIC variable-length integer (RFC 9000 16) and sets varintEnd; -1 when it runs past `end`. */
function varint(b: Buffer, p: number, end: number): number {
  if (p >= end) return -1;
  const first = b[p]!;
  const len = 1 << (first >> 6);
  if (p + len > end) return -1;
  let value = first & 0x3f;
  for (let i = 1; i < len; i++) value = value * 256 + b[p + i]!;
  varintEnd = p + len;
  return value;
}

/** A decrypted Initial packet. */
export interface QuicInitialPacket {
  readonly version: QuicVersion;
  readonly dcid: Buffer;
  readonly packetNumber: number;
  readonly payload: Buffer;
}

/** One long header packet of a datagram: where it ends and, for a client Initial, its contents. */
interface LongPacket {
  readonly end: number;
  /** The decrypted payload of a client Initial (its first `limit` bytes when `partial`), else null. */
  readonly payload: Buffer | null;
  readonly partial: boolean;
  /** The wire version; for an Initial also its QUIC version, DCID and packet number. */
  readonly version: number;
  readonly quicVersion: QuicVersion;
  readonly dcidStart: number;
  readonly dcidEnd: number;
  readonly packetNumber: number;
}

function notInitial(end: number, version: number): LongPacket {
  return { end, payload: null, partial: false, version, quicVersion: 1, dcidStart: 0, dcidEnd: 0, packetNumber: 0 };
}

// The header protection mask of the packet being read.
const MASK = Buffer.alloc(16);

// Counter blocks for the largest UDP payload (65507 bytes): block i counts i + 2. The
// 32-bit view copies the nonce into each block three words at a time.
const COUNTERS = Buffer.alloc(4096 * 16);
const COUNTER_WORDS = new Uint32Array(COUNTERS.buffer, COUNTERS.byteOffset, COUNTERS.length >> 2);
for (let i = 0; i < 4096; i++) COUNTERS.writeUInt32BE(i + 2, i * 16 + 12);
// The payload of the packet being read, decrypted without the tag check: valid until the
// next packet is read (the readers here use a payload before they read on).
const PLAIN = Buffer.alloc(4096 * 16);
const PLAIN_WORDS = new Int32Array(PLAIN.buffer, PLAIN.byteOffset, PLAIN.length >> 2);

/**
 * AES-128-GCM decryption without the tag check (NIST SP 800-38D 7.2: GCM encrypts in
 * counter mode from J0 + 1, J0 = nonce || 1) of b[start, end), the nonce being the
 * packet IV with the packet number folded in (RFC 9001 5.3). Initial keys follow from the
 * DCID in the packet itself, so a valid tag proves nothing about the sender; the sniffer's
 * frame and ClientHello checks reject garbage, and it saves a cipher object per packet,
 * which is most of a packet's cost in Node.
 */
function gcmKeystreamDecrypt(keys: CachedKeys, pn: number, b: Buffer, start: number, end: number): Buffer {
  const len = end - start;
  const blocks = (len + 15) >> 4;
  // The counter words were written once; only the nonce changes between packets.
  const iv = keys.iv;
  for (let k = 0; k < 12; k++) COUNTERS[k] = iv[k]!;
  for (let i = 0; i < 4; i++) COUNTERS[11 - i]! ^= (pn >>> (8 * i)) & 0xff;
  const w = COUNTER_WORDS;
  const w0 = w[0]!;
  const w1 = w[1]!;
  const w2 = w[2]!;
  for (let o = 4, last = blocks << 2; o < last; o += 4) {
    w[o] = w0;
    w[o + 1] = w1;
    w[o + 2] = w2;
  }
  const stream = keys.ctr.update(COUNTERS.subarray(0, blocks << 4));
  // The ciphertext goes to an aligned scratch area in one native copy, where the keystream
  // is XORed in a word at a time.
  b.copy(PLAIN, 0, start, end);
  if ((stream.byteOffset & 3) === 0) {
    const k = new Int32Array(stream.buffer, stream.byteOffset, blocks << 2);
    const p = PLAIN_WORDS;
    for (let i = 0, n = (len + 3) >> 2; i < n; i++) p[i] = p[i]! ^ k[i]!;
  } else {
    for (let i = 0; i < len; i++) PLAIN[i] = PLAIN[i]! ^ stream[i]!;
  }
  return PLAIN.subarray(0, len);
}

// Reads the long header packet at `start` and removes its protection when it is an Initial
// (RFC 9001 5.3, 5.4); `verify` checks the AEAD tag too, else at most `limit` payload
// bytes are decrypted. Null when the header is not a QUIC long header.
function readLongPacket(b: Buffer, start: number, verify: boolean, limit = Infinity): LongPacket | null {
  const n = b.length;
  if (start + 7 > n) return null;
  const first = b[start]!;
  if ((first & 0x80) === 0) return null;
  const version = u32(b, start + 1);
  const params = version === V1 ? PARAMS_V1 : version === V2 ? PARAMS_V2 : undefined;
  if (params === undefined) return null;
  const dcidLen = b[start + 5]!;
  // RFC 9000 17.2: at most 20 bytes in v1 and v2.
  if (dcidLen > 20) return null;
  const dcidStart = start + 6;
  let p = dcidStart + dcidLen;
  if (p >= n) return null;
  const scidLen = b[p]!;
  if (scidLen > 20) return null;
  p += 1 + scidLen;
  const type = (first >> 4) & 3;
  if (type === params.retry) return null; // servers send Retry; a client never does
  if (type === params.initial) {
    const token = varint(b, p, n);
    if (token < 0 || varintEnd + token > n) return null;
    p = varintEnd + token;
  }
  const length = varint(b, p, n);
  if (length < 0) return null;
  const pnOffset = varintEnd;
  const end = pnOffset + length;
  if (end > n) return null;
  if (type !== params.initial) return notInitial(end, version);
  // RFC 9000 7.2: a client's first Destination Connection ID is at least 8 bytes.
  if (dcidLen < 8 || pnOffset + 4 + 16 > end) return notInitial(end, version);
  const keys = cachedKeys(b, dcidStart, dcidStart + dcidLen, version);
  if (keys === null) return null;
  const mask = MASK;
  aes128EncryptBlock(keys.hp, b, pnOffset + 4, mask);
  const plainFirst = first ^ (mask[0]! & 0x0f);
  // RFC 9000 17.2: the reserved bits are zero once protection is off.
  if ((plainFirst & 0x0c) !== 0) return notInitial(end, version);
  const pnLen = (plainFirst & 3) + 1;
  let pn = 0;
  for (let i = 0; i < pnLen; i++) pn = pn * 256 + (b[pnOffset + i]! ^ mask[1 + i]!);
  const body = pnOffset + pnLen;
  const tag = end - 16;
  if (tag < body) return notInitial(end, version);
  let payload: Buffer;
  const partial = !verify && tag - body > limit;
  if (!verify) payload = gcmKeystreamDecrypt(keys, pn, b, body, partial ? body + limit : tag);
  else {
    const nonce = Buffer.from(keys.iv);
    for (let i = 0; i < 4; i++) nonce[11 - i]! ^= (pn >>> (8 * i)) & 0xff;
    // The AAD is the header as sent, with its protection removed.
    const header = Buffer.allocUnsafe(pnOffset - start + pnLen);
    b.copy(header, 0, start, pnOffset + pnLen);
    header[0] = plainFirst;
    for (let i = 0; i < pnLen; i++) header[pnOffset - start + i] = b[pnOffset + i]! ^ mask[1 + i]!;
    try {
      const d = createDecipheriv("aes-128-gcm", keys.key, nonce);
      d.setAAD(header);
      d.setAuthTag(b.subarray(tag, end));
      payload = d.update(b.subarray(body, tag));
      d.final();
    } catch {
      return notInitial(end, version);
    }
  }
  return { end, payload, partial, version, quicVersion: params.version, dcidStart, dcidEnd: dcidStart + dcidLen, packetNumber: pn };
}

/**
 * Removes header protection from and decrypts the first client Initial packet of a datagram
 * (skipping coalesced 0-RTT or Handshake packets before it), checking its AEAD tag. Null
 * when there is none or it does not authenticate.
 */
export function decryptQuicInitial(datagram: Uint8Array): QuicInitialPacket | null {
  const b = Buffer.isBuffer(datagram) ? datagram : Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  let at = 0;
  while (at < b.length) {
    const packet = readLongPacket(b, at, true);
    if (packet === null) return null;
    if (packet.payload !== null) {
      return { version: packet.quicVersion, dcid: Buffer.from(b.subarray(packet.dcidStart, packet.dcidEnd)), packetNumber: packet.packetNumber, payload: packet.payload };
    }
    if (packet.end <= at) return null;
    at = packet.end;
  }
  return null;
}

/** A CRYPTO frame's data at its offset in the Initial crypto stream. */
export interface QuicCryptoFrame {
  readonly offset: number;
  readonly data: Buffer;
}

/**
 * Walks the frames of an Initial payload (RFC 9000 19) and appends each CRYPTO frame to
 * `out` as three numbers: its stream offset and the start and end of its data in
 * `payload`. PADDING, PING, ACK and CONNECTION_CLOSE are stepped over; any other frame
 * type (not allowed in an Initial, or malformed) ends the walk. Starts at `from`; with
 * `firstOnly` returns after the first CRYPTO frame with where the walk goes on, else -1.
 */
function cryptoFrameSpans(payload: Buffer, out: number[], from = 0, firstOnly = false): number {
  const n = payload.length;
  let p = from;
  while (p < n) {
    const type = payload[p]!;
    if (type === 0x00 || type === 0x01) {
      p++;
      continue;
    }
    if (type === 0x06) {
      const offset = varint(payload, p + 1, n);
      if (offset < 0) break;
      const len = varint(payload, varintEnd, n);
      if (len < 0 || varintEnd + len > n) break;
      out.push(offset, varintEnd, varintEnd + len);
      p = varintEnd + len;
      if (firstOnly) return p;
      continue;
    }
    if (type === 0x02 || type === 0x03) {
      // Largest acknowledged, delay, range count, first range; then a gap and a length per range.
      let ok = varint(payload, p + 1, n) >= 0 && varint(payload, varintEnd, n) >= 0;
      const count = ok ? varint(payload, varintEnd, n) : -1;
      ok = count >= 0 && varint(payload, varintEnd, n) >= 0;
      for (let i = 0; ok && i < count; i++) ok = varint(payload, varintEnd, n) >= 0 && varint(payload, varintEnd, n) >= 0;
      // ACK_ECN: three ECN counts.
      for (let i = 0; ok && type === 0x03 && i < 3; i++) ok = varint(payload, varintEnd, n) >= 0;
      if (!ok) break;
      p = varintEnd;
      continue;
    }
    if (type === 0x1c) {
      // Error code, frame type, reason phrase.
      const ok = varint(payload, p + 1, n) >= 0 && varint(payload, varintEnd, n) >= 0;
      const reason = ok ? varint(payload, varintEnd, n) : -1;
      if (reason < 0 || varintEnd + reason > n) break;
      p = varintEnd + reason;
      continue;
    }
    break;
  }
  return -1;
}

/**
 * Reads the frames of an Initial payload (RFC 9000 19) and returns the CRYPTO frames.
 * PADDING, PING, ACK and CONNECTION_CLOSE are stepped over; any other frame type (not
 * allowed in an Initial, or malformed) ends the walk with what was read so far.
 */
export function quicCryptoFrames(payload: Buffer): QuicCryptoFrame[] {
  const spans: number[] = [];
  cryptoFrameSpans(payload, spans);
  const out: QuicCryptoFrame[] = [];
  for (let i = 0; i < spans.length; i += 3) out.push({ offset: spans[i]!, data: payload.subarray(spans[i + 1]!, spans[i + 2]!) });
  return out;
}

/** CRYPTO data kept per session at most: a ClientHello beyond it is not waited for. */
export const QUIC_MAX_CRYPTO = 16384;

const CLIENT_HELLO = 1;
const EMPTY = Buffer.alloc(0);
// Payload bytes decrypted first: most ClientHellos sit at the start of the payload, before
// the padding, so the rest need not be decrypted once the ClientHello is whole.
const FIRST_DECRYPT = 512;

// The CRYPTO frames of the packet being read (offset, start, end triples); the readers
// are synchronous, so one array serves every packet.
const SPANS: number[] = [];

function versionOnly(version: QuicVersion): SniffVerdict {
  return match("quic", 0.5, { quicVersion: version });
}

/**
 * The client side of one QUIC session, datagram by datagram: decrypts each Initial,
 * reassembles the CRYPTO stream by offset (out of order, retransmitted, across packets and
 * datagrams) up to 16 KiB, and parses the ClientHello once it is whole. A later Initial
 * with another Destination Connection ID (the client's answer to a Retry, or a new
 * attempt) starts over.
 */
export class QuicInitialReader {
  private dcid: Buffer | null = null;
  private version: QuicVersion = 1;
  // Grown on demand up to QUIC_MAX_CRYPTO: most sessions are not QUIC, most ClientHellos small.
  private buffer: Buffer = EMPTY;
  // Sorted, disjoint [start, end) ranges of `buffer` that hold data.
  private ranges: Array<[number, number]> = [];
  private overflow = false;
  private verdict: SniffVerdict | null = null;

  /** `fingerprints`: which of JA4 and JA3 the ClientHello's fields get. */
  constructor(private readonly fingerprints: FingerprintSet = "all") {}

  /** True once an Initial decrypted: the session is QUIC even if the ClientHello never completes. */
  get seen(): boolean {
    return this.dcid !== null;
  }

  /** The answer when no more datagrams will come: QUIC with the version only, or no. */
  final(): SniffVerdict {
    if (this.verdict !== null) return this.verdict;
    return this.dcid === null ? NO : versionOnly(this.version);
  }

  /** Adds one client datagram; match once the ClientHello is whole, more while waiting, no when not QUIC. */
  push(datagram: Buffer): SniffVerdict {
    if (this.verdict !== null) return this.verdict;
    let at = 0;
    let any = false;
    while (at < datagram.length) {
      let packet = readLongPacket(datagram, at, false, FIRST_DECRYPT);
      if (packet === null) break; // a short header packet or padding after the long ones
      any = true;
      if (packet.payload !== null) {
        if (!this.sameDcid(datagram, packet)) this.restart(datagram, packet);
        this.addFrames(packet.payload);
        if (packet.partial && this.settle() === null) {
          packet = readLongPacket(datagram, at, false)!;
          this.addFrames(packet.payload!);
        }
        const v = this.settle();
        if (v !== null) return (this.verdict = v);
      }
      if (packet.end <= at) break;
      at = packet.end;
    }
    if (this.dcid === null) return any ? MORE : NO;
    return MORE;
  }

  private sameDcid(b: Buffer, packet: LongPacket): boolean {
    const dcid = this.dcid;
    if (dcid === null || dcid.length !== packet.dcidEnd - packet.dcidStart) return false;
    for (let i = 0; i < dcid.length; i++) if (dcid[i] !== b[packet.dcidStart + i]) return false;
    return true;
  }

  private addFrames(payload: Buffer): void {
    SPANS.length = 0;
    const next = cryptoFrameSpans(payload, SPANS, 0, true);
    // The common case: a fresh stream whose first CRYPTO frame holds the whole
    // ClientHello, parsed where it lies instead of copied into the stream buffer (and the
    // padding after it never walked).
    if (this.ranges.length === 0 && SPANS.length > 0 && SPANS[0] === 0) {
      const start = SPANS[1]!;
      const have = SPANS[2]! - start;
      const total = have >= 4 && payload[start] === CLIENT_HELLO ? 4 + u24(payload, start + 1) : -1;
      if (total >= 0 && total <= have && total <= QUIC_MAX_CRYPTO) {
        this.verdict = this.helloVerdict(payload, start, start + total);
        return;
      }
    }
    if (next >= 0) cryptoFrameSpans(payload, SPANS, next);
    for (let i = 0; i < SPANS.length; i += 3) this.add(SPANS[i]!, payload, SPANS[i + 1]!, SPANS[i + 2]!);
  }

  // The verdict once the CRYPTO stream decides it, else null.
  private settle(): SniffVerdict | null {
    if (this.verdict !== null) return this.verdict;
    if (this.overflow) return versionOnly(this.version);
    const have = this.ranges.length > 0 && this.ranges[0]![0] === 0 ? this.ranges[0]![1] : 0;
    if (have < 4) return null;
    if (this.buffer[0] !== CLIENT_HELLO) return versionOnly(this.version);
    const total = 4 + u24(this.buffer, 1);
    if (total > QUIC_MAX_CRYPTO) return versionOnly(this.version);
    if (have < total) return null;
    return this.helloVerdict(this.buffer, 0, total);
  }

  // The verdict on a whole ClientHello handshake message in b[start, end).
  private helloVerdict(b: Buffer, start: number, end: number): SniffVerdict {
    const hello = parseClientHello(b, start + 4, end, "q", this.fingerprints);
    if (hello === null) return versionOnly(this.version);
    // A fresh object from the parse: the version joins it in place.
    hello.quicVersion = this.version;
    return match("quic", 1, hello);
  }

  private restart(b: Buffer, packet: LongPacket): void {
    this.dcid = Buffer.from(b.subarray(packet.dcidStart, packet.dcidEnd));
    this.version = packet.quicVersion;
    this.ranges = [];
    this.overflow = false;
  }

  // Adds the CRYPTO data src[start, end) at `offset` of the stream.
  private add(offset: number, src: Buffer, start: number, end: number): void {
    const length = end - start;
    if (length === 0) return;
    const last = offset + length;
    if (last > QUIC_MAX_CRYPTO) {
      this.overflow = true;
      return;
    }
    if (last > this.buffer.length) {
      const next = Buffer.allocUnsafe(Math.min(QUIC_MAX_CRYPTO, Math.max(last, this.buffer.length * 2, 2048)));
      this.buffer.copy(next);
      this.buffer = next;
    }
    src.copy(this.buffer, offset, start, end);
    if (this.ranges.length === 0) {
      this.ranges.push([offset, last]);
      return;
    }
    const merged: Array<[number, number]> = [];
    let s = offset;
    let e = last;
    for (const r of this.ranges) {
      if (r[1] < s || r[0] > e) merged.push(r);
      else {
        s = Math.min(s, r[0]);
        e = Math.max(e, r[1]);
      }
    }
    merged.push([s, e]);
    merged.sort((x, y) => x[0] - y[0]);
    this.ranges = merged;
  }
}

/**
 * AES-128 encryption of one block (FIPS-197), in table form. QUIC header protection
 * (RFC 9001 5.4.3) encrypts a single 16-byte sample per packet; a Node cipher call costs
 * far more than the cipher itself for one block. The Initial keys follow from the packet's
 * own Destination Connection ID and protect nothing secret, so the data-dependent table
 * lookups leak nothing worth keeping.
 */

// The S-box, from the multiplicative inverse in GF(2^8) and the affine map (FIPS-197 5.1.1):
// p walks the field's elements as powers of 3 while q walks their inverses.
const SBOX = new Uint8Array(256);
{
  const rotl8 = (x: number, k: number): number => ((x << k) | (x >> (8 - k))) & 0xff;
  let p = 1;
  let q = 1;
  do {
    p = (p ^ ((p << 1) & 0xff) ^ (p & 0x80 ? 0x1b : 0)) & 0xff;
    q ^= q << 1;
    q ^= q << 2;
    q ^= q << 4;
    q &= 0xff;
    if (q & 0x80) q ^= 0x09;
    SBOX[p] = q ^ rotl8(q, 1) ^ rotl8(q, 2) ^ rotl8(q, 3) ^ rotl8(q, 4) ^ 0x63;
  } while (p !== 1);
  SBOX[0] = 0x63;
}

// SubBytes, ShiftRows and MixColumns of one state byte as a column word, and its rotations.
const T0 = new Int32Array(256);
const T1 = new Int32Array(256);
const T2 = new Int32Array(256);
const T3 = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  const s = SBOX[i]!;
  const s2 = ((s << 1) ^ (s & 0x80 ? 0x1b : 0)) & 0xff;
  const w = (s2 << 24) | (s << 16) | (s << 8) | (s2 ^ s);
  T0[i] = w;
  T1[i] = (w >>> 8) | (w << 24);
  T2[i] = (w >>> 16) | (w << 16);
  T3[i] = (w >>> 24) | (w << 8);
}

/** The 44 round key words of an AES-128 key (FIPS-197 5.2). */
export function aes128RoundKeys(key: Uint8Array): Int32Array {
  if (key.length !== 16) throw new RangeError("AES-128 takes a 16-byte key");
  const w = new Int32Array(44);
  for (let i = 0; i < 4; i++) w[i] = (key[4 * i]! << 24) | (key[4 * i + 1]! << 16) | (key[4 * i + 2]! << 8) | key[4 * i + 3]!;
  let rcon = 1;
  for (let i = 4; i < 44; i++) {
    let t = w[i - 1]!;
    if ((i & 3) === 0) {
      t = ((SBOX[(t >>> 16) & 255]! << 24) | (SBOX[(t >>> 8) & 255]! << 16) | (SBOX[t & 255]! << 8) | SBOX[t >>> 24]!) ^ (rcon << 24);
      rcon = ((rcon << 1) ^ (rcon & 0x80 ? 0x1b : 0)) & 0xff;
    }
    w[i] = w[i - 4]! ^ t;
  }
  return w;
}

function put(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 255;
  out[at + 2] = (v >>> 8) & 255;
  out[at + 3] = v & 255;
}

/** Encrypts the block input[from, from + 16) under `rk` into out[0, 16). */
export function aes128EncryptBlock(rk: Int32Array, input: Uint8Array, from: number, out: Uint8Array): void {
  const S = SBOX;
  let s0 = ((input[from]! << 24) | (input[from + 1]! << 16) | (input[from + 2]! << 8) | input[from + 3]!) ^ rk[0]!;
  let s1 = ((input[from + 4]! << 24) | (input[from + 5]! << 16) | (input[from + 6]! << 8) | input[from + 7]!) ^ rk[1]!;
  let s2 = ((input[from + 8]! << 24) | (input[from + 9]! << 16) | (input[from + 10]! << 8) | input[from + 11]!) ^ rk[2]!;
  let s3 = ((input[from + 12]! << 24) | (input[from + 13]! << 16) | (input[from + 14]! << 8) | input[from + 15]!) ^ rk[3]!;
  for (let r = 4; r < 40; r += 4) {
    const t0 = T0[s0 >>> 24]! ^ T1[(s1 >>> 16) & 255]! ^ T2[(s2 >>> 8) & 255]! ^ T3[s3 & 255]! ^ rk[r]!;
    const t1 = T0[s1 >>> 24]! ^ T1[(s2 >>> 16) & 255]! ^ T2[(s3 >>> 8) & 255]! ^ T3[s0 & 255]! ^ rk[r + 1]!;
    const t2 = T0[s2 >>> 24]! ^ T1[(s3 >>> 16) & 255]! ^ T2[(s0 >>> 8) & 255]! ^ T3[s1 & 255]! ^ rk[r + 2]!;
    const t3 = T0[s3 >>> 24]! ^ T1[(s0 >>> 16) & 255]! ^ T2[(s1 >>> 8) & 255]! ^ T3[s2 & 255]! ^ rk[r + 3]!;
    s0 = t0;
    s1 = t1;
    s2 = t2;
    s3 = t3;
  }
  // The last round has no MixColumns.
  put(out, 0, ((S[s0 >>> 24]! << 24) | (S[(s1 >>> 16) & 255]! << 16) | (S[(s2 >>> 8) & 255]! << 8) | S[s3 & 255]!) ^ rk[40]!);
  put(out, 4, ((S[s1 >>> 24]! << 24) | (S[(s2 >>> 16) & 255]! << 16) | (S[(s3 >>> 8) & 255]! << 8) | S[s0 & 255]!) ^ rk[41]!);
  put(out, 8, ((S[s2 >>> 24]! << 24) | (S[(s3 >>> 16) & 255]! << 16) | (S[(s0 >>> 8) & 255]! << 8) | S[s1 & 255]!) ^ rk[42]!);
  put(out, 12, ((S[s3 >>> 24]! << 24) | (S[(s0 >>> 16) & 255]! << 16) | (S[(s1 >>> 8) & 255]! << 8) | S[s2 & 255]!) ^ rk[43]!);
}

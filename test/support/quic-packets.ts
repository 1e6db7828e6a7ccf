import { createCipheriv } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { decryptQuicInitial, QUIC_MAX_CRYPTO, quicCryptoFrames, quicInitialKeys } from "../../src/classify";

/** The protected client Initial of RFC 9001 A.2 (`v1`) or RFC 9369 A.2 (`v2`). */
export function rfcClientInitial(which: "v1" | "v2"): Buffer {
  const file = which === "v1" ? "rfc9001-a2-client-initial.hex" : "rfc9369-a2-client-initial.hex";
  return Buffer.from(readFileSync(path.join(__dirname, "..", "fixtures", "quic", file), "utf8").replace(/\s/g, ""), "hex");
}

const VERSION_NUMBER = { 1: 0x00000001, 2: 0x6b3343cf } as const;
// Long header type bits of an Initial (RFC 9000 17.2, RFC 9369 3.2).
const INITIAL_TYPE = { 1: 0, 2: 1 } as const;

/**
 * Builds a protected client Initial packet the way a client does (RFC 9001 5): 4-byte
 * packet number, empty SCID and token, AES-128-GCM payload, AES-ECB header protection.
 */
export function protectInitial(dcid: Buffer, packetNumber: number, payload: Buffer, version: 1 | 2 = 1): Buffer {
  const keys = quicInitialKeys(dcid, VERSION_NUMBER[version])!;
  const length = 4 + payload.length + 16;
  const header = Buffer.concat([
    Buffer.from([0xc0 | (INITIAL_TYPE[version] << 4) | 3]),
    Buffer.from([0, 0, 0, 0]),
    Buffer.from([dcid.length]),
    dcid,
    Buffer.from([0, 0, 0x40 | (length >> 8), length & 0xff]),
    Buffer.from([packetNumber >>> 24, (packetNumber >>> 16) & 0xff, (packetNumber >>> 8) & 0xff, packetNumber & 0xff]),
  ]);
  header.writeUInt32BE(VERSION_NUMBER[version], 1);
  const nonce = Buffer.from(keys.iv);
  for (let i = 0; i < 4; i++) nonce[11 - i]! ^= (packetNumber >>> (8 * i)) & 0xff;
  const gcm = createCipheriv("aes-128-gcm", keys.key, nonce);
  gcm.setAAD(header);
  const sealed = Buffer.concat([gcm.update(payload), gcm.final(), gcm.getAuthTag()]);
  const packet = Buffer.concat([header, sealed]);
  const pnOffset = header.length - 4;
  const ecb = createCipheriv("aes-128-ecb", keys.hp, null);
  const mask = ecb.update(packet.subarray(pnOffset + 4, pnOffset + 20));
  packet[0] = packet[0]! ^ (mask[0]! & 0x0f);
  for (let i = 0; i < 4; i++) packet[pnOffset + i] = packet[pnOffset + i]! ^ mask[1 + i]!;
  return packet;
}

/** A QUIC variable-length integer (RFC 9000 16), in the shortest form. */
export function varint(v: number): Buffer {
  if (v < 64) return Buffer.from([v]);
  if (v < 16384) return Buffer.from([0x40 | (v >> 8), v & 0xff]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v | 0x80000000);
  return b;
}

/** A CRYPTO frame carrying `data` at `offset`. */
export function cryptoFrame(offset: number, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x06]), varint(offset), varint(data.length), data]);
}

/** Pads an Initial payload with PADDING frames to the 1200-byte datagram minimum's share. */
export function padded(payload: Buffer, size = 1162): Buffer {
  return payload.length >= size ? payload : Buffer.concat([payload, Buffer.alloc(size - payload.length)]);
}

/** The CRYPTO stream of a client's Initials (the ClientHello), reassembled from its datagrams. */
export function cryptoStream(datagrams: readonly Buffer[]): Buffer {
  const out = Buffer.alloc(QUIC_MAX_CRYPTO);
  let end = 0;
  for (const d of datagrams) {
    const p = decryptQuicInitial(d);
    if (p === null) continue;
    for (const f of quicCryptoFrames(p.payload)) {
      f.data.copy(out, f.offset);
      end = Math.max(end, f.offset + f.data.length);
    }
  }
  return out.subarray(0, end);
}

import { writeFileSync } from "node:fs";

// Documentation addresses (RFC 5737) for the synthetic capture.
const CLIENT = [192, 0, 2, 10];
const SERVER = [198, 51, 100, 20];

function ipv4(protocol: number, body: Buffer, fromClient: boolean): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + body.length, 2);
  h[8] = 64;
  h[9] = protocol;
  Buffer.from(fromClient ? CLIENT : SERVER).copy(h, 12);
  Buffer.from(fromClient ? SERVER : CLIENT).copy(h, 16);
  return Buffer.concat([h, body]);
}

function tcp(seq: number, flags: number, payload: Buffer, clientPort: number, serverPort: number): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(clientPort, 0);
  h.writeUInt16BE(serverPort, 2);
  h.writeUInt32BE(seq >>> 0, 4);
  h[12] = 5 << 4;
  h[13] = flags;
  h.writeUInt16BE(65535, 14);
  return ipv4(6, Buffer.concat([h, payload]), true);
}

function udp(payload: Buffer, clientPort: number, serverPort: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(clientPort, 0);
  h.writeUInt16BE(serverPort, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return ipv4(17, Buffer.concat([h, payload]), true);
}

/**
 * Writes a classic pcap (LINKTYPE_RAW: bare IPv4) holding what one client sent: its TCP
 * segments after a SYN, or its UDP datagrams, so tools such as tshark can read recorded
 * first bytes. Checksums stay zero (tshark does not verify them by default).
 */
export function writeClientPcap(file: string, transport: "tcp" | "udp", segments: readonly Buffer[], serverPort = 443): void {
  const clientPort = 40000;
  const packets: Buffer[] = [];
  if (transport === "tcp") {
    let seq = 1000;
    packets.push(tcp(seq, 0x02, Buffer.alloc(0), clientPort, serverPort));
    seq += 1;
    for (const s of segments) {
      packets.push(tcp(seq, 0x18, s, clientPort, serverPort));
      seq += s.length;
    }
  } else {
    for (const d of segments) packets.push(udp(d, clientPort, serverPort));
  }
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(262144, 16);
  head.writeUInt32LE(101, 20);
  const parts: Buffer[] = [head];
  packets.forEach((p, i) => {
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(1_700_000_000 + i, 0);
    rec.writeUInt32LE(p.length, 8);
    rec.writeUInt32LE(p.length, 12);
    parts.push(rec, p);
  });
  writeFileSync(file, Buffer.concat(parts));
}

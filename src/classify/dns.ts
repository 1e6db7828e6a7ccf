import { u16 } from "./bytes";
import { match, MORE, NO, Sniffer, SniffVerdict } from "./types";

const TYPES: Readonly<Record<number, string>> = {
  1: "A",
  2: "NS",
  5: "CNAME",
  6: "SOA",
  12: "PTR",
  15: "MX",
  16: "TXT",
  28: "AAAA",
  33: "SRV",
  43: "DS",
  48: "DNSKEY",
  64: "SVCB",
  65: "HTTPS",
  251: "IXFR",
  252: "AXFR",
  255: "ANY",
};

/** Name of a DNS query type number ("AAAA", or "TYPE99" for the rest). */
export function dnsTypeName(type: number): string {
  return TYPES[type] ?? `TYPE${type}`;
}

// Flag names in header order (RFC 1035 4.1.1, RFC 4035 3.2).
const FLAGS: ReadonlyArray<readonly [number, number, string]> = [
  [0, 0x04, "aa"],
  [0, 0x02, "tc"],
  [0, 0x01, "rd"],
  [1, 0x20, "ad"],
  [1, 0x10, "cd"],
];

// A question name: at most 255 bytes on the wire, fewer in dotted form.
const NAME = Buffer.alloc(256);

/**
 * A DNS query whose header starts at `base` and whose message ends at `end` (the declared
 * length over TCP, the datagram's end over UDP), of which bytes up to `b.length` are here:
 * QR clear, one question, no answers, at most a couple of additional records (EDNS OPT,
 * TSIG), the question's name in labels, a type and a class.
 */
function sniffQuery(b: Buffer, base: number, end: number): SniffVerdict {
  const n = b.length;
  if (n < base + 10) {
    if (n >= base + 1 && (b[base]! & 0x80) !== 0) return NO;
    return end <= n ? NO : MORE;
  }
  const f1 = b[base]!;
  const f2 = b[base + 1]!;
  if ((f1 & 0x80) !== 0) return NO; // a response
  const opcode = (f1 >> 3) & 0x0f;
  if (opcode !== 0 && opcode !== 2 && opcode !== 4) return NO;
  if ((f2 & 0x0f) !== 0 || (f2 & 0x80) !== 0) return NO; // rcode, RA
  if (u16(b, base + 2) !== 1 || u16(b, base + 4) !== 0 || u16(b, base + 6) !== 0 || u16(b, base + 8) > 2) return NO;
  let p = base + 10;
  // The name in dotted form, lower-cased, is written to NAME as the labels are checked.
  const name = NAME;
  let nameLen = 0;
  for (;;) {
    if (p >= n) return p >= end ? NO : MORE;
    const l = b[p]!;
    if (l === 0) break;
    if (l > 63) return NO; // no compression in a question's first name
    if (p + 1 + l > n) return p + 1 + l > end ? NO : MORE;
    if (nameLen + l + 1 > 255) return NO;
    if (nameLen > 0) name[nameLen - 1] = 0x2e; // "."
    for (let i = p + 1; i <= p + l; i++) {
      const c = b[i]!;
      if (c < 0x21 || c > 0x7e) return NO;
      name[nameLen++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
    }
    nameLen++;
    p += 1 + l;
  }
  p++;
  if (p + 4 > end) return NO;
  if (n < end) return MORE;
  const qclass = u16(b, p + 2);
  if (qclass !== 1 && qclass !== 3 && qclass !== 4 && qclass !== 254 && qclass !== 255) return NO;
  const flags: string[] = [];
  for (const [at, bit, name] of FLAGS) if ((b[base + at]! & bit) !== 0) flags.push(name);
  return match("dns", 0.9, { dnsName: nameLen === 0 ? "." : name.toString("latin1", 0, nameLen - 1), dnsType: dnsTypeName(u16(b, p)), dnsFlags: flags });
}

/** DNS over TCP (RFC 7766): a 2-byte length, then a query, read to the declared length. */
export function sniffDns(b: Buffer): SniffVerdict {
  if (b.length < 2) return MORE;
  const len = u16(b, 0);
  if (len < 17) return NO;
  return sniffQuery(b, 4, len + 2);
}

/** DNS over UDP (RFC 1035 4.2.1): the datagram is one query, no length prefix. */
export function sniffDnsDatagram(b: Buffer): SniffVerdict {
  if (b.length < 17) return NO;
  return sniffQuery(b, 2, b.length);
}

/** The DNS-over-TCP sniffer. */
export const dnsSniffer: Sniffer = { protocol: "dns", sniff: sniffDns };

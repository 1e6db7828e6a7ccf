import { isVisibleAscii, latin1, u16 } from "./bytes";
import { ClassificationFields, match, MORE, NO, Sniffer, SniffVerdict } from "./types";

const MAX_ID = 255;

/**
 * SOCKS4 and 4a: version 4, command (1 connect, 2 bind), port, IPv4 address, a user id
 * ended by NUL; 4a puts 0.0.0.x in the address and the host name after the user id.
 */
export function sniffSocks4(b: Buffer): SniffVerdict {
  const n = b.length;
  if (n === 0) return MORE;
  if (b[0] !== 4) return NO;
  if (n >= 2 && b[1] !== 1 && b[1] !== 2) return NO;
  if (n < 8) return MORE;
  const userEnd = b.indexOf(0, 8);
  if (userEnd < 0) return n - 8 > MAX_ID ? NO : MORE;
  if (!isVisibleAscii(b, 8, userEnd)) return NO;
  const fields: ClassificationFields = { socksCommand: b[1] === 1 ? "connect" : "bind", targetPort: u16(b, 2) };
  if (b[4] === 0 && b[5] === 0 && b[6] === 0 && b[7] !== 0) {
    const hostEnd = b.indexOf(0, userEnd + 1);
    if (hostEnd < 0) return n - userEnd - 1 > MAX_ID ? NO : MORE;
    if (hostEnd === userEnd + 1 || !isVisibleAscii(b, userEnd + 1, hostEnd)) return NO;
    fields.targetHost = latin1(b, userEnd + 1, hostEnd);
  } else {
    fields.targetHost = `${b[4]}.${b[5]}.${b[6]}.${b[7]}`;
  }
  return match("socks4", 0.9, fields);
}

/**
 * SOCKS5 (RFC 1928): the greeting, version 5 and a list of authentication methods. The
 * client then waits for the server's choice, so the greeting is all there is to see.
 */
export function sniffSocks5(b: Buffer): SniffVerdict {
  const n = b.length;
  if (n === 0) return MORE;
  if (b[0] !== 5) return NO;
  if (n < 2) return MORE;
  const count = b[1]!;
  if (count === 0) return NO;
  if (n < 2 + count) return MORE;
  const methods: number[] = [];
  for (let i = 2; i < 2 + count; i++) {
    const m = b[i]!;
    // Assigned methods are 0x00-0x09; 0x80-0xfe are private; 0xff means "none acceptable".
    if (m > 0x09 && (m < 0x80 || m === 0xff)) return NO;
    methods.push(m);
  }
  // A greeting is short and answered before anything else is sent; a long tail is not SOCKS.
  if (n > 2 + count + 262) return NO;
  return match("socks5", n === 2 + count ? 0.8 : 0.6, { socksMethods: methods });
}

/** The SOCKS4 sniffer. */
export const socks4Sniffer: Sniffer = { protocol: "socks4", sniff: sniffSocks4 };
/** The SOCKS5 sniffer. */
export const socks5Sniffer: Sniffer = { protocol: "socks5", sniff: sniffSocks5 };

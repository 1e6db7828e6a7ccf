import { ascii, startsWith } from "./bytes";
import { match, MORE, NO, Sniffer, SniffVerdict } from "./types";

// haproxy's proxy-protocol.txt: the v1 text prefix and the v2 binary signature.
const V1 = ascii("PROXY ");
const V2 = Uint8Array.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/**
 * PROXY protocol: detected by its signature only. Parsing the header (addresses, TLVs)
 * is the proxy-protocol parser's job; a listener strips it before classifying the rest.
 */
export function sniffProxy(b: Buffer): SniffVerdict {
  const v1 = startsWith(b, 0, V1);
  if (v1 === 1) return match("proxy", 1, { proxyVersion: 1 });
  const v2 = startsWith(b, 0, V2);
  if (v2 === 1) {
    if (b.length < 13) return MORE;
    // The high nibble of the 13th byte is the version, which must be 2.
    return (b[12]! & 0xf0) === 0x20 ? match("proxy", 1, { proxyVersion: 2 }) : NO;
  }
  return v1 === 0 || v2 === 0 ? MORE : NO;
}

/** The PROXY protocol sniffer. */
export const proxySniffer: Sniffer = { protocol: "proxy", sniff: sniffProxy };

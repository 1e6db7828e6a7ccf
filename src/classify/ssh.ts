import { ascii, latin1, startsWith } from "./bytes";
import { match, MORE, NO, Sniffer, SniffVerdict } from "./types";

const PREFIX = ascii("SSH-");
// RFC 4253 4.2: the identification string is at most 255 characters including CR LF.
const MAX_LINE = 255;

/**
 * SSH: the client's identification string `SSH-protoversion-softwareversion [comments]`
 * ending in CR LF (a bare LF is tolerated, as OpenSSH does). Clients speak first.
 */
export function sniffSsh(b: Buffer): SniffVerdict {
  const pre = startsWith(b, 0, PREFIX);
  if (pre < 0) return NO;
  if (pre === 0) return MORE;
  const n = b.length;
  let protoEnd = -1;
  let softEnd = -1;
  for (let i = PREFIX.length; i < n && i < MAX_LINE; i++) {
    const c = b[i]!;
    if (c === 0x0a || (c === 0x0d && softEnd < 0 && protoEnd >= 0)) {
      if (protoEnd < 0) return NO;
      if (softEnd < 0) softEnd = i;
      const software = latin1(b, protoEnd + 1, softEnd);
      if (software === "") return NO;
      return match("ssh", 1, { sshVersion: latin1(b, PREFIX.length, protoEnd), software });
    }
    if (protoEnd < 0) {
      if (c === 0x2d) {
        if (i === PREFIX.length) return NO;
        protoEnd = i;
      } else if ((c < 0x30 || c > 0x39) && c !== 0x2e) return NO; // "2.0", "1.99"
    } else if (softEnd < 0) {
      if (c === 0x20) softEnd = i;
      else if (c < 0x21 || c > 0x7e) return NO;
    } else if (c < 0x20 || c > 0x7e) {
      if (c !== 0x0d) return NO;
    }
  }
  return n >= MAX_LINE ? NO : MORE;
}

/** The SSH sniffer. */
export const sshSniffer: Sniffer = { protocol: "ssh", sniff: sniffSsh };

import fs from "node:fs";
import { addressText } from "./record";

/** One socket from an inet_diag dump or a "socket destroyed" message. */
export interface DiagSocket {
  readonly family: 4 | 6;
  readonly state: number;
  readonly localIp: string;
  readonly localPort: number;
  readonly remoteIp: string;
  readonly remotePort: number;
  /** Socket cookie, decimal: the same id eBPF reports. */
  readonly cookie: string;
  readonly uid: number;
  readonly inode: number;
  readonly cgroupId: string | null;
  readonly info: DiagTcpInfo | null;
}

/** The tcp_info fields the flow events use. */
export interface DiagTcpInfo {
  readonly rttUs: number;
  readonly minRttUs: number;
  readonly totalRetrans: number;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  readonly bytesRetrans: number;
  readonly segsIn: number;
  readonly segsOut: number;
}

const NLMSG_HDRLEN = 16;
const NLMSG_DONE = 3;
const NLMSG_ERROR = 2;
const SOCK_DIAG_BY_FAMILY = 20;
const INET_DIAG_MSG_LEN = 72;
const INET_DIAG_INFO = 2;
const INET_DIAG_CGROUP_ID = 21;

/** AF_INET / AF_INET6 as the kernel numbers them. */
export const AF_INET = 2;
export const AF_INET6 = 10;
/** Bit masks of inet_diag state selections. */
export const STATE_LISTEN_MASK = 1 << 10;
/** Every state but LISTEN, TIME_WAIT (not a full socket) and CLOSE. */
export const STATE_CONNECTED_MASK = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 11);

const align4 = (n: number): number => (n + 3) & ~3;

function isV4Mapped(buf: Buffer, off: number): boolean {
  for (let i = 0; i < 10; i++) if (buf[off + i] !== 0) return false;
  return buf[off + 10] === 0xff && buf[off + 11] === 0xff;
}

function parseTcpInfo(buf: Buffer, off: number, len: number): DiagTcpInfo | null {
  // Offsets from struct tcp_info (linux/tcp.h); older kernels send a shorter struct.
  if (len < 216) return null;
  return {
    rttUs: buf.readUInt32LE(off + 68),
    totalRetrans: buf.readUInt32LE(off + 100),
    bytesReceived: Number(buf.readBigUInt64LE(off + 128)),
    segsOut: buf.readUInt32LE(off + 136),
    segsIn: buf.readUInt32LE(off + 140),
    minRttUs: buf.readUInt32LE(off + 148),
    bytesSent: Number(buf.readBigUInt64LE(off + 200)),
    bytesRetrans: Number(buf.readBigUInt64LE(off + 208)),
  };
}

function parseDiagMessage(buf: Buffer, off: number, end: number): DiagSocket | null {
  if (end - off < INET_DIAG_MSG_LEN) return null;
  const af = buf[off]!;
  if (af !== AF_INET && af !== AF_INET6) return null;
  const src = off + 8;
  const dst = off + 24;
  let family: 4 | 6 = af === AF_INET ? 4 : 6;
  let srcOff = src;
  let dstOff = dst;
  if (family === 6 && (isV4Mapped(buf, src) || isV4Mapped(buf, dst))) {
    family = 4;
    srcOff = src + 12;
    dstOff = dst + 12;
  }
  const cookie = (BigInt(buf.readUInt32LE(off + 48)) << 32n) | BigInt(buf.readUInt32LE(off + 44));
  let info: DiagTcpInfo | null = null;
  let cgroupId: string | null = null;
  let a = off + INET_DIAG_MSG_LEN;
  while (a + 4 <= end) {
    const len = buf.readUInt16LE(a);
    const type = buf.readUInt16LE(a + 2) & 0x3fff;
    if (len < 4 || a + len > end) break;
    if (type === INET_DIAG_INFO) info = parseTcpInfo(buf, a + 4, len - 4);
    else if (type === INET_DIAG_CGROUP_ID && len >= 12) cgroupId = buf.readBigUInt64LE(a + 4).toString();
    a += align4(len);
  }
  return {
    family,
    state: buf[off + 1]!,
    localPort: buf.readUInt16BE(off + 4),
    remotePort: buf.readUInt16BE(off + 6),
    localIp: addressText(buf, srcOff, family),
    remoteIp: addressText(buf, dstOff, family),
    cookie: cookie.toString(),
    uid: buf.readUInt32LE(off + 64),
    inode: buf.readUInt32LE(off + 68),
    cgroupId,
    info,
  };
}

/** Decodes netlink sock_diag messages (a dump reply or destroy notifications). */
export function parseDiagMessages(buf: Buffer): DiagSocket[] {
  const out: DiagSocket[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    const type = buf.readUInt16LE(off + 4);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    if (type === SOCK_DIAG_BY_FAMILY) {
      const s = parseDiagMessage(buf, off + NLMSG_HDRLEN, off + len);
      if (s !== null) out.push(s);
    } else if (type === NLMSG_DONE || type === NLMSG_ERROR) {
      break;
    }
    off += align4(len);
  }
  return out;
}

/** The owner of a socket found through /proc/<pid>/fd. */
export interface ProcOwner {
  readonly pid: number;
  readonly command: string;
}

/**
 * Maps socket inodes to owning processes by reading /proc/<pid>/fd links, for the inodes
 * asked for only. Processes of other users are skipped unless this process may read them.
 */
export function findSocketOwners(inodes: ReadonlySet<number>, procRoot = "/proc"): Map<number, ProcOwner> {
  const found = new Map<number, ProcOwner>();
  if (inodes.size === 0) return found;
  let pids: string[];
  try {
    pids = fs.readdirSync(procRoot).filter((d) => /^[0-9]+$/.test(d));
  } catch {
    return found;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`${procRoot}/${pid}/fd`);
    } catch {
      continue;
    }
    let command: string | null = null;
    for (const fd of fds) {
      let link: string;
      try {
        link = fs.readlinkSync(`${procRoot}/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (!link.startsWith("socket:[")) continue;
      const inode = Number(link.slice(8, -1));
      if (!inodes.has(inode) || found.has(inode)) continue;
      if (command === null) {
        try {
          command = fs.readFileSync(`${procRoot}/${pid}/comm`, "utf8").trim();
        } catch {
          command = "";
        }
      }
      found.set(inode, { pid: Number(pid), command });
      if (found.size === inodes.size) return found;
    }
  }
  return found;
}

/** Inode of this process's network namespace (what sock_diag sees), or null. */
export function ownNetns(): number | null {
  try {
    return fs.statSync("/proc/self/ns/net").ino;
  } catch {
    return null;
  }
}

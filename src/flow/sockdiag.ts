import fs from "node:fs";
import { setImmediate as nextTurn } from "node:timers/promises";
import { addressText } from "./record";

/** One socket from an inet_diag dump or a "socket destroyed" message. */
export interface DiagSocket {
  readonly protocol: "tcp" | "udp";
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
/** The socket's protocol, sent with "socket destroyed" messages (TCP and UDP arrive on one socket). */
const INET_DIAG_PROTOCOL = 10;
const IPPROTO_UDP = 17;
const INET_DIAG_CGROUP_ID = 21;

/** AF_INET / AF_INET6 as the kernel numbers them. */
export const AF_INET = 2;
export const AF_INET6 = 10;
/** Bit masks of inet_diag state selections. */
export const STATE_LISTEN_MASK = 1 << 10;
/** Every state but LISTEN, TIME_WAIT (not a full socket) and CLOSE. */
export const STATE_CONNECTED_MASK = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 11);
/** UDP sockets: ESTABLISHED while connected, CLOSE otherwise (the dump lists bound ones only). */
export const STATE_UDP_MASK = (1 << 1) | (1 << 7);
/** IPPROTO_TCP / IPPROTO_UDP, for diagDump. */
export const PROTO_NUMBER = { tcp: 6, udp: 17 } as const;

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

function parseDiagMessage(buf: Buffer, off: number, end: number, dumped: "tcp" | "udp"): DiagSocket | null {
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
  let protocol = dumped;
  let a = off + INET_DIAG_MSG_LEN;
  while (a + 4 <= end) {
    const len = buf.readUInt16LE(a);
    const type = buf.readUInt16LE(a + 2) & 0x3fff;
    if (len < 4 || a + len > end) break;
    if (type === INET_DIAG_INFO) info = parseTcpInfo(buf, a + 4, len - 4);
    else if (type === INET_DIAG_CGROUP_ID && len >= 12) cgroupId = buf.readBigUInt64LE(a + 4).toString();
    else if (type === INET_DIAG_PROTOCOL && len >= 5) protocol = buf[a + 4] === IPPROTO_UDP ? "udp" : "tcp";
    a += align4(len);
  }
  return {
    protocol,
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
    info: protocol === "tcp" ? info : null,
  };
}

/**
 * Decodes netlink sock_diag messages: a dump reply of `dumped` sockets, or destroy
 * notifications (which name their protocol).
 */
export function parseDiagMessages(buf: Buffer, dumped: "tcp" | "udp" = "tcp"): DiagSocket[] {
  const out: DiagSocket[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    const type = buf.readUInt16LE(off + 4);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    if (type === SOCK_DIAG_BY_FAMILY) {
      const s = parseDiagMessage(buf, off + NLMSG_HDRLEN, off + len, dumped);
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

/** Socket inodes remembered from earlier scans (oldest forgotten first). */
const OWNER_CACHE_MAX = 65_536;
/** fd links read per event-loop turn: each is a readlink on the libuv pool, the loop only collects them. */
const LINKS_PER_TURN = 32;

/**
 * Finds socket owners off the event loop: fd links are read asynchronously, a bounded number
 * per turn, and every socket inode a scan passes is remembered. At most one scan runs and one
 * waits; requests made meanwhile join the waiting one. An inode a whole scan did not find is
 * given up (its owner has left, or may not be read) instead of causing another scan.
 */
export class SocketOwnerScanner {
  private readonly known = new Map<number, ProcOwner>();
  private waiting: { readonly inodes: Set<number>; readonly done: Promise<void> } | null = null;
  private tail: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly procRoot = "/proc") {}

  /** Owners of the inodes asked for; the ones not found are absent from the map. */
  async owners(inodes: Iterable<number>): Promise<Map<number, ProcOwner>> {
    const asked = [...inodes].filter((i) => i !== 0);
    const missing = new Set(asked.filter((i) => !this.known.has(i)));
    if (missing.size > 0 && !this.stopped) {
      if (this.waiting === null) {
        const inodes = new Set<number>();
        const done = this.tail.then(() => {
          this.waiting = null;
          return this.scan(inodes);
        });
        this.waiting = { inodes, done };
        this.tail = done;
      }
      for (const i of missing) this.waiting.inodes.add(i);
      await this.waiting.done;
    }
    const out = new Map<number, ProcOwner>();
    for (const i of asked) {
      const o = this.known.get(i);
      if (o !== undefined) out.set(i, o);
    }
    return out;
  }

  /** Ends scanning: a running scan stops at its next turn. */
  stop(): void {
    this.stopped = true;
  }

  private remember(inode: number, owner: ProcOwner): void {
    this.known.delete(inode);
    this.known.set(inode, owner);
    if (this.known.size > OWNER_CACHE_MAX) this.known.delete(this.known.keys().next().value!);
  }

  private async scan(wanted: Set<number>): Promise<void> {
    const left = new Set([...wanted].filter((i) => !this.known.has(i)));
    if (left.size === 0) return;
    let pids: string[];
    try {
      pids = (await fs.promises.readdir(this.procRoot)).filter((d) => /^[0-9]+$/.test(d));
    } catch {
      return;
    }
    for (const pid of pids) {
      if (this.stopped || left.size === 0) return;
      let fds: string[];
      try {
        fds = await fs.promises.readdir(`${this.procRoot}/${pid}/fd`);
      } catch {
        continue;
      }
      let command: Promise<string> | null = null;
      for (let i = 0; i < fds.length; i += LINKS_PER_TURN) {
        if (this.stopped) return;
        const links = await Promise.all(fds.slice(i, i + LINKS_PER_TURN).map((fd) => fs.promises.readlink(`${this.procRoot}/${pid}/fd/${fd}`).catch(() => "")));
        for (const link of links) {
          if (!link.startsWith("socket:[")) continue;
          const inode = Number(link.slice(8, -1));
          command ??= fs.promises.readFile(`${this.procRoot}/${pid}/comm`, "utf8").then((c) => c.trim(), () => "");
          this.remember(inode, { pid: Number(pid), command: await command });
          left.delete(inode);
        }
        await nextTurn();
      }
    }
  }
}

/** Inode of this process's network namespace (what sock_diag sees), or null. */
export function ownNetns(): number | null {
  try {
    return fs.statSync("/proc/self/ns/net").ino;
  } catch {
    return null;
  }
}

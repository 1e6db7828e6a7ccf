import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { DatagramClassifier } from "../classify/datagram";
import type { ConnectionInfo } from "../connection";
import { closeListenerFd, createListenerFd, loadNative, type SocketAddress, type UdpRelayEvent, type UdpRelayHandle } from "../native";
import { udpSessions, type UdpSessionTable } from "../udp-table";
import { listenerSettings, type ListenerSettings, type TransparentListenerConfig } from "./options";
import type { ListenerCounters, TransparentListenerEvents } from "./transparent-listener";

/** Client datagrams read before a session is announced, at most: what the datagram classifier examines. */
const FIRST_DATAGRAMS = 4;

interface Pending {
  readonly id: string;
  readonly nativeId: number;
  readonly client: SocketAddress;
  readonly dst: SocketAddress;
  readonly acceptedAt: number;
  readonly datagrams: Buffer[];
  readonly classifier: DatagramClassifier;
  timer: NodeJS.Timeout | null;
}

/**
 * UDP capture for the same flows as TransparentListener: the addon's relay owns the socket
 * and the datagrams (native/udp.cc); this announces each new session (client address and
 * port to one original destination) once its first datagrams tell what it is (a DNS query
 * or unknown at the first, a QUIC ClientHello within a few), or after the sniff time.
 */
export class UdpListener extends EventEmitter<TransparentListenerEvents> {
  private current: ListenerSettings;
  readonly name: string;
  readonly counters: ListenerCounters = { accepted: 0, sent: 0, rejected: 0, noOriginalDst: 0 };
  private readonly table: UdpSessionTable;
  private relay: UdpRelayHandle | null = null;
  private bound: SocketAddress | null = null;
  private readonly idPrefix = randomBytes(4).toString("hex");
  private readonly pending = new Map<number, Pending>();
  /** Announced sessions of this listener by relay number. */
  private readonly live = new Map<number, string>();

  constructor(config: TransparentListenerConfig, name: string, table: UdpSessionTable = udpSessions()) {
    super();
    this.current = listenerSettings({ ...config, protocol: "udp" });
    this.name = name;
    this.table = table;
  }

  get settings(): ListenerSettings {
    return this.current;
  }

  /** Takes new settings without a new socket when they need the same one; false (and no change) otherwise. */
  reconfigure(config: TransparentListenerConfig): boolean {
    const next = listenerSettings({ ...config, protocol: "udp" });
    const s = this.current;
    const sameSocket = next.port === s.port && next.address === s.address && next.family === s.family && next.mode === s.mode && next.reusePort === s.reusePort && next.freebind === s.freebind;
    if (!sameSocket) return false;
    this.current = next;
    this.relay?.setLimits(next.udpIdleTimeoutMs, next.maxUdpSessions);
    return true;
  }

  /** Binds; rejects with the addon's typed error (EADDRINUSE, EPERM, …). */
  async start(): Promise<SocketAddress> {
    if (this.relay !== null) throw new Error("listener already started");
    const s = this.current;
    const transparent = s.mode === "tproxy";
    const fd = createListenerFd({ address: s.address, port: s.port, transparent, freebind: s.freebind, reusePort: s.reusePort, v6Only: s.v6Only, udp: true });
    try {
      const { UdpRelay } = loadNative();
      this.relay = new UdpRelay(fd, { transparent, idleTimeoutMs: s.udpIdleTimeoutMs, maxSessions: s.maxUdpSessions, sniffDatagrams: FIRST_DATAGRAMS }, (events) => this.onEvents(events));
    } catch (err) {
      closeListenerFd(fd);
      throw err;
    }
    this.bound = this.relay.address();
    return this.bound!;
  }

  address(): SocketAddress | null {
    return this.bound;
  }

  /** Live sessions: announced ones in the table, plus those whose first datagrams are being read. */
  liveCount(): number {
    return this.table.count(this.name) + this.pending.size;
  }

  /** The relay's counters (sessions, datagrams, over the cap, …), or null when closed. */
  relayStats(): ReturnType<UdpRelayHandle["stats"]> {
    return this.relay?.stats() ?? null;
  }

  /**
   * Closes the socket and ends every session (a UDP session's replies and demultiplexing
   * need the listener's socket, so none can outlive it; a redeploy hands the listener over instead).
   */
  async close(): Promise<void> {
    const relay = this.relay;
    this.relay = null;
    for (const p of this.pending.values()) if (p.timer !== null) clearTimeout(p.timer);
    this.pending.clear();
    if (relay === null) return;
    for (const end of relay.close()) {
      const id = this.live.get(end.id);
      if (id !== undefined) this.table.ended(id, end);
    }
    this.live.clear();
  }

  private onEvents(events: UdpRelayEvent[]): void {
    for (const e of events) {
      if (e.type === "session") this.begin(e.id, e.client, e.dst, e.datagram);
      else if (e.type === "datagram") {
        const p = this.pending.get(e.id);
        if (p !== undefined) this.push(p, e.datagram);
      } else {
        const p = this.pending.get(e.id);
        if (p !== undefined) {
          // Idled out before its first datagrams were read: nothing was announced.
          if (p.timer !== null) clearTimeout(p.timer);
          this.pending.delete(e.id);
          this.counters.rejected++;
          continue;
        }
        const id = this.live.get(e.id);
        if (id === undefined) continue;
        this.live.delete(e.id);
        this.table.ended(id, e);
      }
    }
  }

  private begin(nativeId: number, client: SocketAddress, dst: SocketAddress, datagram: Buffer): void {
    this.counters.accepted++;
    const p: Pending = {
      id: `${this.idPrefix}-u${nativeId.toString(36)}`,
      nativeId,
      client,
      dst,
      acceptedAt: Date.now(),
      datagrams: [],
      classifier: new DatagramClassifier({ maxDatagrams: FIRST_DATAGRAMS }),
      timer: null,
    };
    this.pending.set(nativeId, p);
    if (this.push(p, datagram)) return;
    p.timer = setTimeout(() => this.announce(p), this.current.sniffTimeoutMs);
    p.timer.unref();
  }

  /** Adds a first datagram; true when that decided the session (and it was announced). */
  private push(p: Pending, datagram: Buffer): boolean {
    p.datagrams.push(datagram);
    if (p.classifier.push(datagram) === null && p.datagrams.length < FIRST_DATAGRAMS) return false;
    this.announce(p);
    return true;
  }

  private announce(p: Pending): void {
    if (p.timer !== null) clearTimeout(p.timer);
    p.timer = null;
    if (!this.pending.delete(p.nativeId) || this.relay === null) return;
    const s = this.current;
    const bound = this.bound!;
    const info: { -readonly [K in keyof ConnectionInfo]: ConnectionInfo[K] } = {
      id: p.id,
      protocol: "udp",
      mode: s.mode,
      family: p.client.family,
      localAddress: bound.address,
      localPort: bound.port,
      remoteAddress: p.client.address,
      remotePort: p.client.port,
      firstBytes: p.datagrams[0]!,
      firstDatagrams: p.datagrams,
      acceptedAt: p.acceptedAt,
      readyAt: Date.now(),
    };
    if (s.mode === "tproxy") {
      // A datagram sent to the listener's own address and port came past the TPROXY rule.
      const untranslated = p.dst.port === bound.port && (bound.address === "0.0.0.0" || bound.address === "::" || p.dst.address === bound.address);
      if (untranslated) {
        this.counters.noOriginalDst++;
        info.originalDstError = { code: "ERR_NOT_REDIRECTED", message: `the client sent to the listener itself (${p.dst.address} port ${p.dst.port}), not through a TPROXY rule` };
      } else {
        info.originalDst = { address: p.dst.address, port: p.dst.port, family: p.dst.family, method: "ip_recvorigdstaddr" };
      }
    }
    this.live.set(p.nativeId, p.id);
    this.table.add(info, this.relay, p.nativeId, { listener: this.name, unclaimedTimeoutMs: s.unclaimedTimeoutMs, unclaimedAction: s.unclaimedAction });
    this.counters.sent++;
    this.emit("connection", info);
  }
}

import { EventEmitter } from "node:events";
import type { SocketAddress } from "../native";
import { listenerSettings, type ListenerSettings, type TransparentListenerConfig } from "./options";
import { TransparentListener, type ListenerCounters, type TransparentListenerEvents } from "./transparent-listener";
import { UdpListener } from "./udp-listener";

/** What a `transparent in` node runs: a TCP listener, a UDP one, or both on one port. */
export interface Capture extends EventEmitter<TransparentListenerEvents> {
  readonly name: string;
  readonly settings: ListenerSettings;
  readonly counters: ListenerCounters;
  /** New settings on the same sockets; false (and no change) when they need other ones (the protocol too). */
  reconfigure(config: TransparentListenerConfig): boolean;
  start(): Promise<SocketAddress>;
  address(): SocketAddress | null;
  liveCount(): number;
  close(): Promise<void>;
}

/** TCP and UDP on one port: one capture whose connections and sessions come out as one stream. */
class TcpAndUdp extends EventEmitter<TransparentListenerEvents> implements Capture {
  private readonly tcp: TransparentListener;
  private readonly udp: UdpListener;
  readonly name: string;

  constructor(config: TransparentListenerConfig, name: string) {
    super();
    this.name = name;
    this.tcp = new TransparentListener({ ...config, protocol: "tcp" }, name);
    this.udp = new UdpListener({ ...config, protocol: "udp" }, name);
    for (const part of [this.tcp, this.udp]) {
      part.on("connection", (info) => this.emit("connection", info));
      part.on("rejected", (reason, detail) => this.emit("rejected", reason, detail));
      part.on("error", (err) => this.emit("error", err));
    }
  }

  get settings(): ListenerSettings {
    return { ...this.tcp.settings, protocol: "both" };
  }

  get counters(): ListenerCounters {
    const a = this.tcp.counters;
    const b = this.udp.counters;
    return { accepted: a.accepted + b.accepted, sent: a.sent + b.sent, rejected: a.rejected + b.rejected, noOriginalDst: a.noOriginalDst + b.noOriginalDst };
  }

  reconfigure(config: TransparentListenerConfig): boolean {
    if (listenerSettings(config).protocol !== "both") return false;
    // Both or neither: checking first keeps a half-applied change out.
    const tcp = new TransparentListener({ ...config, protocol: "tcp" }, this.name);
    const s = this.tcp.settings;
    const t = tcp.settings;
    if (t.port !== s.port || t.address !== s.address || t.family !== s.family || t.mode !== s.mode || t.reusePort !== s.reusePort || t.freebind !== s.freebind) return false;
    return this.tcp.reconfigure({ ...config, protocol: "tcp" }) && this.udp.reconfigure({ ...config, protocol: "udp" });
  }

  async start(): Promise<SocketAddress> {
    const bound = await this.tcp.start();
    try {
      await this.udp.start();
    } catch (err) {
      await this.tcp.close();
      throw err;
    }
    return bound;
  }

  address(): SocketAddress | null {
    return this.tcp.address();
  }

  liveCount(): number {
    return this.tcp.liveCount() + this.udp.liveCount();
  }

  async close(): Promise<void> {
    await Promise.all([this.tcp.close(), this.udp.close()]);
  }
}

/** The capture for a listener config: by its protocol, TCP (TransparentListener), UDP (UdpListener) or both. */
export function createCapture(config: TransparentListenerConfig, name: string): Capture {
  const protocol = listenerSettings(config).protocol;
  if (protocol === "udp") return new UdpListener(config, name);
  if (protocol === "both") return new TcpAndUdp(config, name);
  return new TransparentListener(config, name);
}

import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import net from "node:net";
import type { ConnectionInfo } from "../connection";
import { tryParseIp } from "../net/ip";
import { acceptedSocketInfo, closeListenerFd, createListenerFd, getLocalAddress, socketFd, type AcceptedSocket, type SocketAddress } from "../native";
import { runSniffers, sniffersWithFingerprints } from "../classify/classifier";

// Whether the first bytes suffice is all the wait asks: no fingerprints (classify computes
// its own from the same bytes when its rules use them).
const READINESS_SNIFFERS = sniffersWithFingerprints("none");
import { parseProxyHeader } from "../proxy-protocol";
import type { ProxyHeader } from "../proxy-protocol/types";
import { connectionTable, type ConnectionTable } from "../connection-table";
import { listenerSettings, type ListenerSettings, type TransparentListenerConfig } from "./options";

/** Why an accepted connection was dropped before a message was sent. */
export type RejectReason = "proxy-missing" | "proxy-invalid" | "proxy-timeout" | "closed-early" | "listener-closed" | "internal";

/** Counters of one listener. */
export interface ListenerCounters {
  accepted: number;
  sent: number;
  rejected: number;
  noOriginalDst: number;
}

/** Events of a TransparentListener. */
export interface TransparentListenerEvents {
  connection: [info: ConnectionInfo];
  rejected: [reason: RejectReason, detail: string];
  error: [err: Error];
}

/**
 * A TCP listener for traffic that iptables/nft REDIRECT or TPROXY sends to this host.
 * The addon makes the listening socket (transparent when mode is tproxy) and Node serves
 * it. Each accepted connection gets its original destination, an optional PROXY header
 * and its first bytes read, then goes into the process-wide connection table and is
 * announced as a `connection` event.
 */
export class TransparentListener extends EventEmitter<TransparentListenerEvents> {
  private current: ListenerSettings;
  readonly name: string;
  readonly counters: ListenerCounters = { accepted: 0, sent: 0, rejected: 0, noOriginalDst: 0 };
  private readonly table: ConnectionTable;
  private server: net.Server | null = null;
  private readonly pending = new Set<net.Socket>();
  private readonly idPrefix = randomBytes(4).toString("hex");
  private nextId = 0;
  private bound: SocketAddress | null = null;

  /** `name` identifies the listener's connections in the table (a node id). */
  constructor(config: TransparentListenerConfig, name: string, table: ConnectionTable = connectionTable()) {
    super();
    this.current = listenerSettings(config);
    this.name = name;
    this.table = table;
  }

  /** The settings in force: those given at construction, or by the last reconfigure. */
  get settings(): ListenerSettings {
    return this.current;
  }

  /**
   * Takes new settings without closing the socket, when they need the same one (address,
   * port, family, mode and socket options); returns false and changes nothing when they do
   * not. Throws ERR_LISTENER_CONFIG like the constructor. A connection being read keeps
   * the settings it was accepted with.
   */
  reconfigure(config: TransparentListenerConfig): boolean {
    const next = listenerSettings(config);
    const s = this.current;
    const sameSocket =
      next.port === s.port && next.address === s.address && next.family === s.family && next.v6Only === s.v6Only && next.mode === s.mode && next.reusePort === s.reusePort && next.freebind === s.freebind;
    if (!sameSocket) return false;
    this.current = next;
    if (this.server !== null) this.server.maxConnections = next.maxConnections > 0 ? next.maxConnections : Infinity;
    return true;
  }

  /** Binds and listens; rejects with the addon's typed error (EADDRINUSE, EPERM, …). */
  async start(): Promise<SocketAddress> {
    if (this.server !== null) throw new Error("listener already started");
    const s = this.settings;
    const fd = createListenerFd({
      address: s.address,
      port: s.port,
      transparent: s.mode === "tproxy",
      freebind: s.freebind,
      reusePort: s.reusePort,
      v6Only: s.v6Only,
    });
    // allowHalfOpen: a client that sends its request and FIN at once (`printf … | nc`)
    // still waits for the answer; Node must not end our side when the FIN is read.
    // pauseOnConnect: nothing is read until someone asks (the first-bytes reader, or the
    // owner's pipe/resume), so bytes nobody needs in JS stay in the kernel for the splice pump.
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => this.accept(socket));
    if (s.maxConnections > 0) server.maxConnections = s.maxConnections;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ fd }, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      // listen({ fd }) failed before Node took the descriptor over: close it here.
      try {
        closeListenerFd(fd);
      } catch {
        // already closed by Node
      }
      throw err;
    }
    server.on("error", (err) => this.emit("error", err));
    this.server = server;
    this.bound = getLocalAddress(fd);
    return this.bound;
  }

  /** The bound address (after start). */
  address(): SocketAddress | null {
    return this.bound;
  }

  /** Live connections of this listener in the table, plus those still being read. */
  liveCount(): number {
    return this.table.count(this.name) + this.pending.size;
  }

  /**
   * Stops listening at once (the port is free when this resolves), drops connections still
   * being read, and ends table entries of this listener (claimed ones only when
   * keepClaimedOnClose is off).
   */
  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const socket of this.pending) socket.destroy();
    this.pending.clear();
    this.table.closeListener(this.name, this.settings.keepClaimedOnClose);
    if (server === null) return;
    // server.close() closes the listening socket synchronously; its callback waits for
    // connections, which now belong to the table or their owners, so do not wait for it.
    server.close();
    server.unref();
  }

  private accept(socket: net.Socket): void {
    // The settings this connection was accepted with, should a reconfigure come while it is read.
    const s = this.settings;
    this.counters.accepted++;
    const acceptedAt = Date.now();
    // A reset during reading must not become an uncaught 'error'.
    socket.on("error", () => undefined);
    let local: SocketAddress;
    let peer: SocketAddress;
    let originalDst: ConnectionInfo["originalDst"];
    let originalDstError: ConnectionInfo["originalDstError"];
    try {
      // One native call: addresses and the conntrack lookup, no exceptions when the
      // connection simply was not redirected.
      const facts = acceptedSocketInfo(socketFd(socket), s.mode === "redirect");
      local = facts.local;
      peer = facts.peer;
      const found = this.originalDstOf(facts);
      originalDst = found.dst;
      originalDstError = found.error;
    } catch (err) {
      // The socket died between accept and here (EBADF/ENOTCONN): nothing to announce.
      this.reject(socket, "closed-early", (err as Error).message);
      return;
    }
    // Built field by field: conditional object spreads cost microseconds per connection.
    const info: Writable<ConnectionInfo> = {
      id: `${this.idPrefix}-${(this.nextId++).toString(36)}`,
      protocol: "tcp",
      mode: s.mode,
      family: peer.family,
      localAddress: local.address,
      localPort: local.port,
      remoteAddress: peer.address,
      remotePort: peer.port,
      acceptedAt,
    };
    if (originalDst !== undefined) info.originalDst = originalDst;
    if (originalDstError !== undefined) info.originalDstError = originalDstError;
    const peerIp = s.proxyProtocol === "off" ? null : tryParseIp(peer.address);
    const wantProxy = peerIp !== null && s.proxyFrom(peerIp);
    if (!wantProxy && s.sniffBytes === 0) {
      info.readyAt = acceptedAt;
      this.announce(socket, info, Buffer.alloc(0));
      return;
    }
    this.readFirstBytes(socket, wantProxy, (result) => {
      if (result.kind === "reject") {
        this.reject(socket, result.reason, result.detail);
        return;
      }
      const proxy = result.proxy;
      if (proxy !== undefined) {
        info.proxy = proxy;
        // Behind a PROXY-speaking balancer in plain mode, the header is the only witness
        // of where the client was going.
        if (s.mode === "plain" && proxy.command === "proxy" && proxy.destinationAddress !== undefined && proxy.destinationPort !== undefined) {
          const ip = tryParseIp(proxy.destinationAddress);
          if (ip !== null) {
            info.originalDst = { address: ip.text, port: proxy.destinationPort, family: ip.family, method: "proxy-protocol" };
            delete info.originalDstError;
          }
        }
      }
      // A copy: the message must not hold the replay buffer's memory or see it change.
      if (s.sniffBytes > 0) info.firstBytes = Buffer.from(result.data.subarray(0, s.sniffBytes));
      info.readyAt = Date.now();
      this.announce(socket, info, result.data);
    });
  }

  private originalDstOf(facts: AcceptedSocket): { dst?: NonNullable<ConnectionInfo["originalDst"]>; error?: NonNullable<ConnectionInfo["originalDstError"]> } {
    const mode = this.settings.mode;
    if (mode === "plain") return {};
    if (facts.originalDstError !== undefined) {
      this.counters.noOriginalDst++;
      return { error: facts.originalDstError };
    }
    // Under TPROXY nothing was rewritten: the accepted socket's own address is where the
    // client was going, and SO_ORIGINAL_DST would only find the untranslated tuple.
    const dst = mode === "tproxy" ? facts.local : facts.originalDst!;
    const local = facts.local;
    // With conntrack active every connection has an entry; one that was not redirected
    // reports the listener's own address, and forwarding there would loop.
    const bound = this.bound;
    const untranslated =
      mode === "redirect"
        ? dst.address === local.address && dst.port === local.port
        : bound !== null && dst.port === bound.port && (isAny(bound.address) || dst.address === bound.address);
    if (untranslated) {
      this.counters.noOriginalDst++;
      const rule = mode === "tproxy" ? "TPROXY" : "REDIRECT";
      return { error: { code: "ERR_NOT_REDIRECTED", message: `the client connected to the listener itself (${dst.address} port ${dst.port}), not through a ${rule} rule` } };
    }
    return { dst: { address: dst.address, port: dst.port, family: dst.family, method: mode === "tproxy" ? "tproxy-local-address" : "so_original_dst" } };
  }

  private readFirstBytes(
    socket: net.Socket,
    wantProxy: boolean,
    done: (result: { kind: "ok"; data: Buffer; proxy?: ProxyHeader } | { kind: "reject"; reason: RejectReason; detail: string }) => void,
  ): void {
    const s = this.settings;
    this.pending.add(socket);
    let data: Buffer = Buffer.alloc(0);
    let proxy: ProxyHeader | undefined;
    let proxyDone = !wantProxy;
    let finished = false;
    const proxyDeadline = wantProxy ? Date.now() + s.proxyTimeoutMs : 0;
    const finish = (result: Parameters<typeof done>[0]): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onClose);
      socket.pause();
      this.pending.delete(socket);
      done(result);
    };
    const stepProxy = (ended: boolean): boolean => {
      let parsed;
      try {
        parsed = parseProxyHeader(data);
      } catch (err) {
        finish({ kind: "reject", reason: "proxy-invalid", detail: (err as Error).message });
        return false;
      }
      if (parsed.kind === "header") {
        proxy = parsed.header;
        data = data.subarray(parsed.header.length);
      } else if (parsed.kind === "not-proxy") {
        if (s.proxyProtocol === "required") {
          finish({ kind: "reject", reason: "proxy-missing", detail: "a PROXY header is required from this peer" });
          return false;
        }
      } else if (!ended) {
        return false;
      } else if (s.proxyProtocol === "required" || parsed.version !== 0) {
        finish({ kind: "reject", reason: "proxy-missing", detail: "the stream ended inside a PROXY header" });
        return false;
      }
      proxyDone = true;
      return true;
    };
    const check = (ended: boolean): void => {
      if (!proxyDone && !stepProxy(ended)) return;
      if (finished) return;
      // The bytes are read for classification: once the classifiers can decide on what came
      // (a whole HTTP request head or ClientHello, or bytes every classifier declines), more
      // would change nothing, and waiting for them would hold every connection for the wait.
      if (ended || data.length >= s.sniffBytes || (data.length > 0 && runSniffers(data, false, READINESS_SNIFFERS) !== null)) {
        finish(proxy ? { kind: "ok", data, proxy } : { kind: "ok", data });
      }
    };
    const onData = (chunk: Buffer): void => {
      data = data.length === 0 ? chunk : Buffer.concat([data, chunk]);
      check(false);
    };
    const onEnd = (): void => check(true);
    // close() destroys the sockets still being read: that is the listener closing, not the peer.
    const onClose = (): void =>
      finish(
        this.server === null
          ? { kind: "reject", reason: "listener-closed", detail: "the listener closed while reading" }
          : { kind: "reject", reason: "closed-early", detail: "the peer closed before the first bytes were read" },
      );
    const onTimeout = (): void => {
      if (!proxyDone) {
        // A PROXY header arrives at once or not at all: one deadline for it.
        if (Date.now() >= proxyDeadline || s.sniffBytes === 0) {
          if (s.proxyProtocol === "required" || data.length > 0) {
            finish({ kind: "reject", reason: "proxy-timeout", detail: `no complete PROXY header within ${s.proxyTimeoutMs} ms` });
            return;
          }
          proxyDone = true;
        }
      }
      finish(proxy ? { kind: "ok", data, proxy } : { kind: "ok", data });
    };
    const timer = setTimeout(onTimeout, wantProxy ? Math.max(s.proxyTimeoutMs, s.sniffBytes > 0 ? s.sniffTimeoutMs : 0) : s.sniffTimeoutMs);
    timer.unref();
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onClose);
    // Accepted paused (pauseOnConnect): a 'data' listener alone does not start reading.
    socket.resume();
  }

  private announce(socket: net.Socket, info: ConnectionInfo, replay: Buffer): void {
    if (this.server === null) {
      this.reject(socket, "listener-closed", "the listener closed while reading");
      return;
    }
    socket.pause();
    this.table.add(socket, info, {
      listener: this.name,
      replay,
      unclaimedTimeoutMs: this.settings.unclaimedTimeoutMs,
      unclaimedAction: this.settings.unclaimedAction,
    });
    this.counters.sent++;
    this.emit("connection", info);
  }

  private reject(socket: net.Socket, reason: RejectReason, detail: string): void {
    this.counters.rejected++;
    socket.destroy();
    this.emit("rejected", reason, detail);
  }
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };

function isAny(address: string): boolean {
  return address === "0.0.0.0" || address === "::";
}

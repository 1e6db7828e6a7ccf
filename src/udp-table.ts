import type { ConnectionInfo } from "./connection";
import type { UdpRelayHandle, UdpSessionEnd } from "./native";
import type { UnclaimedAction } from "./connection-table";

/** A live UDP session handed to one owner, who forwards or rejects it through `relay`. */
export interface ClaimedUdpSession {
  readonly id: string;
  readonly info: ConnectionInfo;
  readonly owner: string;
  /** The relay that holds the session, and the session's number there. */
  readonly relay: UdpRelayHandle;
  readonly nativeId: number;
}

/** Carries out the `forward` unclaimed action for a UDP session: the forward node registers it. */
export type UnclaimedUdpHandler = (session: ClaimedUdpSession) => void;

interface Entry {
  readonly info: ConnectionInfo;
  readonly relay: UdpRelayHandle;
  readonly nativeId: number;
  readonly listener: string;
  owner: string | null;
  timer: NodeJS.Timeout | null;
  readonly action: UnclaimedAction;
  onEnd: ((end: UdpSessionEnd) => void) | null;
}

/**
 * The process-wide table of live UDP sessions. The datagrams stay in the addon (a relay
 * per listener); messages carry `msg._session.id` and downstream nodes claim a session by
 * id, as for TCP connections. A session nobody claims within its listener's time gets the
 * unclaimed action: `forward` (when a forward node offers it) or `close`, which for UDP
 * drops the session's datagrams until it idles out (a closed port would only invite a retry).
 */
export class UdpSessionTable {
  private readonly entries = new Map<string, Entry>();
  private readonly perListener = new Map<string, number>();
  private handler: UnclaimedUdpHandler | null = null;

  /** Adds an announced session; it leaves the table when the relay reports its end. */
  add(info: ConnectionInfo, relay: UdpRelayHandle, nativeId: number, options: { listener: string; unclaimedTimeoutMs: number; unclaimedAction: UnclaimedAction }): void {
    const entry: Entry = { info, relay, nativeId, listener: options.listener, owner: null, timer: null, action: options.unclaimedAction, onEnd: null };
    this.entries.set(info.id, entry);
    this.perListener.set(entry.listener, (this.perListener.get(entry.listener) ?? 0) + 1);
    if (options.unclaimedTimeoutMs > 0) {
      entry.timer = setTimeout(() => this.expire(info.id), options.unclaimedTimeoutMs);
      entry.timer.unref();
    }
  }

  /** The facts of a live session, or undefined when it is gone (or not a UDP session). */
  info(id: string): ConnectionInfo | undefined {
    return this.entries.get(id)?.info;
  }

  /** Takes ownership of a live, unclaimed session; undefined when it is gone or owned. */
  claim(id: string, owner: string): ClaimedUdpSession | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.owner !== null) return undefined;
    if (entry.timer !== null) clearTimeout(entry.timer);
    entry.timer = null;
    entry.owner = owner;
    return { id, info: entry.info, owner, relay: entry.relay, nativeId: entry.nativeId };
  }

  /** Where the owner's session summary goes when the session ends; false when `owner` does not hold it. */
  onEnd(id: string, owner: string, callback: (end: UdpSessionEnd) => void): boolean {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.owner !== owner) return false;
    entry.onEnd = callback;
    return true;
  }

  /** The relay reported the session's end (idle, or closed): it leaves the table and its owner hears of it. */
  ended(id: string, end: UdpSessionEnd): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    this.forget(id, entry);
    entry.onEnd?.(end);
  }

  /** Ends a session now (any owner's). */
  destroy(id: string): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    const end = entry.relay.end(entry.nativeId);
    if (end !== null) this.ended(id, end);
    else this.forget(id, entry);
  }

  /** Ends the unclaimed sessions of one listener, and the claimed ones too unless `keepClaimed`; returns how many. */
  closeListener(listener: string, keepClaimed: boolean): number {
    let ended = 0;
    for (const [id, entry] of [...this.entries]) {
      if (entry.listener !== listener || (keepClaimed && entry.owner !== null)) continue;
      this.destroy(id);
      ended++;
    }
    return ended;
  }

  /** Live sessions, of one listener when given. */
  count(listener?: string): number {
    if (listener === undefined) return this.entries.size;
    return this.perListener.get(listener) ?? 0;
  }

  /** Registers the `forward` unclaimed action; returns an unregister function. */
  setUnclaimedHandler(handler: UnclaimedUdpHandler): () => void {
    this.handler = handler;
    return () => {
      if (this.handler === handler) this.handler = null;
    };
  }

  private expire(id: string): void {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.owner !== null) return;
    entry.timer = null;
    if (entry.action === "forward" && this.handler !== null) {
      const claimed = this.claim(id, "unclaimed:forward");
      if (claimed !== undefined) {
        try {
          this.handler(claimed);
          return;
        } catch {
          // fall through to dropping it
        }
      }
    }
    entry.owner = "unclaimed:close";
    entry.relay.reject(entry.nativeId, false);
  }

  private forget(id: string, entry: Entry): void {
    if (entry.timer !== null) clearTimeout(entry.timer);
    this.entries.delete(id);
    const left = (this.perListener.get(entry.listener) ?? 1) - 1;
    if (left > 0) this.perListener.set(entry.listener, left);
    else this.perListener.delete(entry.listener);
  }
}

const KEY = Symbol.for("traffic-policy.udp-session-table");

/** The one UDP session table of this process (on globalThis, like connectionTable). */
export function udpSessions(): UdpSessionTable {
  const g = globalThis as { [KEY]?: UdpSessionTable };
  g[KEY] ??= new UdpSessionTable();
  return g[KEY];
}

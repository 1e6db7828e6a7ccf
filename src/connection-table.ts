import type net from "node:net";
import { setMoreBytesSource } from "./classify/more-bytes";
import type { ConnectionInfo } from "./connection";
import { closeOrderly } from "./native";

/** What happens to a connection nobody claimed in time. */
export type UnclaimedAction = "close" | "forward";

/**
 * Carries out an unclaimed action other than `close`: the forward node registers the
 * `forward` handler (to the original destination). It owns the connection from then on.
 */
export type UnclaimedHandler = (connection: ClaimedConnection) => void;

/**
 * A live connection handed to one owner: the socket, its facts, and the bytes already
 * read. The socket is paused: the owner pipes or resumes it (a paused socket never reads
 * the peer's FIN, so it would never close) or destroys it.
 */
export interface ClaimedConnection {
  readonly id: string;
  readonly socket: net.Socket;
  readonly info: ConnectionInfo;
  /**
   * Bytes the listener read (sniffing) that the socket will not deliver again: write them
   * upstream first, in this order, then pipe the socket.
   */
  readonly replay: Buffer;
  readonly owner: string;
}

interface Entry {
  readonly id: string;
  readonly socket: net.Socket;
  readonly info: ConnectionInfo;
  /** Which listener accepted it (node id or a library caller's name). */
  readonly listener: string;
  replay: Buffer;
  owner: string | null;
  /** How the owner ends it (a pump that moved the socket's bytes off Node must stop itself). */
  end: ((reason?: Error) => void) | null;
  timer: NodeJS.Timeout | null;
  readonly timeoutMs: number;
  readonly action: UnclaimedAction;
  /** Called once when the connection leaves the table (see whenGone). */
  gone: Array<() => void> | null;
  /** What classify named it, for the live view. */
  facts: ConnectionFacts | null;
  /** Bytes each way so far, from the owner that moves them (a forwarder). */
  bytes: (() => ConnectionBytes) | null;
}

/** What a classifier said about a live connection. */
export interface ConnectionFacts {
  readonly protocol: string;
  readonly sni?: string;
}

/** Payload bytes of a live connection so far, each way. */
export interface ConnectionBytes {
  readonly toUpstream: number;
  readonly toClient: number;
}

/** One live connection as the operator's view shows it (a copy: holds no socket). */
export interface LiveConnection {
  readonly id: string;
  readonly info: ConnectionInfo;
  readonly listener: string;
  readonly owner: string | null;
  readonly facts: ConnectionFacts | null;
  readonly bytes: ConnectionBytes;
}

/** Counters of one table, for status and tests. */
export interface TableStats {
  readonly live: number;
  readonly claimed: number;
  readonly unclaimedClosed: number;
  readonly unclaimedForwarded: number;
}

/**
 * The process-wide table of live accepted connections. Node-RED clones messages, so
 * sockets stay here and messages carry `msg._session.id`; downstream nodes claim the
 * connection by id. A connection not claimed within its listener's timeout gets the
 * listener's unclaimed action.
 */
export class ConnectionTable {
  private readonly entries = new Map<string, Entry>();
  private readonly handlers = new Map<UnclaimedAction, UnclaimedHandler>();
  /** Live entries per listener: status asks for this on every connection. */
  private readonly perListener = new Map<string, number>();
  private unclaimedClosed = 0;
  private unclaimedForwarded = 0;

  /** Adds an accepted connection; it leaves the table when the socket closes. */
  add(
    socket: net.Socket,
    info: ConnectionInfo,
    options: { listener: string; replay: Buffer; unclaimedTimeoutMs: number; unclaimedAction: UnclaimedAction },
  ): void {
    const entry: Entry = {
      id: info.id,
      socket,
      info,
      listener: options.listener,
      replay: options.replay,
      owner: null,
      end: null,
      timer: null,
      timeoutMs: options.unclaimedTimeoutMs,
      action: options.unclaimedAction,
      gone: null,
      facts: null,
      bytes: null,
    };
    this.entries.set(info.id, entry);
    this.perListener.set(entry.listener, (this.perListener.get(entry.listener) ?? 0) + 1);
    socket.once("close", () => this.forget(info.id));
    this.arm(entry);
  }

  /** The facts of a live connection, or undefined when it is gone. */
  info(id: string): ConnectionInfo | undefined {
    return this.entries.get(id)?.info;
  }

  /**
   * The socket of a live connection, for reading facts about it (addresses, socket
   * options) without owning it: do not read from, write to or end it.
   */
  socketOf(id: string): net.Socket | undefined {
    const entry = this.entries.get(id);
    return entry === undefined || entry.socket.destroyed ? undefined : entry.socket;
  }

  /**
   * Calls `fn` once when the connection ends (its socket closed, or the table ended it),
   * whoever owns it then; a counter of open connections releases its count here. False,
   * and no call, when the connection is already gone.
   */
  whenGone(id: string, fn: () => void): boolean {
    const entry = this.entries.get(id);
    if (entry === undefined) return false;
    (entry.gone ??= []).push(fn);
    return true;
  }

  /**
   * Takes ownership of a live, unclaimed connection: the unclaimed timer stops and the
   * caller must end or hand back the socket. Undefined when it is gone or already owned.
   */
  claim(id: string, owner: string): ClaimedConnection | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.owner !== null || entry.socket.destroyed) return undefined;
    this.disarm(entry);
    entry.owner = owner;
    const replay = entry.replay;
    // The replay bytes go to the first owner only: they are written upstream once.
    entry.replay = Buffer.alloc(0);
    return { id, socket: entry.socket, info: entry.info, replay, owner };
  }

  /**
   * Hands a claimed connection back (the owner decided not to handle it); bytes it read
   * and did not use go back in front of the replay buffer. The unclaimed timer restarts.
   */
  release(id: string, owner: string, unread: Buffer = Buffer.alloc(0)): boolean {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.owner !== owner) return false;
    entry.owner = null;
    entry.end = null;
    entry.bytes = null;
    entry.replay = unread.length > 0 ? Buffer.concat([unread, entry.replay]) : entry.replay;
    this.arm(entry);
    return true;
  }

  /**
   * Reads on in an unclaimed connection for a classifier that needs more of its first
   * bytes: resolves once more than `have` bytes were read (or the peer ended the stream,
   * or `deadline`, epoch ms, passed) with every byte read so far, up to `maxBytes`. The
   * bytes stay in the replay buffer, so a forwarder still sends them upstream first.
   * Resolves null when the connection is gone or owned.
   */
  readMore(id: string, have: number, maxBytes: number, deadline: number): Promise<{ bytes: Buffer; ended: boolean } | null> {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.owner !== null || entry.socket.destroyed) return Promise.resolve(null);
    const socket = entry.socket;
    const snapshot = (): { bytes: Buffer; ended: boolean } => ({
      bytes: entry.replay.length > maxBytes ? entry.replay.subarray(0, maxBytes) : entry.replay,
      ended: socket.readableEnded,
    });
    if (entry.replay.length > have || entry.replay.length >= maxBytes || socket.readableEnded || Date.now() >= deadline) {
      return Promise.resolve(snapshot());
    }
    return new Promise((resolve) => {
      const finish = (value: { bytes: Buffer; ended: boolean } | null): void => {
        clearTimeout(timer);
        socket.off("data", onData);
        socket.off("end", onEnd);
        socket.off("close", onClose);
        // Back to rest until an owner claims it (or the unclaimed timer ends it).
        if (!socket.destroyed) socket.pause();
        resolve(value);
      };
      const onData = (chunk: Buffer): void => {
        entry.replay = entry.replay.length === 0 ? chunk : Buffer.concat([entry.replay, chunk]);
        if (entry.replay.length > have) finish(snapshot());
      };
      const onEnd = (): void => finish({ ...snapshot(), ended: true });
      const onClose = (): void => finish(null);
      // A loop busy past the deadline runs this timer before it polls the socket: the
      // decision waits for that poll (setImmediate runs after it), so bytes the peer sent in
      // time are not mistaken for silence (a server-first protocol) under load.
      const timer = setTimeout(() => setImmediate(() => finish(snapshot())), Math.max(0, deadline - Date.now()));
      timer.unref();
      socket.on("data", onData);
      socket.once("end", onEnd);
      socket.once("close", onClose);
      socket.resume();
    });
  }

  /**
   * Registers how the owner of a claimed connection ends it: `destroy` and `closeListener`
   * call this instead of closing the socket, whose fd may be in use by someone else (a
   * native pump works on its own duplicate). False when `owner` does not hold it.
   */
  onEnd(id: string, owner: string, end: (reason?: Error) => void): boolean {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.owner !== owner) return false;
    entry.end = end;
    return true;
  }

  /**
   * Ends a connection (any owner's) and removes it: through its owner's end when it
   * registered one, else in order (FIN) unless for an error.
   */
  destroy(id: string, reason?: Error): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    this.forget(id);
    if (entry.owner !== null && entry.end !== null) entry.end(reason);
    else if (reason === undefined) closeOrderly(entry.socket);
    else entry.socket.destroy(reason);
  }

  /**
   * Ends the unclaimed connections of one listener, and the claimed ones too unless
   * `keepClaimed`; returns how many were ended.
   */
  closeListener(listener: string, keepClaimed: boolean): number {
    let ended = 0;
    for (const entry of [...this.entries.values()]) {
      if (entry.listener !== listener || (keepClaimed && entry.owner !== null)) continue;
      this.destroy(entry.id);
      ended++;
    }
    return ended;
  }

  /** Records what a classifier named a live connection (shown in the live view). */
  describe(id: string, facts: ConnectionFacts): void {
    const entry = this.entries.get(id);
    if (entry !== undefined) entry.facts = facts;
  }

  /** Registers where the owner of a claimed connection counts its bytes. False when `owner` does not hold it. */
  onBytes(id: string, owner: string, read: () => ConnectionBytes): boolean {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.owner !== owner) return false;
    entry.bytes = read;
    return true;
  }

  /**
   * Up to `max` live connections, newest first (they are kept in accept order). Before an
   * owner moves bytes, the client's bytes are what the listener read ahead.
   */
  list(max = Infinity): LiveConnection[] {
    const out: LiveConnection[] = [];
    const all = [...this.entries.values()];
    for (let i = all.length - 1; i >= 0 && out.length < max; i--) {
      const e = all[i]!;
      out.push({
        id: e.id,
        info: e.info,
        listener: e.listener,
        owner: e.owner,
        facts: e.facts,
        bytes: e.bytes?.() ?? { toUpstream: e.replay.length, toClient: 0 },
      });
    }
    return out;
  }

  /** Live connections per owning node (the listener while unclaimed). */
  countByOwner(): Map<string, number> {
    const out = new Map<string, number>();
    for (const e of this.entries.values()) {
      const who = e.owner ?? e.listener;
      out.set(who, (out.get(who) ?? 0) + 1);
    }
    return out;
  }

  /** Number of live connections, of one listener when given. */
  count(listener?: string): number {
    if (listener === undefined) return this.entries.size;
    return this.perListener.get(listener) ?? 0;
  }

  stats(): TableStats {
    let claimed = 0;
    for (const entry of this.entries.values()) if (entry.owner !== null) claimed++;
    return { live: this.entries.size, claimed, unclaimedClosed: this.unclaimedClosed, unclaimedForwarded: this.unclaimedForwarded };
  }

  /** Registers the handler of an unclaimed action (`forward`, by the forward node); returns an unregister function. */
  setUnclaimedHandler(action: Exclude<UnclaimedAction, "close">, handler: UnclaimedHandler): () => void {
    this.handlers.set(action, handler);
    return () => {
      if (this.handlers.get(action) === handler) this.handlers.delete(action);
    };
  }

  /** True when an unclaimed action can be carried out in this process. */
  canDo(action: UnclaimedAction): boolean {
    return action === "close" || this.handlers.has(action);
  }

  private arm(entry: Entry): void {
    this.disarm(entry);
    if (entry.timeoutMs <= 0) return;
    entry.timer = setTimeout(() => this.expire(entry.id), entry.timeoutMs);
    entry.timer.unref();
  }

  private disarm(entry: Entry): void {
    if (entry.timer !== null) clearTimeout(entry.timer);
    entry.timer = null;
  }

  private expire(id: string): void {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.owner !== null) return;
    entry.timer = null;
    const handler = entry.action === "close" ? undefined : this.handlers.get(entry.action);
    if (handler !== undefined) {
      const claimed = this.claim(id, `unclaimed:${entry.action}`);
      if (claimed !== undefined) {
        this.unclaimedForwarded++;
        try {
          handler(claimed);
          return;
        } catch (err) {
          this.destroy(id, err as Error);
          return;
        }
      }
    }
    // `close`, or `forward` before any forward node exists: end it rather than hold it open.
    this.unclaimedClosed++;
    this.destroy(id);
  }

  private forget(id: string): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    this.disarm(entry);
    this.entries.delete(id);
    const left = (this.perListener.get(entry.listener) ?? 1) - 1;
    if (left > 0) this.perListener.set(entry.listener, left);
    else this.perListener.delete(entry.listener);
    const gone = entry.gone;
    entry.gone = null;
    if (gone !== null) for (const fn of gone) fn();
  }
}

const KEY = Symbol.for("traffic-policy.connection-table");

/**
 * The one table of this process. Kept on globalThis so that two copies of the package
 * code (dist and sources, or two install paths) still share it.
 */
export function connectionTable(): ConnectionTable {
  const g = globalThis as { [KEY]?: ConnectionTable };
  if (g[KEY] === undefined) {
    g[KEY] = new ConnectionTable();
    // Classifiers ask the table for more first bytes of a live connection.
    setMoreBytesSource(g[KEY]);
  }
  return g[KEY];
}

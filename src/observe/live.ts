import type { FlowEvent } from "../events/types";
import { connectionTable, type ConnectionTable } from "../connection-table";
import { trafficMetrics, type TrafficMetrics } from "./metrics";

/** One live connection in the operator's view. */
export interface LiveRow {
  readonly id: string;
  /** The socket peer, `address:port` (`[v6]:port`). */
  readonly client: string;
  /** Where the client meant to go; null when the listener learned no original destination. */
  readonly destination: string | null;
  /** What classify named it (`tls`, `http1`, …); null until a classify node saw it. */
  readonly protocol: string | null;
  readonly sni: string | null;
  /** The node that holds it: its owner (a forward node), else the listener that accepted it. */
  readonly node: string;
  readonly listener: string;
  readonly bytesToUpstream: number;
  readonly bytesToClient: number;
  readonly ageMs: number;
}

/** One remote address a flow source saw, with the bytes of its closed connections. */
export interface Talker {
  readonly remote: string;
  /** The local process of its last connection, when known. */
  readonly comm: string | null;
  readonly bytes: number;
  readonly connections: number;
}

/** What the live view shows at one moment. */
export interface LiveSnapshot {
  readonly time: number;
  /** Live connections in the table (rows holds at most the cap). */
  readonly total: number;
  readonly rows: readonly LiveRow[];
  /** Counter totals per node: metric name → node id → value. */
  readonly counters: Record<string, Record<string, number>>;
  readonly talkers: readonly Talker[];
}

/** Rows one snapshot carries: the editor renders them all at up to two updates a second. */
export const LIVE_ROWS_MAX = 500;
/** Remote addresses the top-talker table keeps before it forgets the smallest half. */
const TALKERS_MAX = 1024;

const endpoint = (address: string, port: number): string => (address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`);

/** Bytes of closed flows per remote address, bounded: the largest talkers stay. */
export class TopTalkers {
  private readonly byRemote = new Map<string, { comm: string | null; bytes: number; connections: number }>();

  add(events: readonly FlowEvent[]): void {
    for (const e of events) {
      if (e.type !== "flow-close") continue;
      const t = this.byRemote.get(e.remoteIp) ?? { comm: null, bytes: 0, connections: 0 };
      t.bytes += e.bytesSent + e.bytesReceived;
      t.connections++;
      t.comm = e.comm ?? t.comm;
      this.byRemote.set(e.remoteIp, t);
    }
    if (this.byRemote.size > TALKERS_MAX) {
      const keep = this.top(TALKERS_MAX / 2);
      this.byRemote.clear();
      for (const t of keep) this.byRemote.set(t.remote, { comm: t.comm, bytes: t.bytes, connections: t.connections });
    }
  }

  /** The `n` remote addresses with the most bytes. */
  top(n: number): Talker[] {
    return [...this.byRemote]
      .map(([remote, t]) => ({ remote, ...t }))
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, n);
  }
}

/** The live rows of a connection table, newest first, at most `max`. */
export function liveRows(table: ConnectionTable, max = LIVE_ROWS_MAX, now = Date.now()): LiveRow[] {
  return table.list(max).map((c) => ({
    id: c.id,
    client: endpoint(c.info.remoteAddress, c.info.remotePort),
    destination: c.info.originalDst === undefined ? null : endpoint(c.info.originalDst.address, c.info.originalDst.port),
    protocol: c.facts?.protocol ?? null,
    sni: c.facts?.sni ?? null,
    node: c.owner ?? c.listener,
    listener: c.listener,
    bytesToUpstream: c.bytes.toUpstream,
    bytesToClient: c.bytes.toClient,
    ageMs: now - c.info.acceptedAt,
  }));
}

/** How long a watch lasts unless renewed: an editor that went away stops the feed. */
export const WATCH_LEASE_MS = 30_000;
/** At most two snapshots a second. */
export const LIVE_INTERVAL_MS = 500;

/**
 * Publishes live snapshots while someone watches: `watch()` (an open sidebar, renewed
 * while it stays open) starts or extends a lease; without one nothing is built or sent.
 */
export class LiveFeed {
  private timer: NodeJS.Timeout | null = null;
  private until = 0;
  private busy = false;
  readonly talkers = new TopTalkers();

  constructor(
    private publish: (snapshot: LiveSnapshot) => void = () => undefined,
    private readonly table: ConnectionTable = connectionTable(),
    private readonly metrics: TrafficMetrics = trafficMetrics(),
  ) {}

  /** Where snapshots go from now on (Node-RED's comms). */
  publishTo(publish: (snapshot: LiveSnapshot) => void): void {
    this.publish = publish;
  }

  /** Starts or extends the feed for `ms`; the first snapshot goes out at once. */
  watch(ms = WATCH_LEASE_MS): void {
    this.until = Math.max(this.until, Date.now() + ms);
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.tick(), LIVE_INTERVAL_MS);
    this.timer.unref();
    this.tick();
  }

  /** The snapshot of this moment. */
  async snapshot(): Promise<LiveSnapshot> {
    return {
      time: Date.now(),
      total: this.table.count(),
      rows: liveRows(this.table),
      counters: await this.metrics.perNode(),
      talkers: this.talkers.top(10),
    };
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.until = 0;
  }

  private tick(): void {
    if (Date.now() > this.until) {
      this.stop();
      return;
    }
    // A snapshot still being built (a slow scrape of the registry) is not queued behind.
    if (this.busy) return;
    this.busy = true;
    void this.snapshot()
      .then((s) => this.publish(s))
      .catch(() => undefined)
      .finally(() => (this.busy = false));
  }
}

const KEY = Symbol.for("traffic-policy.live-feed");

/** The live feed of this process. */
export function liveFeed(): LiveFeed {
  const g = globalThis as { [KEY]?: LiveFeed };
  g[KEY] ??= new LiveFeed();
  return g[KEY];
}

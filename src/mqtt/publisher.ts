import { TrafficError } from "../errors";
import type { Spool, SpoolRecord } from "./spool";

/** MQTT 5 PUBLISH properties the publisher passes through (MQTT 5.0 §3.3.2.3). */
export interface PublishProperties {
  contentType?: string;
  /** Seconds the broker keeps the message for subscribers that are not connected. */
  messageExpiryInterval?: number;
  userProperties?: Record<string, string | string[]>;
  payloadFormatIndicator?: boolean;
}

/** One message to publish. */
export interface OutgoingMessage {
  topic: string;
  payload: string | Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  properties?: PublishProperties;
}

/**
 * What the publisher needs from an MQTT client; mqtt.js's MqttClient fits. The callback
 * runs when the broker acknowledged the message (QoS 1/2) or the client wrote it (QoS 0).
 * The options object may be passed again for later messages: the transport must not change it.
 */
export interface PublishTransport {
  publish(
    topic: string,
    payload: string | Buffer,
    options: { qos: 0 | 1 | 2; retain: boolean; properties?: PublishProperties },
    callback: (err?: Error | null) => void,
  ): unknown;
}

/** What to do with a new message when the queue is full. */
export type OverflowPolicy = "drop-oldest" | "block";

export interface PublisherOptions {
  /** Most messages held in memory, waiting or in flight (the bound of the queue). */
  maxQueued: number;
  overflow: OverflowPolicy;
  /**
   * Most messages published and not yet acknowledged. The broker's receive maximum
   * (MQTT 5 CONNACK) lowers it for a connection.
   */
  maxInFlight: number;
  /** Optional on-disk copy of the queue that survives restarts. */
  spool?: Spool & { readonly nextSeq: number };
}

/** Counts the publisher keeps since it was made. */
export interface PublisherStats {
  connected: boolean;
  /** Waiting to be published (not yet handed to the client). */
  queued: number;
  /** Handed to the client, not yet called back: QoS 1/2 awaiting acknowledgement, and at QoS 0 the one message waiting for the socket to drain. */
  inFlight: number;
  sent: number;
  dropped: number;
  spooled: number;
  /** Producers waiting for room under the `block` policy. */
  blocked: number;
}

interface Entry {
  seq: number;
  message: OutgoingMessage;
  /**
   * While the entry is with the client: the token of that publish call, which its callback
   * must bring back to count; 0 otherwise. A callback from an earlier hand-over (the entry
   * was taken back and published again) then changes nothing.
   */
  token: number;
}

/**
 * A bounded, ordered queue in front of an MQTT client. Messages go out in the order they
 * were queued, at most `maxInFlight` (or the broker's receive maximum) unacknowledged at
 * a time; while the connection is down they wait. Messages already handed to the client
 * stay with it across a reconnect: mqtt.js resends its unacknowledged QoS 1/2 packets
 * first, so order is kept and a message is sent again only when MQTT's at-least-once
 * says it may be. When the queue is full, `drop-oldest` drops the oldest waiting message
 * and counts it; `block` makes `enqueue` return a promise that settles when there is room.
 *
 * QoS 0 has no acknowledgement: its callback is the socket write. mqtt.js calls it at once
 * while the socket takes data, and on the socket's `drain` once it pushes back. The pump
 * stops at the first QoS 0 message that waits for `drain` (the held message) and goes on
 * when it is written: handing more to a full socket only moves the queue into the
 * socket's buffer, out of reach of the overflow policy, with one drain listener each.
 */
export class Publisher {
  private readonly waiting: Entry[] = [];
  private head = 0;
  /** Entries with the client, not yet called back: QoS 1/2 awaiting PUBACK/PUBCOMP, and the held QoS 0. */
  private inFlight = 0;
  /** The QoS 0 entry whose write waits for the socket to drain; nothing more goes out meanwhile. */
  private held: Entry | null = null;
  private lastToken = 0;
  /** The options object of the last publish, reused while qos, retain and properties repeat. */
  private publishOptions: { qos: 0 | 1 | 2; retain: boolean; properties?: PublishProperties } = { qos: 0, retain: false };
  private readonly blockedProducers: Array<{ entry: Entry; resolve: () => void }> = [];
  private transport: PublishTransport | null = null;
  private window: number;
  private nextSeq: number;
  private sent = 0;
  private dropped = 0;
  private closed = false;
  private pumping = false;
  private drainWaiters: Array<() => void> = [];
  private readonly spool: (Spool & { readonly nextSeq: number }) | undefined;

  constructor(private readonly options: PublisherOptions) {
    if (!(Number.isInteger(options.maxQueued) && options.maxQueued >= 1)) {
      throw new TrafficError("ERR_MQTT_CONFIG", "queue size must be an integer ≥ 1", "maxQueued");
    }
    if (!(Number.isInteger(options.maxInFlight) && options.maxInFlight >= 1 && options.maxInFlight <= 65535)) {
      throw new TrafficError("ERR_MQTT_CONFIG", "in-flight window must be an integer from 1 to 65535", "maxInFlight");
    }
    if (options.overflow !== "drop-oldest" && options.overflow !== "block") {
      throw new TrafficError("ERR_MQTT_CONFIG", `unknown overflow policy ${String(options.overflow)}`, "overflow");
    }
    this.window = options.maxInFlight;
    this.spool = options.spool;
    const restored: SpoolRecord[] = this.spool ? this.spool.load() : [];
    this.nextSeq = this.spool ? this.spool.nextSeq : 1;
    for (const record of restored) {
      this.waiting.push({ seq: record.seq, message: record.message, token: 0 });
    }
    while (this.queuedCount() > options.maxQueued) this.dropOldest();
  }

  /** Counts for status and the stats event. */
  stats(): PublisherStats {
    return {
      connected: this.transport !== null,
      queued: this.waiting.length - this.head,
      inFlight: this.inFlight,
      sent: this.sent,
      dropped: this.dropped,
      spooled: this.spool ? this.spool.size : 0,
      blocked: this.blockedProducers.length,
    };
  }

  /**
   * Queues one message. Returns undefined when it was taken at once, or a promise (only
   * under `block`) that settles when it was taken; it rejects if the publisher closes first.
   */
  enqueue(message: OutgoingMessage): Promise<void> | undefined {
    if (this.closed) throw new TrafficError("ERR_MQTT_CONFIG", "publisher is closed", "enqueue");
    const entry: Entry = { seq: this.nextSeq++, message, token: 0 };
    if (this.queuedCount() >= this.options.maxQueued) {
      if (this.options.overflow === "block") {
        return new Promise<void>((resolve) => this.blockedProducers.push({ entry, resolve }));
      }
      this.dropOldest();
    }
    this.admit(entry);
    this.pump();
    return undefined;
  }

  /** The connection is up: publish through `transport`, at most `receiveMaximum` in flight. */
  connected(transport: PublishTransport, receiveMaximum?: number): void {
    if (transport !== this.transport) this.takeBackHeld();
    this.transport = transport;
    this.window = Math.max(1, Math.min(this.options.maxInFlight, receiveMaximum ?? 65535));
    this.pump();
  }

  /** The connection is down: hold new messages until `connected` is called again. */
  disconnected(): void {
    this.transport = null;
    this.takeBackHeld();
  }

  /** Resolves when nothing waits and nothing is in flight, or after `timeoutMs`; true when drained. */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.isDrained()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.drainWaiters.push(done);
    });
  }

  /**
   * Stops taking messages and writes the spool. What was not sent stays in the spool
   * (when there is one) for the next start; without one it is lost and counted as dropped.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.transport = null;
    const lost = this.queuedCount() + this.blockedProducers.length;
    if (!this.spool) this.dropped += lost;
    for (const producer of this.blockedProducers) {
      if (this.spool) this.spool.append({ seq: producer.entry.seq, message: producer.entry.message });
      producer.resolve();
    }
    this.blockedProducers.length = 0;
    this.spool?.close();
  }

  /**
   * Closes the publisher and gives back, oldest first, the messages it had not handed to
   * the client yet (waiting, then those of blocked producers), for a successor to send.
   * Messages with the client are not given back: they are acknowledged or, when the
   * client ends first, counted as dropped. With a spool nothing is given back: the spool
   * keeps the messages for the next start itself.
   */
  handOff(): OutgoingMessage[] {
    if (this.closed || this.spool) {
      this.close();
      return [];
    }
    const rest = this.waiting.slice(this.head).map((entry) => entry.message);
    for (const producer of this.blockedProducers) rest.push(producer.entry.message);
    this.waiting.length = 0;
    this.head = 0;
    for (const producer of this.blockedProducers) producer.resolve();
    this.blockedProducers.length = 0;
    this.close();
    return rest;
  }

  private queuedCount(): number {
    return this.waiting.length - this.head + this.inFlight;
  }

  private isDrained(): boolean {
    return this.waiting.length === this.head && this.inFlight === 0 && this.blockedProducers.length === 0;
  }

  /**
   * The connection of the held QoS 0 message is gone: a closed socket never emits `drain`,
   * so its callback would never come and the pump would wait forever. Its bytes sat at the
   * end of the socket's unsent buffer; it goes back in front of what waits, to be written
   * on the next connection.
   */
  private takeBackHeld(): void {
    const entry = this.held;
    if (entry === null) return;
    this.held = null;
    entry.token = 0;
    this.inFlight--;
    this.requeue(entry);
  }

  /** Puts an entry taken back from the client in front of what waits, in sequence order. */
  private requeue(entry: Entry): void {
    let at = this.head;
    while (at < this.waiting.length && (this.waiting[at] as Entry).seq < entry.seq) at++;
    this.waiting.splice(at, 0, entry);
  }

  private admit(entry: Entry): void {
    this.waiting.push(entry);
    this.spool?.append({ seq: entry.seq, message: entry.message });
  }

  /** Drops the oldest message not yet handed to the client (in-flight ones are the client's). */
  private dropOldest(): void {
    if (this.head < this.waiting.length) {
      const entry = this.waiting[this.head] as Entry;
      this.waiting[this.head] = undefined as unknown as Entry;
      this.head++;
      this.spool?.discard(entry.seq);
      this.dropped++;
      this.compactWaiting();
    } else {
      // Everything queued is in flight: the new message is the one that cannot be kept.
      this.dropped++;
    }
  }

  private compactWaiting(): void {
    // Shift the array only now and then, so taking from the head stays O(1) amortised.
    if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting.splice(0, this.head);
      this.head = 0;
    }
  }

  private pump(): void {
    const transport = this.transport;
    // mqtt.js may run a QoS 0 callback synchronously inside publish(): the loop below then
    // simply goes on, instead of recursing once per message.
    if (transport === null || this.pumping) return;
    this.pumping = true;
    try {
      this.pumpLoop(transport);
    } finally {
      this.pumping = false;
    }
    this.compactWaiting();
    this.admitBlocked();
  }

  private pumpLoop(transport: PublishTransport): void {
    while (this.held === null && this.inFlight < this.window && this.head < this.waiting.length && this.transport === transport) {
      const entry = this.waiting[this.head] as Entry;
      this.waiting[this.head] = undefined as unknown as Entry;
      this.head++;
      const token = ++this.lastToken;
      entry.token = token;
      this.inFlight++;
      const m = entry.message;
      transport.publish(m.topic, m.payload, this.optionsFor(m), (err) => this.settled(entry, token, err ?? undefined));
      // Not called back yet: the socket pushes back (see the class comment).
      if (m.qos === 0 && entry.token === token) this.held = entry;
    }
  }

  /** mqtt.js copies the options it is given, so one object serves every message alike. */
  private optionsFor(m: OutgoingMessage): { qos: 0 | 1 | 2; retain: boolean; properties?: PublishProperties } {
    const last = this.publishOptions;
    if (last.qos === m.qos && last.retain === m.retain && last.properties === m.properties) return last;
    const opts: { qos: 0 | 1 | 2; retain: boolean; properties?: PublishProperties } = { qos: m.qos, retain: m.retain };
    if (m.properties !== undefined) opts.properties = m.properties;
    this.publishOptions = opts;
    return opts;
  }

  private settled(entry: Entry, token: number, err: Error | undefined): void {
    if (entry.token !== token) return;
    entry.token = 0;
    this.inFlight--;
    if (this.held === entry) this.held = null;
    if (err !== undefined && typeof (err as { code?: unknown }).code === "number") {
      // An MQTT 5 reason code ≥ 0x80 in PUBACK/PUBREC: the broker refused this message
      // (not authorised, quota, topic invalid). Sending it again would fail again.
      this.dropped++;
      this.spool?.discard(entry.seq);
    } else if (err !== undefined && !this.closed) {
      // The client gave the message up (it was ended or lost its store): put it
      // back in front of what waits, in sequence order, to be sent on the next connection.
      this.requeue(entry);
      this.transport = null;
      return;
    } else if (err === undefined) {
      this.sent++;
      this.spool?.ack(entry.seq);
    }
    this.admitBlocked();
    if (this.transport !== null) this.pump();
    if (this.isDrained()) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  private admitBlocked(): void {
    while (this.blockedProducers.length > 0 && this.queuedCount() < this.options.maxQueued) {
      const producer = this.blockedProducers.shift() as { entry: Entry; resolve: () => void };
      this.admit(producer.entry);
      producer.resolve();
    }
  }
}

import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { TrafficError } from "../errors";
import type { OutgoingMessage } from "./publisher";

/** One queued message with its sequence number (increasing, never reused in a spool). */
export interface SpoolRecord {
  readonly seq: number;
  readonly message: OutgoingMessage;
}

/** Where queued messages survive a restart. The publisher calls these in its own order. */
export interface Spool {
  /** Records not yet acknowledged when the spool was last closed, in sequence order. */
  load(): SpoolRecord[];
  append(record: SpoolRecord): void;
  /** The broker acknowledged (QoS 1/2) or the client wrote (QoS 0) this record. */
  ack(seq: number): void;
  /** The record will never be sent (overflow): it counts as done for the spool. */
  discard(seq: number): void;
  /** Writes what is buffered to disk now. */
  flush(): void;
  close(): void;
  /** Records appended and not yet acknowledged or discarded. */
  readonly size: number;
}

interface Line {
  s: number;
  t: string;
  p: string;
  q: 0 | 1 | 2;
  r: boolean;
  x?: OutgoingMessage["properties"];
}

/**
 * An append-only NDJSON file of queued messages plus a small `<file>.acked` holding the
 * highest sequence number below which everything is done. Writes are batched per event
 * loop turn and on flush/close, so a Node-RED stop or redeploy loses nothing; after a
 * power loss the last turn's records may be missing and records acknowledged since the
 * last watermark write are sent again (MQTT at-least-once allows the duplicates).
 * The file is truncated whenever everything in it is done, and rewritten when its done
 * prefix is large, so it stays as big as the backlog.
 */
export class FileSpool implements Spool {
  private fd: number;
  private pending: string[] = [];
  private flushScheduled = false;
  private watermark = 0;
  private lastSeq = 0;
  /** Seqs not yet done, in insertion order, which is sequence order: the first is the oldest. */
  private live = new Set<number>();
  private bytes = 0;
  private doneSinceCompact = 0;
  private watermarkWritten = -1;
  private closed = false;

  constructor(
    readonly file: string,
    private readonly compactBytes = 16 * 1024 * 1024,
  ) {
    try {
      mkdirSync(dirname(file), { recursive: true });
      this.fd = openSync(file, "a+");
      this.bytes = fstatSync(this.fd).size;
    } catch (err) {
      throw new TrafficError("ERR_SPOOL", `cannot open spool: ${(err as Error).message}`, file);
    }
  }

  get size(): number {
    return this.live.size;
  }

  /** The next sequence number to use, one above every record this spool has seen. */
  get nextSeq(): number {
    return Math.max(this.lastSeq, this.watermark) + 1;
  }

  load(): SpoolRecord[] {
    const ackFile = `${this.file}.acked`;
    this.watermark = existsSync(ackFile) ? Number(readFileSync(ackFile, "utf8").trim()) || 0 : 0;
    this.lastSeq = Math.max(this.lastSeq, this.watermark);
    const out: SpoolRecord[] = [];
    const text = readFileSync(this.file, "utf8");
    for (const raw of text.split("\n")) {
      if (raw === "") continue;
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        // A torn last line after a crash: everything before it is intact.
        continue;
      }
      this.lastSeq = Math.max(this.lastSeq, line.s);
      if (line.s <= this.watermark) continue;
      const message: OutgoingMessage = { topic: line.t, payload: line.p, qos: line.q, retain: line.r };
      if (line.x !== undefined) message.properties = line.x;
      out.push({ seq: line.s, message });
      this.live.add(line.s);
    }
    out.sort((a, b) => a.seq - b.seq);
    return out;
  }

  append(record: SpoolRecord): void {
    const m = record.message;
    const line: Line = { s: record.seq, t: m.topic, p: typeof m.payload === "string" ? m.payload : m.payload.toString("utf8"), q: m.qos, r: m.retain };
    if (m.properties !== undefined) line.x = m.properties;
    this.pending.push(`${JSON.stringify(line)}\n`);
    this.live.add(record.seq);
    this.lastSeq = Math.max(this.lastSeq, record.seq);
    this.schedule();
  }

  ack(seq: number): void {
    this.done(seq);
  }

  discard(seq: number): void {
    this.done(seq);
  }

  private done(seq: number): void {
    if (!this.live.delete(seq)) return;
    this.doneSinceCompact++;
    this.schedule();
  }

  private schedule(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (!this.closed) this.flush();
    });
  }

  flush(): void {
    if (this.pending.length > 0) {
      const chunk = Buffer.from(this.pending.join(""));
      this.pending = [];
      writeSync(this.fd, chunk);
      this.bytes += chunk.length;
    }
    if (this.live.size === 0 && this.bytes > 0) {
      // Everything in the file is done: start it again empty. The watermark stays, so
      // sequence numbers keep increasing across the truncation.
      this.rewrite([]);
    } else if (this.bytes > this.compactBytes && this.doneSinceCompact > this.live.size) {
      this.compact();
    }
    // Everything below the oldest live record is done, whatever order the acks came in.
    const oldest = this.live.values().next();
    this.watermark = oldest.done ? this.lastSeq : oldest.value - 1;
    if (this.watermark !== this.watermarkWritten) {
      writeFileSync(`${this.file}.acked`, `${this.watermark}\n`);
      this.watermarkWritten = this.watermark;
    }
  }

  /** Rewrites the file with only the records still live. */
  private compact(): void {
    const text = readFileSync(this.file, "utf8");
    const keep: string[] = [];
    for (const raw of text.split("\n")) {
      if (raw === "") continue;
      const seq = Number(/^\{"s":(\d+)/.exec(raw)?.[1] ?? Number.NaN);
      if (this.live.has(seq)) keep.push(`${raw}\n`);
    }
    this.rewrite(keep);
  }

  private rewrite(lines: string[]): void {
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, lines.join(""));
    closeSync(this.fd);
    renameSync(tmp, this.file);
    this.fd = openSync(this.file, "a+");
    this.bytes = fstatSync(this.fd).size;
    this.doneSinceCompact = 0;
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    closeSync(this.fd);
  }
}

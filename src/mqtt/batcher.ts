/**
 * Groups serialized JSON values per topic into one JSON array message, flushed when a
 * topic has `maxCount` values or its first value is `maxDelayMs` old, whichever comes
 * first, so a high-rate source pays the per-message cost once per batch.
 */
export class Batcher {
  private readonly open = new Map<string, { items: string[]; timer: NodeJS.Timeout }>();

  constructor(
    private readonly maxCount: number,
    private readonly maxDelayMs: number,
    private readonly flushTo: (topic: string, jsonArray: string, count: number) => void,
  ) {}

  /** Adds one JSON text (already serialized) for `topic`. */
  add(topic: string, json: string): void {
    let batch = this.open.get(topic);
    if (batch === undefined) {
      batch = { items: [], timer: setTimeout(() => this.flush(topic), this.maxDelayMs) };
      this.open.set(topic, batch);
    }
    batch.items.push(json);
    if (batch.items.length >= this.maxCount) this.flush(topic);
  }

  /** Flushes one topic's batch, or every batch when no topic is given. */
  flush(topic?: string): void {
    const topics = topic === undefined ? [...this.open.keys()] : [topic];
    for (const t of topics) {
      const batch = this.open.get(t);
      if (batch === undefined) continue;
      clearTimeout(batch.timer);
      this.open.delete(t);
      this.flushTo(t, `[${batch.items.join(",")}]`, batch.items.length);
    }
  }

  /** Values waiting in open batches. */
  get size(): number {
    let n = 0;
    for (const b of this.open.values()) n += b.items.length;
    return n;
  }
}

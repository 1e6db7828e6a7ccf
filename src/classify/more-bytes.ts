/**
 * How a classifier asks a live connection for more of its first bytes. The listener
 * (`transparent in`) owns the sockets in its process-wide table and registers itself
 * here; the classify node asks it by session id while its limits allow.
 */
export interface MoreBytesSource {
  /**
   * Resolves once more than `have` bytes of the stream are available (or the stream
   * ended, or `deadline` — epoch milliseconds — passed), with every byte from the start
   * of the stream up to `maxBytes`. Resolves null when the connection is not known.
   */
  readMore(id: string, have: number, maxBytes: number, deadline: number): Promise<{ bytes: Buffer; ended: boolean } | null>;
}

// On globalThis, like the connection table, so two copies of the package code share it.
const KEY = Symbol.for("traffic-policy.more-bytes-source");
type Holder = { [KEY]?: MoreBytesSource | null };

/** Registers (or with null, removes) the process-wide source of more bytes. */
export function setMoreBytesSource(source: MoreBytesSource | null): void {
  (globalThis as Holder)[KEY] = source;
}

/** The registered source, or null when no listener offers more bytes. */
export function moreBytesSource(): MoreBytesSource | null {
  return (globalThis as Holder)[KEY] ?? null;
}

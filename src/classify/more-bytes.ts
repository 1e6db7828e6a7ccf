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

let registered: MoreBytesSource | null = null;

/** Registers (or with null, removes) the process-wide source of more bytes. */
export function setMoreBytesSource(source: MoreBytesSource | null): void {
  registered = source;
}

/** The registered source, or null when no listener offers more bytes. */
export function moreBytesSource(): MoreBytesSource | null {
  return registered;
}

import { TrafficError } from "../errors";
import { clip } from "../net/ip";
import { HopNode, parseListNode } from "./node-address";

/** Parses a whole X-Forwarded-For header into hops, left (client side) to right (nearest proxy). */
export function parseXForwardedFor(header: string): HopNode[] {
  const hops: HopNode[] = [];
  const list = new XffList(header);
  for (let node = list.previous(); node !== undefined; node = list.previous()) hops.push(node);
  return hops.reverse();
}

/**
 * Reads an X-Forwarded-For list from the right, one entry at a time, so that entries
 * left of the first untrusted hop (written by whoever the client is) are never parsed:
 * junk there cannot fail a request that a trusted proxy forwarded correctly.
 */
export class XffList {
  private end: number;
  constructor(private readonly header: string) {
    this.end = header.length;
  }

  /** The next entry to the left, or undefined at the start. Empty list elements are skipped. */
  previous(): HopNode | undefined {
    const h = this.header;
    while (this.end > 0) {
      const comma = h.lastIndexOf(",", this.end - 1);
      let start = comma + 1;
      let stop = this.end;
      this.end = comma < 0 ? 0 : comma;
      while (start < stop && isOws(h.charCodeAt(start))) start++;
      while (stop > start && isOws(h.charCodeAt(stop - 1))) stop--;
      if (stop === start) continue;
      const token = start === 0 && stop === h.length ? h : h.slice(start, stop);
      for (let i = 0; i < token.length; i++) {
        const c = token.charCodeAt(i);
        if (c <= 32 || c >= 127) {
          throw new TrafficError("ERR_XFF_SYNTAX", `invalid character in ${JSON.stringify(clip(token))}`, "X-Forwarded-For");
        }
      }
      return parseListNode(token, "ERR_XFF_SYNTAX", "X-Forwarded-For");
    }
    return undefined;
  }

  /** True when entries remain to the left. */
  get hasMore(): boolean {
    for (let i = this.end - 1; i >= 0; i--) {
      const c = this.header.charCodeAt(i);
      if (c !== 44 && !isOws(c)) return true;
    }
    return false;
  }
}

function isOws(c: number): boolean {
  return c === 32 || c === 9;
}

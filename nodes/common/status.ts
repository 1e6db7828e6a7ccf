import type { Node, NodeStatus } from "node-red";

/** Shortens status text to what the editor shows well: under 20 characters unless a longer `max` is given. */
export function statusText(text: string, max = 19): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A count short enough for a status: 9999, 12k, 3M. */
export function compactCount(n: number): string {
  if (n < 10_000) return String(n);
  if (n < 10_000_000) return `${Math.round(n / 1000)}k`;
  return `${Math.round(n / 1_000_000)}M`;
}

/** Labelled counts for a status, in the given order: `tls 1 · web 8 · other 2`. */
export function countsText(parts: ReadonlyArray<readonly [label: string, count: number]>): string {
  return parts.map(([label, count]) => `${label} ${compactCount(count)}`).join(" · ");
}

/**
 * The longest status text of counts that name what they count (`allowed 2 · denied 1 ·
 * no match 1`): longer than an error's short reason, still one line under a node.
 */
export const COUNTS_STATUS_MAX = 48;

/**
 * Sets node status at most every `intervalMs`: a node that sees thousands of messages a
 * second must not flood the editor's comms. The last status always lands. A status given
 * as a function is made only when it is shown: a node that counts per message passes one,
 * so that the text is not built for every message the throttle drops.
 */
export function throttledStatus(node: Node, intervalMs = 250, maxChars = 19): { set(status: NodeStatus | (() => NodeStatus)): void; clear(): void } {
  let pending: NodeStatus | (() => NodeStatus) | null = null;
  let timer: NodeJS.Timeout | null = null;
  let last = 0;
  const flush = (): void => {
    timer = null;
    if (pending !== null) {
      const status = typeof pending === "function" ? pending() : pending;
      last = Date.now();
      node.status({ ...status, text: status.text === undefined ? undefined : statusText(String(status.text), maxChars) } as NodeStatus);
      pending = null;
    }
  };
  return {
    set(status: NodeStatus | (() => NodeStatus)): void {
      pending = status;
      if (timer !== null) return;
      const wait = last + intervalMs - Date.now();
      if (wait <= 0) flush();
      else timer = setTimeout(flush, wait);
    },
    clear(): void {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      pending = null;
    },
  };
}

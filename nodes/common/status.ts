import type { Node, NodeStatus } from "node-red";

/** Shortens status text to what the editor shows well (under 20 characters). */
export function statusText(text: string): string {
  return text.length > 19 ? `${text.slice(0, 18)}…` : text;
}

/**
 * Sets node status at most every `intervalMs`: a node that sees thousands of messages a
 * second must not flood the editor's comms. The last status always lands.
 */
export function throttledStatus(node: Node, intervalMs = 250): { set(status: NodeStatus): void; clear(): void } {
  let pending: NodeStatus | null = null;
  let timer: NodeJS.Timeout | null = null;
  let last = 0;
  const flush = (): void => {
    timer = null;
    if (pending !== null) {
      last = Date.now();
      node.status(pending);
      pending = null;
    }
  };
  return {
    set(status: NodeStatus): void {
      pending = { ...status, text: status.text === undefined ? undefined : statusText(String(status.text)) } as NodeStatus;
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

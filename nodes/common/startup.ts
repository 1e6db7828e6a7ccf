import type { Node, NodeAPI, NodeStatus } from "node-red";

// Whether the runtime's flows have started, per runtime event bus (a test may start several).
const started = new WeakMap<object, boolean>();

/** Follows the runtime's flows:starting / flows:started events; call once from each node's register(). */
export function watchFlowStarts(RED: NodeAPI): void {
  const events = RED.events;
  if (started.has(events)) return;
  started.set(events, false);
  events.on("flows:starting", () => started.set(events, false));
  events.on("flows:started", () => started.set(events, true));
}

/**
 * Runs `fn` once the flows have started (at once, on the next tick, when they have).
 * Node-RED collects a flow's Catch and Status nodes only after it has created every node,
 * so an error or status from a node's start would reach the log and the editor but no
 * Catch or Status node. Waits at most `maxWaitMs`, should the event never come.
 */
export function whenFlowsStarted(RED: NodeAPI, fn: () => void, maxWaitMs = 10_000): void {
  let ran = false;
  const run = (): void => {
    if (ran) return;
    ran = true;
    RED.events.off("flows:started", run);
    clearTimeout(timer);
    fn();
  };
  const now = started.get(RED.events) === true;
  const timer = setTimeout(run, now ? 0 : maxWaitMs);
  timer.unref();
  if (!now) RED.events.once("flows:started", run);
}

/** Reports a failure of a node's start as its status and as an error with a message, which Catch nodes receive. */
export function reportStartFailure(RED: NodeAPI, node: Node, text: string, code: string | null, status: NodeStatus): void {
  node.status(status);
  whenFlowsStarted(RED, () => {
    node.error(text, { topic: "error", payload: { code } });
    // Again, for Status nodes that did not exist yet.
    node.status(status);
  });
}

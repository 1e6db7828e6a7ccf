import type { Node, NodeAPI, NodeStatus } from "node-red";

// Per runtime event bus (a test may start several): whether the flows have started, and
// what waits for them. One listener each, however many nodes wait.
interface FlowStarts {
  started: boolean;
  waiting: Set<() => void>;
}
const buses = new WeakMap<object, FlowStarts>();

/** Follows the runtime's flows:starting / flows:started events; call once from each node's register(). */
export function watchFlowStarts(RED: NodeAPI): void {
  const events = RED.events;
  if (buses.has(events)) return;
  const state: FlowStarts = { started: false, waiting: new Set() };
  buses.set(events, state);
  events.on("flows:starting", () => (state.started = false));
  events.on("flows:started", () => {
    state.started = true;
    const due = [...state.waiting];
    state.waiting.clear();
    for (const fn of due) fn();
  });
}

/**
 * Runs `fn` once the flows have started (on the next tick, when they have). Node-RED
 * collects a flow's Catch and Status nodes only after it has created every node, so an
 * error or status from a node's start would reach the log and the editor but no Catch or
 * Status node. Waits at most `maxWaitMs`, should the event never come.
 */
export function whenFlowsStarted(RED: NodeAPI, fn: () => void, maxWaitMs = 10_000): void {
  const state = buses.get(RED.events);
  let ran = false;
  const run = (): void => {
    if (ran) return;
    ran = true;
    state?.waiting.delete(run);
    clearTimeout(timer);
    fn();
  };
  const now = state?.started === true;
  const timer = setTimeout(run, now ? 0 : maxWaitMs);
  timer.unref();
  if (!now) state?.waiting.add(run);
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

// Per runtime event bus: the handover kinds whose release is already wired to it.
const handoverWatches = new WeakMap<object, Set<string>>();

/**
 * Ends what a redeploy parked for a node's next instance: `started` runs when the flows
 * have started (what nobody took by then is not wanted), `stopping` when the runtime stops
 * for good (Node-RED exits right after that event, so it must finish before it returns).
 * Once per runtime event bus and `kind`.
 */
export function watchHandovers(RED: NodeAPI, kind: string, started: () => void, stopping: () => void): void {
  const events = RED.events;
  const kinds = handoverWatches.get(events) ?? new Set<string>();
  handoverWatches.set(events, kinds);
  if (kinds.has(kind)) return;
  kinds.add(kind);
  events.on("flows:started", started);
  events.on("runtime-event", (event: { id?: string; payload?: { state?: string; deploy?: boolean } }) => {
    if (event.id === "runtime-state" && event.payload?.state === "stop" && event.payload.deploy !== true) stopping();
  });
}

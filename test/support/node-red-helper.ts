import helper from "node-red-node-test-helper";
import type { Node } from "node-red";

helper.init(require.resolve("node-red"));

export { helper };

/** Waits for the next message a helper node receives. */
export function nextMessage<T = Record<string, unknown>>(node: Node, timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message at ${node.id} within ${timeoutMs} ms`)), timeoutMs);
    node.once("input", (msg: T) => {
      clearTimeout(timer);
      resolve(msg);
    });
  });
}

/** Collects the messages helper nodes receive, keyed by node id. */
export function collect(nodes: Record<string, Node>): Record<string, Array<Record<string, unknown>>> {
  const seen: Record<string, Array<Record<string, unknown>>> = {};
  for (const [key, node] of Object.entries(nodes)) {
    seen[key] = [];
    node.on("input", (msg: Record<string, unknown>) => seen[key]!.push(msg));
  }
  return seen;
}

/** Calls `fn` with the first argument of every call the node makes to `method` (status, error, send…). */
export function onCall(node: Node, method: "status" | "error" | "warn" | "send" | "log", fn: (arg: unknown) => void): void {
  (node as unknown as NodeJS.EventEmitter).on(`call:${method}`, (call: { args: unknown[] }) => fn(call.args[0]));
}

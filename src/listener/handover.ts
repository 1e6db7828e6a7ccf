import type { ConnectionInfo } from "../connection";
import { removeRules, removeRulesNow, type ManagedRules } from "../nft/managed-rules";
import { connectionTable } from "../session/table";
import type { TransparentListener } from "./transparent-listener";

/**
 * A running listener and the kernel rules that divert traffic to it, kept between one
 * owner's stop and its successor's start (a redeploy stops a node and starts a new
 * instance with the same id). Closing the socket and removing the rules in between would
 * send the connections of that moment past the policy, and lose SYNs: a packet for a
 * 4-tuple the host still has a socket for (a proxied connection's TIME_WAIT, whose client
 * port is used again) is matched to that socket on arrival, and without the rules it is
 * forwarded, which the kernel refuses for a packet that carries a socket.
 */
export interface HandedOver {
  readonly listener: TransparentListener;
  readonly rules: ManagedRules | null;
  /** Connections accepted while nobody owned the listener, not announced yet. */
  readonly waiting: ConnectionInfo[];
}

interface Parked extends HandedOver {
  readonly timer: NodeJS.Timeout;
}

const KEY = Symbol.for("traffic-policy.parked-listeners");

/** One registry per process, on globalThis like the connection table, so every copy of the code shares it. */
function parked(): Map<string, Parked> {
  const g = globalThis as { [KEY]?: Map<string, Parked> };
  if (g[KEY] === undefined) {
    const registry = new Map<string, Parked>();
    g[KEY] = registry;
    // Whatever nobody took must not outlive the process: the kernel rules would.
    process.once("exit", releaseParkedNow);
  }
  return g[KEY];
}

/**
 * Keeps an owner's listener running (and its rules installed) for a successor with the same
 * owner name, for at most `graceMs`; then the rules are removed and the listener closed.
 * Connections the listener announced before are ended as at a close (unclaimed ones, and
 * claimed ones unless its settings keep them): their messages went to the flow that stopped.
 * Connections it accepts from now on wait for the successor.
 */
export function parkListener(owner: string, listener: TransparentListener, rules: ManagedRules | null, graceMs: number, waiting: readonly ConnectionInfo[] = []): void {
  const registry = parked();
  const earlier = registry.get(owner);
  if (earlier !== undefined) void release(owner, earlier);
  connectionTable().closeListener(listener.name, listener.settings.keepClaimedOnClose);
  const queue = [...waiting];
  listener.removeAllListeners();
  listener.on("connection", (info) => queue.push(info));
  // Nobody reports it while parked; an 'error' without a listener would throw.
  listener.on("error", () => undefined);
  const timer = setTimeout(() => {
    const entry = registry.get(owner);
    if (entry !== undefined) void release(owner, entry);
  }, graceMs);
  timer.unref();
  registry.set(owner, { listener, rules, waiting: queue, timer });
}

/**
 * Takes what the owner's predecessor parked, if anything: the caller owns it from now on
 * (closes the listener and removes the rules when done). The listener still queues new
 * connections into `waiting` until the caller replaces its listeners (removeAllListeners).
 */
export function takeParkedListener(owner: string): HandedOver | undefined {
  const registry = parked();
  const entry = registry.get(owner);
  if (entry === undefined) return undefined;
  registry.delete(owner);
  clearTimeout(entry.timer);
  return { listener: entry.listener, rules: entry.rules, waiting: entry.waiting };
}

async function release(owner: string, entry: Parked): Promise<void> {
  const registry = parked();
  if (registry.get(owner) === entry) registry.delete(owner);
  clearTimeout(entry.timer);
  // Rules first: nothing is diverted to the port once its listener is gone.
  if (entry.rules !== null) await removeRules(entry.rules).catch(() => undefined);
  await entry.listener.close();
}

/** Removes the rules and closes the listeners nobody took (the flows started without them). */
export async function releaseParked(): Promise<void> {
  const registry = parked();
  await Promise.all([...registry].map(([owner, entry]) => release(owner, entry)));
}

/** releaseParked for a process that is stopping: done when it returns. */
export function releaseParkedNow(): void {
  const registry = parked();
  for (const [owner, entry] of [...registry]) {
    registry.delete(owner);
    clearTimeout(entry.timer);
    if (entry.rules !== null) removeRulesNow(entry.rules);
    // close() does its work before its first await: the socket is closed on return.
    void entry.listener.close();
  }
}

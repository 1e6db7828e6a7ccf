import type { ConnectionInfo } from "../connection";
import { removeRules, removeRulesNow, type ManagedRules } from "../nft/managed-rules";
import { handovers, type Handovers } from "../handover-registry";
import { connectionTable } from "../connection-table";
import { udpSessions } from "../udp-table";
import type { Capture } from "./capture";

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
  readonly listener: Capture;
  readonly rules: ManagedRules | null;
  /** Connections accepted while nobody owned the listener, not announced yet. */
  readonly waiting: ConnectionInfo[];
}

/** Parked ones; whatever nobody took must not outlive the process: the kernel rules would. */
function parked(): Handovers<HandedOver> {
  const registry = handovers<HandedOver>("listener", release);
  if (!exitHooked) {
    exitHooked = true;
    process.once("exit", releaseParkedNow);
  }
  return registry;
}
let exitHooked = false;

/**
 * Keeps an owner's listener running (and its rules installed) for a successor with the same
 * owner name, for at most `graceMs`; then the rules are removed and the listener closed.
 * Connections the listener announced before are ended as at a close (unclaimed ones, and
 * claimed ones unless its settings keep them): their messages went to the flow that stopped.
 * Connections it accepts from now on wait for the successor.
 */
export function parkListener(owner: string, listener: Capture, rules: ManagedRules | null, graceMs: number, waiting: readonly ConnectionInfo[] = []): void {
  const registry = parked();
  connectionTable().closeListener(listener.name, listener.settings.keepClaimedOnClose);
  udpSessions().closeListener(listener.name, listener.settings.keepClaimedOnClose);
  const queue = [...waiting];
  listener.removeAllListeners();
  listener.on("connection", (info) => queue.push(info));
  // Nobody reports it while parked; an 'error' without a listener would throw.
  listener.on("error", () => undefined);
  registry.park(owner, { listener, rules, waiting: queue }, graceMs);
}

/**
 * Takes what the owner's predecessor parked, if anything: the caller owns it from now on
 * (closes the listener and removes the rules when done). The listener still queues new
 * connections into `waiting` until the caller replaces its listeners (removeAllListeners).
 */
export function takeParkedListener(owner: string): HandedOver | undefined {
  return parked().take(owner);
}

async function release(entry: HandedOver): Promise<void> {
  // Rules first: nothing is diverted to the port once its listener is gone.
  if (entry.rules !== null) await removeRules(entry.rules).catch(() => undefined);
  await entry.listener.close();
}

/** Removes the rules and closes the listeners nobody took (the flows started without them). */
export function releaseParked(): Promise<void> {
  return parked().releaseAll();
}

/** releaseParked for a process that is stopping: done when it returns. */
export function releaseParkedNow(): void {
  for (const entry of parked().takeAll()) {
    if (entry.rules !== null) removeRulesNow(entry.rules);
    // close() does its work before its first await: the socket is closed on return.
    void entry.listener.close();
  }
}

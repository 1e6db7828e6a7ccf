import { connectionTable } from "../connection-table";
import { udpSessions } from "../udp-table";
import { forwardConnection, type ForwardOptions, type ForwardSummary } from "./forward";
import { forwardUdpSession } from "./udp";

export { forwardUdpSession, rejectUdpSession, type UdpRejectMode } from "./udp";

export {
  forwardConnection,
  rejectConnection,
  loopReason,
  clientOf,
  identityHeader,
  describeConnectError,
  setAutoPump,
  type ForwardEnd,
  type ForwardIdentity,
  type ForwardOptions,
  type ForwardSession,
  type ForwardSummary,
  type ForwardTarget,
  type PumpChoice,
  type RejectMode,
} from "./forward";

/** One holder of the table's `forward` unclaimed action: its options and where summaries go. */
interface UnclaimedOwner {
  readonly options: Omit<ForwardOptions, "target">;
  readonly onSummary: (summary: ForwardSummary) => void;
}

const owners = new Map<string, UnclaimedOwner>();
let unregister: (() => void) | null = null;
let unregisterUdp: (() => void) | null = null;

/**
 * The owner that forwards unclaimed connections: the lowest owner id (node ids compare
 * as strings), so the choice does not depend on the order in which nodes started.
 */
function chosenOwner(): UnclaimedOwner | undefined {
  let best: string | undefined;
  for (const id of owners.keys()) if (best === undefined || id < best) best = id;
  return best === undefined ? undefined : owners.get(best);
}

/**
 * Makes the listeners' unclaimed action `forward` work (to the original destination)
 * while at least one owner holds it; the options and summary callback of the owner with
 * the lowest id are used. Only a forwarder whose own connections go to their original
 * destination may hold it: its identity (PROXY header, transparent bind) and mark then
 * go where it sends connections anyway. Returns the release function.
 */
export function holdUnclaimedForward(owner: string, options: Omit<ForwardOptions, "target">, onSummary: (summary: ForwardSummary) => void): () => void {
  owners.set(owner, { options, onSummary });
  if (unregister === null) {
    unregister = connectionTable().setUnclaimedHandler("forward", (connection) => {
      const chosen = chosenOwner();
      const session = forwardConnection(connection, { ...(chosen?.options ?? {}), target: "original" });
      void session.done.then((summary) => chosen?.onSummary(summary));
    });
    unregisterUdp = udpSessions().setUnclaimedHandler((udp) => {
      const chosen = chosenOwner();
      const session = forwardUdpSession(udp, { ...(chosen?.options ?? {}), target: "original" });
      void session.done.then((summary) => chosen?.onSummary(summary));
    });
  }
  return () => {
    owners.delete(owner);
    if (owners.size === 0 && unregister !== null) {
      unregister();
      unregister = null;
      unregisterUdp?.();
      unregisterUdp = null;
    }
  };
}

import { connectionTable } from "../session/table";
import { forwardConnection, type ForwardOptions, type ForwardSummary } from "./forward";

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

/**
 * Makes the listeners' unclaimed action `forward` work (to the original destination)
 * while at least one owner holds it; the first owner's options and summary callback are
 * used. Returns the release function.
 */
export function holdUnclaimedForward(owner: string, options: Omit<ForwardOptions, "target">, onSummary: (summary: ForwardSummary) => void): () => void {
  owners.set(owner, { options, onSummary });
  if (unregister === null) {
    unregister = connectionTable().setUnclaimedHandler("forward", (connection) => {
      const first = owners.values().next().value as UnclaimedOwner | undefined;
      const session = forwardConnection(connection, { ...(first?.options ?? {}), target: "original" });
      void session.done.then((summary) => first?.onSummary(summary));
    });
  }
  return () => {
    owners.delete(owner);
    if (owners.size === 0 && unregister !== null) {
      unregister();
      unregister = null;
    }
  };
}

import { handovers, type Handovers } from "../handover-registry";
import type { ForwardSession, ForwardSummary } from "./forward";

/**
 * A forwarded or rejected connection or UDP session whose summary is still to come, with
 * what its message carried. A redeploy keeps live sessions flowing (a UDP session's ends
 * after its idle time); the node's next instance reports them.
 */
export interface PendingSummary<M> {
  /** The input message the summary goes out with. */
  readonly msg: M;
  /** Settles with the summary when the session ends. */
  readonly summary: Promise<ForwardSummary>;
  /** The live session, for its node's count and for ending it; null for a reject. */
  readonly session: ForwardSession | null;
}

/** Parked summaries nobody took: the sessions run on; only the messages are not sent. */
function parked(): Handovers<PendingSummary<unknown>[]> {
  return handovers<PendingSummary<unknown>[]>("forward-summaries", () => undefined);
}

/** Keeps a stopped node's pending summaries for its next instance (same node id), for at most `graceMs`. */
export function parkSummaries<M>(owner: string, pending: readonly PendingSummary<M>[], graceMs: number): void {
  if (pending.length > 0) parked().park(owner, [...pending], graceMs);
}

/** Takes what the owner's predecessor parked: the caller reports those summaries from now on. */
export function takeSummaries<M>(owner: string): PendingSummary<M>[] {
  return (parked().take(owner) ?? []) as PendingSummary<M>[];
}

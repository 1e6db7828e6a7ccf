import type { FlowEvent } from "../events/types";
import { connectionTable } from "../connection-table";
import { liveFeed } from "./live";
import { trafficMetrics } from "./metrics";

export { TrafficMetrics, trafficMetrics, MAX_LABEL_SETS, OVERFLOW_VALUE, DURATION_BUCKETS, type MqttCounts } from "./metrics";
export { LiveFeed, liveFeed, liveRows, TopTalkers, LIVE_ROWS_MAX, LIVE_INTERVAL_MS, WATCH_LEASE_MS, type LiveRow, type LiveSnapshot, type Talker } from "./live";

/** A classify node routed a stream: counted, and named in the live view when it is a live connection. */
export function observeClassification(node: string, sessionId: string | null, protocol: string, sni: string | undefined, rule: string | null): void {
  trafficMetrics().classification(node, protocol, rule);
  if (sessionId !== null) connectionTable().describe(sessionId, sni === undefined ? { protocol } : { protocol, sni });
}

/** A flow source delivered events: counted, and closed flows feed the top talkers. */
export function observeFlowEvents(node: string, events: readonly FlowEvent[]): void {
  trafficMetrics().flowSourceEvents(node, events);
  liveFeed().talkers.add(events);
}

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { FlowEvent } from "../events/types";
import type { ForwardSummary } from "../forward";
import type { PublisherStats } from "../mqtt/publisher";

/**
 * Label sets one metric may hold. Labels come from configuration (node ids, rule names)
 * and closed sets (protocols, ends, verdicts), never from traffic, so this is a backstop:
 * a flow with thousands of rules must not make a scrape cost what Hubble's users complain of.
 */
export const MAX_LABEL_SETS = 2000;
/** What a label value becomes once its metric holds MAX_LABEL_SETS label sets. */
export const OVERFLOW_VALUE = "_other";
/** Seconds; from a refused connect (milliseconds) to a long-lived stream (an hour). */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600];

type Labels<L extends string> = Record<L, string>;

/**
 * The label sets one metric has used, capped: past the cap a new set keeps its `node`
 * and has every other label replaced by OVERFLOW_VALUE.
 */
class LabelSets<L extends string> {
  private readonly sets = new Map<string, Labels<L>>();
  constructor(private readonly remove: (labels: Labels<L>) => void) {}

  admit(labels: Labels<L>): Labels<L> {
    const key = JSON.stringify(labels);
    if (this.sets.has(key)) return labels;
    if (this.sets.size >= MAX_LABEL_SETS) {
      const folded = Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, k === "node" ? v : OVERFLOW_VALUE])) as Labels<L>;
      const foldedKey = JSON.stringify(folded);
      if (!this.sets.has(foldedKey)) this.sets.set(foldedKey, folded);
      return folded;
    }
    this.sets.set(key, labels);
    return labels;
  }

  /** Removes the series of nodes `keep` says no longer exist. */
  retain(keep: (node: string) => boolean): void {
    for (const [key, labels] of this.sets) {
      const node = (labels as Partial<Record<string, string>>).node;
      if (node !== undefined && !keep(node)) {
        this.remove(labels);
        this.sets.delete(key);
      }
    }
  }
}

/** What a `mqtt events` node reports: its publisher's counters. */
export type MqttCounts = Pick<PublisherStats, "queued" | "sent" | "dropped">;

/** Live connections per owning node, for the gauge (read at scrape time). */
export type LiveCounts = () => ReadonlyMap<string, number>;

/**
 * The package's Prometheus metrics: nodes feed it one call per thing they saw; a scrape
 * renders the text format. Labels: `node` (node id), and closed or configured sets
 * (end, direction, protocol, rule, verdict, event type, loss source); never an address.
 */
export class TrafficMetrics {
  readonly registry = new Registry();
  private readonly accepted: Counter<"node">;
  private readonly connections: Counter<"node" | "end">;
  private readonly bytes: Counter<"node" | "direction">;
  private readonly duration: Histogram<"node">;
  private readonly classified: Counter<"node" | "protocol" | "rule">;
  private readonly verdicts: Counter<"node" | "rule" | "verdict">;
  private readonly untrusted: Counter<"node">;
  private readonly flowEvents: Counter<"node" | "type">;
  private readonly flowLost: Counter<"node" | "source">;
  private readonly sets: Array<LabelSets<string>> = [];
  private readonly labelSets = new Map<object, LabelSets<string>>();
  /** Publishers of live `mqtt events` nodes, and what ended instances of each node had counted. */
  private readonly publishers = new Map<string, () => MqttCounts>();
  private readonly mqttBase = new Map<string, { sent: number; dropped: number }>();
  private liveCounts: LiveCounts = () => new Map();

  constructor() {
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> =>
      this.track(new Counter<L>({ name, help, labelNames, registers }));
    this.accepted = counter("traffic_connections_accepted_total", "Connections a transparent in node accepted and announced.", ["node"]);
    this.connections = counter("traffic_connections_total", "Connections a forward node finished, by how they ended.", ["node", "end"]);
    this.bytes = counter("traffic_bytes_total", "Payload bytes a forward node moved (to_upstream: client to upstream, replayed bytes included; to_client: upstream to client).", ["node", "direction"]);
    this.duration = this.track(
      new Histogram<"node">({ name: "traffic_connection_duration_seconds", help: "How long connections a forward node handled lasted, from the claim to the close.", labelNames: ["node"], buckets: DURATION_BUCKETS, registers }),
    );
    this.classified = counter("traffic_classify_results_total", "Classify results by protocol and by the rule that routed them (other: no rule matched).", ["node", "protocol", "rule"]);
    this.verdicts = counter("traffic_ip_filter_verdicts_total", "ip filter verdicts by rule (none: no rule matched) and the action taken.", ["node", "rule", "verdict"]);
    this.untrusted = counter("traffic_untrusted_headers_total", "Requests to real ip that carried forwarding headers from an untrusted peer (ignored).", ["node"]);
    this.flowEvents = counter("traffic_flow_events_total", "Events a flow source delivered, by type.", ["node", "type"]);
    this.flowLost = counter("traffic_flow_lost_total", "Events a flow source lost, by where they were lost.", ["node", "source"]);

    // Read at scrape time: the publishers and the connection table hold the truth.
    const metrics = this;
    new Gauge<"node">({
      name: "traffic_mqtt_queued",
      help: "Events an mqtt events node holds, waiting for the broker.",
      labelNames: ["node"],
      registers,
      collect() {
        this.reset();
        for (const [node, stats] of metrics.publishers) this.set({ node }, stats().queued);
      },
    });
    const mqttTotal = (name: string, help: string, field: "sent" | "dropped"): void => {
      new Counter<"node">({
        name,
        help,
        labelNames: ["node"],
        registers,
        collect() {
          this.reset();
          const nodes = new Set([...metrics.publishers.keys(), ...metrics.mqttBase.keys()]);
          for (const node of nodes) this.inc({ node }, (metrics.mqttBase.get(node)?.[field] ?? 0) + (metrics.publishers.get(node)?.()[field] ?? 0));
        },
      });
    };
    mqttTotal("traffic_mqtt_sent_total", "Events an mqtt events node published (acknowledged by the broker at QoS 1 and 2).", "sent");
    mqttTotal("traffic_mqtt_dropped_total", "Events an mqtt events node dropped (queue overflow under drop-oldest).", "dropped");
    new Gauge<"node">({
      name: "traffic_connections_live",
      help: "Connections held in the connection table, by owning node (the listener while unclaimed).",
      labelNames: ["node"],
      registers,
      collect() {
        this.reset();
        for (const [node, n] of metrics.liveCounts()) this.set({ node }, n);
      },
    });
  }

  /** A transparent in node announced a connection. */
  connectionAccepted(node: string): void {
    this.accepted.inc(this.admit(this.accepted, { node }));
  }

  /** A forward node finished a connection (forwarded or rejected). */
  forwardSummary(node: string, summary: Pick<ForwardSummary, "end" | "bytesToUpstream" | "bytesToClient" | "durationMs">): void {
    this.connections.inc(this.admit(this.connections, { node, end: summary.end }));
    if (summary.bytesToUpstream > 0) this.bytes.inc(this.admit(this.bytes, { node, direction: "to_upstream" }), summary.bytesToUpstream);
    if (summary.bytesToClient > 0) this.bytes.inc(this.admit(this.bytes, { node, direction: "to_client" }), summary.bytesToClient);
    this.duration.observe(this.admit(this.duration, { node }), summary.durationMs / 1000);
  }

  /** A classify node routed a stream; `rule` null: no rule matched (output other). */
  classification(node: string, protocol: string, rule: string | null): void {
    this.classified.inc(this.admit(this.classified, { node, protocol, rule: rule ?? "other" }));
  }

  /** An ip filter node decided; `rule` null: no rule matched. */
  ipFilterVerdict(node: string, rule: string | null, verdict: "allow" | "deny" | "none"): void {
    this.verdicts.inc(this.admit(this.verdicts, { node, rule: rule ?? "none", verdict }));
  }

  /** A real ip node saw forwarding headers from an untrusted peer. */
  untrustedHeaders(node: string): void {
    this.untrusted.inc(this.admit(this.untrusted, { node }));
  }

  /** A flow source delivered events (lost events count their losses). */
  flowSourceEvents(node: string, events: readonly FlowEvent[]): void {
    for (const e of events) {
      this.flowEvents.inc(this.admit(this.flowEvents, { node, type: e.type }));
      if (e.type === "lost") this.flowLost.inc(this.admit(this.flowLost, { node, source: e.source }), e.count);
    }
  }

  /**
   * An mqtt events node's publisher, read at each scrape. The returned function ends it;
   * what it counted stays in the node's totals, so a redeploy never makes them go back.
   */
  mqttPublisher(node: string, stats: () => MqttCounts): () => void {
    this.publishers.set(node, stats);
    return () => {
      if (this.publishers.get(node) !== stats) return;
      const last = stats();
      const base = this.mqttBase.get(node) ?? { sent: 0, dropped: 0 };
      this.mqttBase.set(node, { sent: base.sent + last.sent, dropped: base.dropped + last.dropped });
      this.publishers.delete(node);
    };
  }

  /** Where the live-connections gauge reads its counts. */
  setLiveCounts(read: LiveCounts): void {
    this.liveCounts = read;
  }

  /** Drops every series of nodes that no longer exist (after a deploy removed them). */
  retainNodes(exists: (node: string) => boolean): void {
    for (const sets of this.sets) sets.retain(exists);
    for (const node of this.mqttBase.keys()) if (!this.publishers.has(node) && !exists(node)) this.mqttBase.delete(node);
  }

  /** The metrics in the Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Counter totals per node: metric name → node id → sum over the other labels. */
  async perNode(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {};
    for (const metric of await this.registry.getMetricsAsJSON()) {
      // prom-client's typings declare a numeric enum; at run time the type is its name.
      const type = metric.type as unknown as string;
      if (type !== "counter" && type !== "gauge") continue;
      for (const v of metric.values) {
        const node = v.labels.node;
        if (typeof node !== "string") continue;
        const byNode = (out[metric.name] ??= {});
        byNode[node] = (byNode[node] ?? 0) + v.value;
      }
    }
    return out;
  }

  private track<M extends { remove(labels: never): void }>(metric: M): M {
    const sets = new LabelSets<string>((labels) => metric.remove(labels as never));
    this.sets.push(sets);
    this.labelSets.set(metric, sets);
    return metric;
  }

  private admit<L extends string>(metric: object, labels: Labels<L>): Labels<L> {
    return this.labelSets.get(metric)!.admit(labels) as Labels<L>;
  }
}

const KEY = Symbol.for("traffic-policy.metrics");

/** The one metrics registry of this process (on globalThis, like the connection table). */
export function trafficMetrics(): TrafficMetrics {
  const g = globalThis as { [KEY]?: TrafficMetrics };
  g[KEY] ??= new TrafficMetrics();
  return g[KEY];
}

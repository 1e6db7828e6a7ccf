import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { type FlowCloseEvent, type FlowEvent, type LostEvent } from "../../src/events";
import { MAX_LABEL_SETS, OVERFLOW_VALUE, TopTalkers, TrafficMetrics } from "../../src/observe";
import { skipWithout } from "../support/system";

/** `promtool check metrics` on the text: its exit status and what it printed. */
function promtool(path: string, text: string): { status: number | null; output: string } {
  const r = spawnSync(path, ["check", "metrics"], { input: text, encoding: "utf8" });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

/** Sample lines (not comments) of a metric family. */
const samples = (text: string, name: string): string[] => text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));

function flowClose(remoteIp: string, bytesSent: number, bytesReceived: number, comm: string): FlowCloseEvent {
  return { type: "flow-close", remoteIp, bytesSent, bytesReceived, comm } as unknown as FlowCloseEvent;
}

/** A registry fed once through every entry point, as a flow with each node would. */
function fedRegistry(): TrafficMetrics {
  const m = new TrafficMetrics();
  m.connectionAccepted("in1");
  m.forwardSummary("fw1", { end: "closed", bytesToUpstream: 120, bytesToClient: 4000, durationMs: 35 });
  m.forwardSummary("fw1", { end: "connect-failed", bytesToUpstream: 0, bytesToClient: 0, durationMs: 1000 });
  m.classification("cl1", "tls", "api");
  m.classification("cl1", "unknown", null);
  m.ipFilterVerdict("ipf1", "office", "allow");
  m.ipFilterVerdict("ipf1", null, "none");
  m.untrustedHeaders("rip1");
  const lost = { type: "lost", source: "kernel", count: 3 } as LostEvent;
  m.flowSourceEvents("fs1", [flowClose("198.51.100.9", 1, 2, "curl") as FlowEvent, lost]);
  m.mqttPublisher("mq1", () => ({ queued: 5, sent: 10, dropped: 1 }));
  m.setLiveCounts(() => new Map([["in1", 2]]));
  return m;
}

describe("Prometheus metrics", () => {
  it("pass promtool check metrics, with every family present", async (ctx) => {
    const path = skipWithout(ctx, "promtool");
    const text = await fedRegistry().text();
    for (const family of [
      "traffic_connections_accepted_total",
      "traffic_connections_total",
      "traffic_bytes_total",
      "traffic_connection_duration_seconds_bucket",
      "traffic_classify_results_total",
      "traffic_ip_filter_verdicts_total",
      "traffic_untrusted_headers_total",
      "traffic_flow_events_total",
      "traffic_flow_lost_total",
      "traffic_mqtt_queued",
      "traffic_mqtt_sent_total",
      "traffic_mqtt_dropped_total",
      "traffic_connections_live",
    ]) {
      expect(samples(text, family).length, family).toBeGreaterThan(0);
    }
    const lint = promtool(path, text);
    expect(lint.output).toBe("");
    expect(lint.status).toBe(0);
  });

  it("promtool itself refuses a malformed exposition (the check can fail)", (ctx) => {
    const path = skipWithout(ctx, "promtool");
    expect(promtool(path, "# TYPE x counter\nx{a=\"1\" 1\n").status).not.toBe(0);
  });

  it("counts what it was fed, by the labels it names", async () => {
    const text = await fedRegistry().text();
    for (const line of [
      'traffic_connections_total{node="fw1",end="closed"} 1',
      'traffic_connections_total{node="fw1",end="connect-failed"} 1',
      'traffic_bytes_total{node="fw1",direction="to_upstream"} 120',
      'traffic_bytes_total{node="fw1",direction="to_client"} 4000',
      'traffic_connection_duration_seconds_bucket{le="0.05",node="fw1"} 1',
      'traffic_connection_duration_seconds_count{node="fw1"} 2',
      'traffic_classify_results_total{node="cl1",protocol="unknown",rule="other"} 1',
      'traffic_ip_filter_verdicts_total{node="ipf1",rule="none",verdict="none"} 1',
      'traffic_flow_lost_total{node="fs1",source="kernel"} 3',
      'traffic_flow_events_total{node="fs1",type="flow-close"} 1',
      'traffic_mqtt_queued{node="mq1"} 5',
      'traffic_connections_live{node="in1"} 2',
    ]) {
      expect(text).toContain(line);
    }
    // No client or remote address is ever a label.
    expect(text).not.toContain("198.51.100.9");
  });

  it("caps the label sets of a metric, folding the rest into one series per node", async () => {
    const m = new TrafficMetrics();
    for (let i = 0; i < MAX_LABEL_SETS + 500; i++) m.classification("cl1", "tls", `rule-${i}`);
    const lines = samples(await m.text(), "traffic_classify_results_total");
    expect(lines.length).toBe(MAX_LABEL_SETS + 1);
    expect(lines).toContain(`traffic_classify_results_total{node="cl1",protocol="${OVERFLOW_VALUE}",rule="${OVERFLOW_VALUE}"} 500`);
  });

  it("drops the series of deleted nodes and keeps the others", async () => {
    const m = fedRegistry();
    m.retainNodes((id) => id !== "fw1" && id !== "cl1");
    const text = await m.text();
    expect(text).not.toContain('node="fw1"');
    expect(text).not.toContain('node="cl1"');
    expect(text).toContain('traffic_ip_filter_verdicts_total{node="ipf1",rule="office",verdict="allow"} 1');
  });

  it("keeps MQTT totals rising across a redeploy of the node", async () => {
    const m = new TrafficMetrics();
    const end = m.mqttPublisher("mq1", () => ({ queued: 0, sent: 10, dropped: 2 }));
    end();
    m.mqttPublisher("mq1", () => ({ queued: 3, sent: 4, dropped: 0 }));
    const text = await m.text();
    expect(text).toContain('traffic_mqtt_sent_total{node="mq1"} 14');
    expect(text).toContain('traffic_mqtt_dropped_total{node="mq1"} 2');
    expect(text).toContain('traffic_mqtt_queued{node="mq1"} 3');
  });
});

describe("top talkers", () => {
  it("ranks remote addresses by the bytes of their closed flows, bounded", () => {
    const t = new TopTalkers();
    t.add([flowClose("203.0.113.1", 10, 10, "a"), flowClose("203.0.113.2", 500, 0, "b"), flowClose("203.0.113.1", 0, 5, "c")]);
    expect(t.top(2)).toEqual([
      { remote: "203.0.113.2", comm: "b", bytes: 500, connections: 1 },
      { remote: "203.0.113.1", comm: "c", bytes: 25, connections: 2 },
    ]);
    const many: FlowEvent[] = [];
    for (let i = 0; i < 3000; i++) many.push(flowClose(`2001:db8::${i.toString(16)}`, i, 0, "x"));
    t.add(many);
    const top = t.top(3);
    expect(top.map((x) => x.bytes)).toEqual([2999, 2998, 2997]);
  });
});

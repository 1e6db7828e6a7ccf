import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { EVENT_TYPES, makeEvent, type FlowCloseEvent, type FlowOpenEvent, type MqttStatsEvent, type TrafficEvent } from "../../src/events";
import { assertValidEvent } from "../support/events";

const require_ = createRequire(__filename);
const { staleSchemas } = require_("../../scripts/schemas.js") as { staleSchemas: () => string[] };

const flow = { flowId: "1234", protocol: "tcp", source: "ebpf", side: "client", family: 4, localIp: "192.0.2.1", localPort: 50000, remoteIp: "203.0.113.5", remotePort: 80, pid: 42, comm: "curl", uid: 1000, ownerFrom: "connect", cgroupId: "7", netns: 4026531840, partial: false } as const;

const samples: TrafficEvent[] = [
  makeEvent({ type: "connection-accepted", connectionId: "c1", mode: "redirect", side: "server", family: 4, localIp: "127.0.0.1", localPort: 15001, remoteIp: "192.0.2.10", remotePort: 40000, originalDst: { ip: "198.51.100.1", port: 443, method: "so_original_dst" } }),
  makeEvent({ type: "classification", connectionId: "c1", side: "server", protocol: "tls", confidence: 1, fields: { sni: "example.org", alpn: ["h2", "http/1.1"] }, rule: "web", output: 0, bytesInspected: 517 }),
  makeEvent({ type: "forward-summary", connectionId: "c1", action: "forward", target: { address: "2001:db8::3", port: 443 }, identity: "proxy-v2", bytesUp: 10, bytesDown: 20, durationMs: 3, end: "closed", pump: "native", side: "server", family: 6, localIp: "2001:db8::1", localPort: 443, remoteIp: "2001:db8::2", remotePort: 5555 }),
  makeEvent({ type: "flow-open", ...flow }),
  makeEvent({ type: "flow-state", ...flow, oldState: "SYN_SENT", newState: "ESTABLISHED" }),
  makeEvent({
    type: "flow-close",
    ...flow,
    end: "refused",
    error: "ECONNREFUSED",
    lastState: "SYN_SENT",
    established: false,
    bytesSent: 0,
    bytesReceived: 0,
    bytesExact: true,
    bytesRetransmitted: 0,
    retransmits: 0,
    srttUs: null,
    rttMinUs: null,
    segmentsIn: 0,
    segmentsOut: 1,
    durationMs: 0.2,
    handshakeMs: null,
    firstBytes: { sent: Buffer.from("GET / HTTP/1.1\r\n").toString("base64") },
  }),
  makeEvent({ type: "lost", source: "publisher-queue", count: 3, reason: "queue full" }),
  makeEvent({ type: "agent-status", status: "online", version: "0.1.0", features: ["redirect"] }),
  makeEvent({ type: "mqtt-stats", connected: true, queued: 0, inFlight: 0, sent: 5, dropped: 0, spooled: 0, intervalMs: 10000 }),
  makeEvent({ type: "limit", phase: "start", limiter: "edge", keyKind: "client-ip", key: "2001:db8:1:2::/64", reason: "rate", action: "reject-rst", rejected: { rate: 1, concurrency: 0 }, allowed: 0, startedAt: "2026-01-01T00:00:00.000Z", durationMs: 0, limits: { rate: 100, burst: 100, maxConcurrent: 0 } }),
  makeEvent({ type: "policy-verdict", mode: "shadow", verdict: "reject", nodeType: "forward", nodeId: "n1", rule: "old tls client", reason: "the node rejects (FIN) the connections of rule \"old tls client\"", connectionId: "c1", clientIp: "203.0.113.5" }),
];

describe("event contracts", () => {
  it("the committed schemas/ match what src/events/types.ts generates", () => {
    expect(staleSchemas()).toEqual([]);
  });

  it("a sample of every event type is valid against its schema and the union", () => {
    expect(new Set(samples.map((e) => e.type))).toEqual(new Set(EVENT_TYPES));
    for (const event of samples) assertValidEvent(event);
  });

  it("the schemas reject extra fields, missing fields, a wrong side and a wrong schema version", () => {
    const open = samples.find((e) => e.type === "flow-open") as FlowOpenEvent;
    expect(() => assertValidEvent({ ...open, extra: 1 })).toThrow(/additional/);
    const { flowId: _omit, ...noId } = open;
    expect(() => assertValidEvent(noId)).toThrow(/flowId/);
    expect(() => assertValidEvent({ ...open, side: "both" })).toThrow();
    expect(() => assertValidEvent({ ...open, schemaVersion: 2 })).toThrow();
    // A flow id is a socket cookie; an owner may be unknown (null) but not missing.
    expect(() => assertValidEvent({ ...open, flowId: "f1" })).toThrow(/pattern/);
    expect(() => assertValidEvent({ ...open, pid: null, comm: null, uid: null, ownerFrom: null, side: "unknown" })).not.toThrow();
    const { pid: _pid, ...noPid } = open;
    expect(() => assertValidEvent(noPid)).toThrow(/pid/);
    const close = samples.find((e) => e.type === "flow-close") as FlowCloseEvent;
    expect(() => assertValidEvent({ ...close, firstBytes: { sent: "not base64!" } })).toThrow(/pattern/);
    const stats = samples.find((e) => e.type === "mqtt-stats") as MqttStatsEvent;
    expect(() => assertValidEvent({ ...stats, queued: -1 })).toThrow(/>= 0/);
    expect(() => assertValidEvent({ ...stats, time: "yesterday" })).toThrow(/date-time/);
  });

  it("event ids are unique and carry the schema version", () => {
    const a = makeEvent({ type: "lost", source: "input", count: 1 });
    const b = makeEvent({ type: "lost", source: "input", count: 1 });
    expect(a.id).not.toBe(b.id);
    expect(a.schemaVersion).toBe(1);
  });
});

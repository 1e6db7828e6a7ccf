import { describe, expect, it } from "vitest";
import { classifyBytes, classifyDatagrams } from "../../src/classify";
import type { ConnectionInfo } from "../../src/connection";
import { makeEvent, toEvent, type ForwardSummary, type LostEvent } from "../../src/events";
import { assertValidEvent } from "../support/events";

const info: ConnectionInfo = {
  id: "c-1",
  mode: "redirect",
  family: 4,
  localAddress: "127.0.0.1",
  localPort: 15001,
  remoteAddress: "192.0.2.10",
  remotePort: 40000,
  originalDst: { address: "198.51.100.1", port: 443, family: 4, method: "so_original_dst" },
  proxy: { version: 2, command: "proxy", family: "tcp4", sourceAddress: "203.0.113.9", sourcePort: 5555, destinationAddress: "198.51.100.1", destinationPort: 443, tlvs: [], length: 28 },
  firstBytes: Buffer.from("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"),
  acceptedAt: Date.UTC(2026, 0, 2, 3, 4, 5, 678),
};
const session = { type: "traffic", id: "c-1" } as const;

describe("toEvent: messages of this package's nodes become the declared events", () => {
  it("a transparent in connection message → connection-accepted at its accept time", () => {
    const e = toEvent({ _session: session, payload: info }, { host: "agent-a" });
    assertValidEvent(e);
    expect(e).toMatchObject({
      type: "connection-accepted",
      host: "agent-a",
      time: "2026-01-02T03:04:05.678Z",
      connectionId: "c-1",
      mode: "redirect",
      side: "server",
      localIp: "127.0.0.1",
      remoteIp: "192.0.2.10",
      originalDst: { ip: "198.51.100.1", port: 443, method: "so_original_dst" },
      clientIp: "203.0.113.9",
      clientPort: 5555,
      proxyVersion: 2,
      firstBytesLength: info.firstBytes!.length,
    });
    // No original destination ("none") and an error instead: the error is carried, no originalDst.
    const plain = toEvent({ _session: session, payload: { ...info, proxy: undefined, firstBytes: undefined, originalDst: { address: "", port: 0, family: 4, method: "none" }, originalDstError: { code: "ENOENT", message: "no conntrack entry" } } }, { host: "h" });
    assertValidEvent(JSON.parse(JSON.stringify(plain)));
    expect(plain).not.toHaveProperty("originalDst");
    expect(plain).toMatchObject({ originalDstError: { code: "ENOENT" } });
  });

  it("a classify result → classification, with the connection's addresses", () => {
    const c = classifyBytes(info.firstBytes!);
    const e = toEvent({ _session: session, payload: info, classification: { ...c, rule: "web", output: 0 } }, { host: "agent-a" });
    assertValidEvent(e);
    expect(e).toMatchObject({ type: "classification", connectionId: "c-1", side: "server", protocol: "http1", rule: "web", output: 0, remoteIp: "192.0.2.10", fields: { host: "example.org" } });
    // The "other" output (no rule) and bytes without a connection.
    const other = toEvent({ payload: Buffer.from("x"), classification: { ...classifyBytes(Buffer.from([1, 2, 3])), rule: null, output: 2 } }, { host: "h" });
    assertValidEvent(other);
    expect(other).toMatchObject({ rule: null, output: 2 });
    expect(other).not.toHaveProperty("connectionId");
  });

  it("a UDP session: connection-accepted says protocol udp, its classification says transport udp (schemas allow both)", () => {
    // A DNS query for example.org, type A (RFC 1035 4.1).
    const query = Buffer.from("abcd01000001000000000000076578616d706c65036f72670000010001", "hex");
    const udp: ConnectionInfo = { ...info, protocol: "udp", mode: "tproxy", proxy: undefined, firstBytes: query, firstDatagrams: [query], originalDst: { address: "198.51.100.1", port: 53, family: 4, method: "ip_recvorigdstaddr" } };
    const accepted = toEvent({ _session: session, payload: udp }, { host: "h" });
    assertValidEvent(JSON.parse(JSON.stringify(accepted)));
    expect(accepted).toMatchObject({ type: "connection-accepted", protocol: "udp", originalDst: { ip: "198.51.100.1", port: 53 } });
    const c = classifyDatagrams([query]);
    const classified = toEvent({ _session: session, payload: udp, classification: { ...c, rule: "dns", output: 0 } }, { host: "h" });
    assertValidEvent(JSON.parse(JSON.stringify(classified)));
    expect(classified).toMatchObject({ type: "classification", transport: "udp", protocol: "dns", fields: { dnsName: "example.org", dnsType: "A" } });
    // A TCP connection's classification carries no transport (TCP is the default).
    expect(toEvent({ _session: session, payload: info, classification: { ...classifyBytes(info.firstBytes!), rule: null, output: 1 } }, { host: "h" })).not.toHaveProperty("transport");
  });

  it("a forward summary → forward-summary", () => {
    const summary: ForwardSummary = {
      id: "c-1",
      action: "forward",
      client: { address: "192.0.2.10", port: 40000 },
      target: { address: "198.51.100.20", port: 8443 },
      identity: "proxy-v2",
      pump: "native",
      bytesToUpstream: 10,
      bytesToClient: 2000,
      startedAt: Date.now(),
      durationMs: 12.5,
      end: "closed",
    };
    const e = toEvent({ _session: session, payload: summary }, { host: "agent-a" });
    assertValidEvent(e);
    expect(e).toMatchObject({
      type: "forward-summary",
      connectionId: "c-1",
      action: "forward",
      target: { address: "198.51.100.20", port: 8443 },
      identity: "proxy-v2",
      bytesUp: 10,
      bytesDown: 2000,
      pump: "native",
      end: "closed",
      side: "server",
      family: 4,
      remoteIp: "192.0.2.10",
      remotePort: 40000,
    });
    const failed: ForwardSummary = {
      id: "c-2",
      action: "forward",
      client: { address: "2001:db8::2", port: 4000 },
      target: null,
      identity: "none",
      pump: null,
      bytesToUpstream: 0,
      bytesToClient: 0,
      startedAt: Date.now(),
      durationMs: 0,
      end: "connect-failed",
      error: { code: "ECONNREFUSED", message: "connect ECONNREFUSED" },
    };
    const rejected = toEvent({ payload: failed }, { host: "agent-a" });
    assertValidEvent(rejected);
    expect(rejected).toMatchObject({ end: "connect-failed", error: "ECONNREFUSED", family: 6, remoteIp: "2001:db8::2" });
    expect(rejected).not.toHaveProperty("target");
    expect(rejected).not.toHaveProperty("pump");
  });

  it("an event passes through unchanged; anything else is not converted", () => {
    const lost = makeEvent<LostEvent>({ type: "lost", source: "input", count: 1 });
    expect(toEvent({ payload: lost, classification: { protocol: "tls" } }, { host: "other" })).toBe(lost);
    expect(toEvent({ payload: { hello: 1 } }, { host: "h" })).toBeNull();
    expect(toEvent({ payload: "text" }, { host: "h" })).toBeNull();
    // Connection-shaped payload without a session, or a session without connection info.
    expect(toEvent({ payload: info }, { host: "h" })).toBeNull();
    expect(toEvent({ _session: session, payload: { id: "c-1" } }, { host: "h" })).toBeNull();
    // A half-formed summary is not a summary.
    expect(toEvent({ payload: { id: "x", action: "forward", identity: "none", bytesUp: -1, bytesDown: 0, durationMs: 0, end: "normal" } }, { host: "h" })).toBeNull();
  });
});

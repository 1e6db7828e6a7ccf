import { createRequire } from "node:module";
import net from "node:net";
import { beforeEach, describe, expect, it } from "vitest";
import { compileFlowFilter } from "../../src/flow/filter";
import { cgroupV2Root } from "../../src/flow/features";
import { loadFlowAddon } from "../../src/flow/native";
import { BYTES_RECORD_LAYOUT, classifyEnd, clockMap, decodeRecords, errnoName, OpenBeforeClose, RECORD_LAYOUT, RECORD_SIZE, RECORD_VERSION, recordLayoutMismatch } from "../../src/flow/record";
import { AF_INET, parseDiagMessages, SocketOwnerScanner, STATE_CONNECTED_MASK, STATE_LISTEN_MASK } from "../../src/flow/sockdiag";
import type { FlowCloseEvent, FlowConnectionEvent } from "../../src/events/types";
import { assertValidEvent } from "../support/events";
import { IN_CI } from "../support/system";

/** A struct flow_record as the BPF program writes it (native/flow/flow.h). */
function record(fields: {
  kind: number;
  side?: number;
  family?: 4 | 6;
  flags?: number;
  cookie?: bigint;
  ts?: bigint;
  start?: bigint;
  established?: bigint;
  pid?: number;
  ownerFrom?: number;
  comm?: string;
  saddr?: number[];
  daddr?: number[];
  sport?: number;
  dport?: number;
  oldState?: number;
  error?: number;
  sent?: bigint;
  retrans?: bigint;
  received?: bigint;
  rttMin?: number;
  version?: number;
  /** IPPROTO_TCP (6, the default) or IPPROTO_UDP (17). */
  protocol?: number;
  segsIn?: number;
  segsOut?: number;
}): Buffer {
  const b = Buffer.alloc(RECORD_SIZE);
  b.writeUInt16LE(fields.version ?? RECORD_VERSION, 0);
  b.writeUInt16LE(RECORD_SIZE, 2);
  b[4] = fields.kind;
  b[5] = fields.side ?? 1;
  b[6] = fields.family ?? 4;
  b[7] = fields.flags ?? 0;
  b.writeBigUInt64LE(fields.cookie ?? 42n, 8);
  b.writeBigUInt64LE(fields.ts ?? 3_000_000_000n, 16);
  b.writeBigUInt64LE(fields.start ?? 1_000_000_000n, 24);
  b.writeBigUInt64LE(fields.established ?? 1_000_500_000n, 32);
  b.writeBigUInt64LE(7n, 40);
  b.writeUInt32LE(4026531833, 48);
  b.writeUInt32LE(fields.pid ?? 1234, 52);
  b.writeUInt32LE(1000, 56);
  b[60] = fields.ownerFrom ?? 1;
  b[61] = fields.oldState ?? 1;
  b[62] = 7;
  b[63] = fields.protocol ?? 6;
  b.write(fields.comm ?? "curl", 64);
  Buffer.from(fields.saddr ?? [192, 0, 2, 1]).copy(b, 80);
  Buffer.from(fields.daddr ?? [198, 51, 100, 7]).copy(b, 96);
  b.writeUInt16LE(fields.sport ?? 40000, 112);
  b.writeUInt16LE(fields.dport ?? 443, 114);
  b.writeInt32LE(fields.error ?? 0, 116);
  b.writeBigUInt64LE(fields.sent ?? 0n, 120);
  b.writeBigUInt64LE(fields.retrans ?? 0n, 128);
  b.writeBigUInt64LE(fields.received ?? 0n, 136);
  b.writeUInt32LE(3, 144);
  b.writeUInt32LE(250, 148);
  b.writeUInt32LE(fields.rttMin ?? 120, 152);
  b.writeUInt32LE(fields.segsIn ?? 0, 156);
  b.writeUInt32LE(fields.segsOut ?? 0, 160);
  return b;
}

const clock = clockMap(0n, 1_700_000_000_000_000_000n);
let seq = 0;
const stamp = { host: "test-host", nextId: (): string => `ev-${++seq}` };
/** Decodes and checks every event against the schemas, as every flow test does. */
function decode(batch: Buffer, onBytes?: Parameters<typeof decodeRecords>[3]): ReturnType<typeof decodeRecords> {
  const r = decodeRecords(batch, clock, stamp, onBytes);
  for (const e of r.events) assertValidEvent(e);
  return r;
}

describe("flow record decoding", () => {
  it("decodes a close record: payload bytes without retransmits or the peer's FIN, times, owner", () => {
    const { events, skipped } = decode(record({ kind: 2, flags: 0x02 | 0x04, sent: 1500n, retrans: 500n, received: 2001n, oldState: 9 }));
    expect(skipped).toBe(0);
    const e = events[0] as FlowCloseEvent;
    expect(e).toMatchObject({
      type: "flow-close",
      source: "ebpf",
      flowId: "42",
      host: "test-host",
      schemaVersion: 1,
      protocol: "tcp",
      side: "client",
      localIp: "192.0.2.1",
      localPort: 40000,
      remoteIp: "198.51.100.7",
      remotePort: 443,
      pid: 1234,
      comm: "curl",
      uid: 1000,
      ownerFrom: "connect",
      cgroupId: "7",
      netns: 4026531833,
      bytesSent: 1000,
      bytesRetransmitted: 500,
      bytesReceived: 2000,
      retransmits: 3,
      srttUs: 250,
      rttMinUs: 120,
      lastState: "LAST_ACK",
      end: "normal",
      established: true,
      partial: false,
      durationMs: 2000,
      handshakeMs: 0.5,
    });
    expect(e.time).toBe(new Date(1_700_000_003_000).toISOString());
  });

  it("64-bit fields past 2^53 stay exact: cookie, boot-time stamps, byte counts; one clock for both paths", () => {
    const big = (1n << 63n) + 5n;
    const boot = 1n << 54n; // about 208 days of uptime in nanoseconds
    const e = decode(record({ kind: 2, cookie: big, ts: boot + 3_000_000_123n, start: boot, established: boot + 1_500_000n, sent: (1n << 53n) + 2n, received: 9n })).events[0] as FlowCloseEvent;
    expect(e.flowId).toBe(big.toString());
    expect(e.durationMs).toBeCloseTo(3000.000123, 6);
    expect(e.handshakeMs).toBeCloseTo(1.5, 9);
    expect(e.bytesSent).toBe(Number((1n << 53n) + 2n));
    expect(e.bytesReceived).toBe(9);
    // The same stamp through the BigInt and the Number path lands on the same millisecond.
    const c = clockMap(123_456_789n, 1_700_000_000_999_999_999n);
    for (const ns of [0n, 999_999n, 1_000_000n, 123_456_789n, 4_000_000_000_000_001n]) expect(c.toIso(Number(ns))).toBe(c.toIso(ns));
  });

  it("addresses and commands that change from record to record are each decoded, not repeated from a cache", () => {
    const batch = Buffer.concat([
      record({ kind: 2, comm: "curl", saddr: [192, 0, 2, 1] }),
      record({ kind: 2, comm: "wget", saddr: [192, 0, 2, 2] }),
      record({ kind: 2, comm: "curl", saddr: [192, 0, 2, 1] }),
    ]);
    const events = decode(batch).events as FlowCloseEvent[];
    expect(events.map((e) => [e.comm, e.localIp])).toEqual([
      ["curl", "192.0.2.1"],
      ["wget", "192.0.2.2"],
      ["curl", "192.0.2.1"],
    ]);
  });

  it("says none for rtt_min 0xFFFFFFFF and no owner for pid 0", () => {
    const e = decode(record({ kind: 2, rttMin: 0xffffffff, pid: 0, ownerFrom: 0 })).events[0] as FlowCloseEvent;
    expect(e.rttMinUs).toBeNull();
    expect(e.pid).toBeNull();
    expect(e.comm).toBeNull();
  });

  it("formats IPv6 and classifies a refused connect", () => {
    const v6 = [0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1];
    const e = decode(record({ kind: 2, family: 6, saddr: v6, daddr: v6, oldState: 2, error: 111, established: 0n })).events[0] as FlowCloseEvent;
    expect(e).toMatchObject({ family: 6, localIp: "2001:db8::1", end: "refused", error: "ECONNREFUSED", lastState: "SYN_SENT", handshakeMs: null });
  });

  it("hands first-bytes records to the callback, in ring order with the events", () => {
    const bytes = Buffer.alloc(544);
    bytes.writeUInt16LE(RECORD_VERSION, 0);
    bytes.writeUInt16LE(544, 2);
    bytes[4] = 4;
    bytes[5] = 2; // received
    bytes.writeUInt16LE(5, 6);
    bytes.writeBigUInt64LE(42n, 16);
    bytes.write("hello", 32);
    const seen: Array<{ flowId: string; direction: string; data: string }> = [];
    const { events } = decode(Buffer.concat([bytes, record({ kind: 2 })]), (b) => seen.push({ ...b, data: b.data.toString() }));
    expect(seen).toEqual([{ flowId: "42", direction: "received", data: "hello" }]);
    expect(events).toHaveLength(1);
  });

  it("reads every field at the offset the built addon reports for its struct, and names a field that moved", () => {
    const addon = loadFlowAddon();
    expect(addon.recordLayout).toEqual({ ...RECORD_LAYOUT });
    expect(addon.bytesRecordLayout).toEqual({ ...BYTES_RECORD_LAYOUT });
    expect(recordLayoutMismatch(addon)).toEqual([]);
    expect(recordLayoutMismatch({ recordLayout: { ...addon.recordLayout, pid: 56 }, bytesRecordLayout: addon.bytesRecordLayout })).toEqual(["pid:52≠56"]);
    expect(recordLayoutMismatch({ recordLayout: addon.recordLayout })).toContain("bytes.data:32≠-");
  });

  it("decodes a UDP socket's open and close: protocol, owner from socket(), datagrams and payload bytes each way", () => {
    const common = { protocol: 17, cookie: 77n, ownerFrom: 4, comm: "dig", sport: 53124, dport: 53, established: 0n, rttMin: 0 };
    // Connected (ESTABLISHED before CLOSE): UDP keeps no retransmit or RTT counters, and byte counts are exact payload.
    const batch = Buffer.concat([
      record({ ...common, kind: 1 }),
      record({ ...common, kind: 2, oldState: 1, flags: 0x04, sent: 62n, received: 410n, segsOut: 2, segsIn: 1, ts: 1_250_000_000n, retrans: 0n }),
    ]);
    const { events } = decode(batch);
    expect(events.map((e) => [e.type, e.protocol, e.flowId])).toEqual([
      ["flow-open", "udp", "77"],
      ["flow-close", "udp", "77"],
    ]);
    expect(events[0]).toMatchObject({ ownerFrom: "create", comm: "dig", pid: 1234, localPort: 53124, remotePort: 53 });
    expect(events[1]).toMatchObject({
      end: "normal",
      error: null,
      lastState: "ESTABLISHED",
      established: true,
      bytesSent: 62,
      bytesReceived: 410,
      bytesExact: true,
      datagramsSent: 2,
      datagramsReceived: 1,
      segmentsOut: 2,
      segmentsIn: 1,
      retransmits: 0,
      srttUs: null,
      rttMinUs: null,
      handshakeMs: null,
      durationMs: 250,
    });
    // An unconnected socket (CLOSE before CLOSE) whose peer was unreachable: refused, not an abort.
    const refused = decode(record({ ...common, kind: 2, oldState: 7, error: 111 })).events[0] as FlowCloseEvent;
    expect(refused).toMatchObject({ end: "refused", error: "ECONNREFUSED", lastState: "CLOSE", established: false });
    // TCP closes carry no datagram counts.
    expect(decode(record({ kind: 2 })).events[0]).not.toHaveProperty("datagramsSent");
  });

  it("skips records of another version and stops at a truncated one", () => {
    const batch = Buffer.concat([record({ kind: 1, version: 9 }), record({ kind: 1, cookie: 5n }), record({ kind: 1 }).subarray(0, 100)]);
    const { events, skipped } = decode(batch);
    expect(events.map((e) => e.flowId)).toEqual(["5"]);
    expect(skipped).toBe(2);
  });

  it("classifies how connections end", () => {
    expect(classifyEnd(0, "FIN_WAIT2")).toBe("normal");
    expect(classifyEnd(0, "ESTABLISHED")).toBe("abort");
    expect(classifyEnd(104, "ESTABLISHED")).toBe("reset");
    expect(classifyEnd(32, "CLOSE_WAIT")).toBe("reset");
    expect(classifyEnd(110, "SYN_SENT")).toBe("timeout");
    expect(classifyEnd(113, "SYN_SENT")).toBe("error");
    expect(errnoName(111)).toBe("ECONNREFUSED");
    expect(errnoName(99999)).toBe("E99999");
  });
});

describe("open before close", () => {
  it("holds a close the kernel flagged as racing its open until the open arrives", () => {
    const { events, openPending } = decode(Buffer.concat([record({ kind: 2, cookie: 7n, flags: 0x08 }), record({ kind: 2, cookie: 8n })]));
    expect([...openPending]).toEqual(["7"]);
    const order = new OpenBeforeClose(200);
    expect(order.order(events, openPending, 1000).map((e) => `${e.type} ${e.flowId}`)).toEqual(["flow-close 8"]);
    const next = decode(record({ kind: 1, cookie: 7n }));
    expect(order.order(next.events, next.openPending, 1050).map((e) => `${e.type} ${e.flowId}`)).toEqual(["flow-open 7", "flow-close 7"]);
    expect(order.size).toBe(0);
  });

  it("releases a held close after the hold time when its open never comes", () => {
    const { events, openPending } = decode(record({ kind: 2, cookie: 9n, flags: 0x08 }));
    const order = new OpenBeforeClose(200);
    expect(order.order(events, openPending, 1000)).toEqual([]);
    expect(order.expire(1100)).toEqual([]);
    expect(order.expire(1200).map((e) => e.flowId)).toEqual(["9"]);
  });

  it("does not hold a flagged close whose open came earlier in the same batch", () => {
    const { events, openPending } = decode(Buffer.concat([record({ kind: 1, cookie: 5n }), record({ kind: 2, cookie: 5n, flags: 0x08 })]));
    expect(new OpenBeforeClose().order(events, openPending).map((e) => e.type)).toEqual(["flow-open", "flow-close"]);
  });
});

describe("flow filters", () => {
  const event = (over: Partial<FlowConnectionEvent>): FlowConnectionEvent =>
    ({ type: "flow-open", side: "client", localPort: 40000, remotePort: 443, remoteIp: "198.51.100.7", cgroupId: "7", ...over }) as FlowConnectionEvent;

  it("matches the service port by side, remote CIDRs, side and cgroup", () => {
    const f = compileFlowFilter({ ports: [443], cidrs: ["198.51.100.0/24"], cgroupId: "7" });
    expect(f.matches(event({}))).toBe(true);
    expect(f.matches(event({ side: "server", localPort: 443, remotePort: 40000 }))).toBe(true);
    expect(f.matches(event({ side: "server" }))).toBe(false);
    expect(f.matches(event({ side: "unknown", localPort: 443, remotePort: 40000 }))).toBe(true);
    expect(f.matches(event({ remoteIp: "203.0.113.1" }))).toBe(false);
    expect(f.matches(event({ cgroupId: "8" }))).toBe(false);
    expect(compileFlowFilter({ side: "server" }).matches(event({}))).toBe(false);
    expect(f.kernel).toMatchObject({ ports: [443], sides: 0, cgroupId: 7n });
    expect(f.kernel.cidrs[0]).toEqual({ address: Buffer.from([198, 51, 100, 0]), prefix: 24 });
  });

  it("rejects bad ports, CIDRs, sides and cgroup ids with typed errors", () => {
    expect(() => compileFlowFilter({ ports: [0] })).toThrow(expect.objectContaining({ code: "ERR_BAD_PORT" }));
    expect(() => compileFlowFilter({ cidrs: ["10.0.0.1/8"] })).toThrow(expect.objectContaining({ code: "ERR_BAD_CIDR" }));
    expect(() => compileFlowFilter({ side: "both" as never })).toThrow(expect.objectContaining({ code: "ERR_RULE_CONFIG" }));
    expect(() => compileFlowFilter({ cgroupId: "-1" })).toThrow(expect.objectContaining({ code: "ERR_RULE_CONFIG" }));
    // A cgroup id is a u64: the largest one is taken whole, one more is refused, not wrapped.
    expect(compileFlowFilter({ cgroupId: "18446744073709551615" }).kernel.cgroupId).toBe(18446744073709551615n);
    expect(() => compileFlowFilter({ cgroupId: "18446744073709551616" })).toThrow(expect.objectContaining({ code: "ERR_RULE_CONFIG" }));
  });
});

describe("the editor's cgroup id check", () => {
  const dialog = createRequire(__filename)("../../resources/dialog.js") as { uint64(optional: boolean): (v: string) => true | string };
  it("agrees with the runtime filter, also above 2^53 where a Number rounds", () => {
    const check = dialog.uint64(true);
    for (const id of ["", "0", "7", "9007199254740993", "18446744073709551615", "18446744073709551616", "99999999999999999999", "-1", "1.5", "0x10"]) {
      let runtime = true;
      try {
        compileFlowFilter({ cgroupId: id });
      } catch {
        runtime = false;
      }
      expect(check(id) === true, id).toBe(runtime);
    }
  });
});

describe("cgroup v2 root", () => {
  it("finds the cgroup2 mount in hybrid and pure layouts", () => {
    const hybrid = "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n31 25 0:27 / /sys/fs/cgroup/cpu rw shared:11 - cgroup cgroup rw,cpu\n";
    expect(cgroupV2Root(hybrid)).toBe("/sys/fs/cgroup/unified");
    expect(cgroupV2Root("29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")).toBe("/sys/fs/cgroup");
    expect(cgroupV2Root("31 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")).toBeNull();
  });
});

let addonError = "";
const addon = (() => {
  try {
    return loadFlowAddon();
  } catch (err) {
    addonError = `the flow addon does not load: ${(err as Error).message}`;
    return null;
  }
})();
if (addon === null && IN_CI) throw new Error(`${addonError}, and under CI=true nothing may skip`);

describe("sock_diag dump (no privilege needed)", () => {
  beforeEach((ctx) => ctx.skip(addon === null, addonError));
  it("finds this process's connection with ports, distinct cookies, tcp_info and the owning PID via /proc", async () => {
    const server = net.createServer((s) => s.on("data", () => undefined));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const client = net.connect(port, "127.0.0.1");
    await new Promise((r) => client.once("connect", r));
    client.write("hello");
    await new Promise((r) => setTimeout(r, 50));
    try {
      const listening = parseDiagMessages(addon!.diagDump(AF_INET, STATE_LISTEN_MASK));
      expect(listening.some((s) => s.localPort === port && s.state === 10)).toBe(true);
      const live = parseDiagMessages(addon!.diagDump(AF_INET, STATE_CONNECTED_MASK));
      const mine = live.find((s) => s.localPort === client.localPort && s.remotePort === port)!;
      const peer = live.find((s) => s.localPort === port && s.remotePort === client.localPort)!;
      expect(mine).toMatchObject({ family: 4, state: 1, localIp: "127.0.0.1", remoteIp: "127.0.0.1", uid: process.getuid!() });
      expect(mine.cookie).not.toBe(peer.cookie);
      expect(mine.info!.bytesSent).toBe(5);
      expect(peer.info!.bytesReceived).toBe(5);
      const owners = await new SocketOwnerScanner().owners([mine.inode]);
      expect(owners.get(mine.inode)?.pid).toBe(process.pid);
      expect(() => addon!.diagDump(7 as never, 0)).toThrow(TypeError);
    } finally {
      client.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});

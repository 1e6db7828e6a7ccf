// The limit core on its own: token buckets, the concurrency cap, address grouping, the
// bounded key table and burst reporting, driven by a clock the test moves.
import { describe, expect, it } from "vitest";
import { TrafficError } from "../../src/errors";
import { addressKey, limitEvent, Limiter, LIMIT_DEFAULTS, messageKey, NO_KEY, type LimitBurst, type LimitSpec } from "../../src/limit";
import { assertValidEvent } from "../support/events";

const GROUPING = { v4Prefix: 32, v6Prefix: 64 };

function spec(over: Partial<LimitSpec>): LimitSpec {
  return { rate: 0, burst: 0, maxConcurrent: 0, ...LIMIT_DEFAULTS, ...over };
}

function clocked(over: Partial<LimitSpec>): { limiter: Limiter; bursts: LimitBurst[]; advance(ms: number): void } {
  let now = 1000;
  const bursts: LimitBurst[] = [];
  const limiter = new Limiter(spec(over), (b) => bursts.push(b), () => now);
  return { limiter, bursts, advance: (ms) => (now += ms) };
}

describe("limiter", () => {
  it("lets rate × time plus the burst through a flood, per key, and other keys keep their own bucket", () => {
    const { limiter, advance } = clocked({ rate: 100, burst: 10 });
    let flood = 0;
    let quiet = 0;
    // 10 s of 1,000 connections a second from one key, 20 a second from another.
    for (let ms = 0; ms < 10_000; ms++) {
      if (limiter.admit("203.0.113.1").allowed) flood++;
      if (ms % 50 === 0 && limiter.admit("203.0.113.2").allowed) quiet++;
      advance(1);
    }
    expect(flood).toBeGreaterThanOrEqual(10 + 100 * 10 - 1);
    expect(flood).toBeLessThanOrEqual(10 + 100 * 10);
    expect(quiet).toBe(200);
    expect(limiter.stats()).toMatchObject({ keys: 2, allowed: flood + quiet, rejectedRate: 10_000 - flood });
  });

  it("caps open connections per key exactly and counts a released one out", () => {
    const { limiter } = clocked({ maxConcurrent: 3 });
    const open = [1, 2, 3].map(() => limiter.admit("k"));
    expect(open.every((a) => a.allowed)).toBe(true);
    expect(limiter.admit("k")).toMatchObject({ allowed: false, reason: "concurrency" });
    expect(limiter.admit("other").allowed).toBe(true);
    const first = open[0]!;
    if (!first.allowed) throw new Error("unreachable");
    first.release();
    first.release();
    expect(limiter.openOf("k")).toBe(2);
    expect(limiter.admit("k").allowed).toBe(true);
    expect(limiter.admit("k").allowed).toBe(false);
  });

  it("stays within maxKeys under 100,000 distinct sources and counts every eviction", () => {
    const { limiter } = clocked({ rate: 5, burst: 5, maxKeys: 10_000 });
    let maxSeen = 0;
    for (let i = 0; i < 100_000; i++) {
      const ip = `198.51.${(i >> 8) & 0xff}.${i & 0xff}`;
      // Distinct sources: use both documentation ranges' hosts and an IPv6 tail.
      limiter.admit(i < 65_536 ? ip : `2001:db8::${(i - 65_536).toString(16)}`);
      if (i % 1000 === 0) maxSeen = Math.max(maxSeen, limiter.stats().keys);
    }
    const stats = limiter.stats();
    expect(Math.max(maxSeen, stats.keys)).toBe(10_000);
    expect(stats.evictions).toBe(90_000);
    expect(stats.allowed).toBe(100_000);
  });

  it("evicts the least recently seen key: seeing a key again keeps it", () => {
    const { limiter } = clocked({ rate: 1, burst: 1, maxKeys: 3 });
    for (const k of ["a", "b", "c", "a", "d"]) limiter.admit(k);
    // b went; a (seen again, refused) stays with its empty bucket.
    expect(limiter.admit("a")).toMatchObject({ allowed: false });
    expect(limiter.stats()).toMatchObject({ keys: 3, evictions: 1 });
    expect(limiter.admit("b").allowed).toBe(true);
    expect(limiter.stats().evictions).toBe(2);
    // c was the oldest then.
    expect(limiter.admit("c").allowed).toBe(true);
  });

  it("evicts an idle key before an older one with open connections, and counts a busy eviction", () => {
    const { limiter } = clocked({ maxConcurrent: 1, maxKeys: 2 });
    limiter.admit("busy");
    const idle = limiter.admit("idle");
    if (!idle.allowed) throw new Error("idle refused");
    idle.release();
    limiter.admit("new");
    expect(limiter.openOf("busy")).toBe(1);
    expect(limiter.stats()).toMatchObject({ keys: 2, evictions: 1, evictedBusy: 0, open: 2 });
    // Every key busy: the oldest goes, and its open count with it.
    limiter.admit("newer");
    expect(limiter.openOf("busy")).toBe(0);
    expect(limiter.stats()).toMatchObject({ keys: 2, evictions: 2, evictedBusy: 1, open: 2 });
  });

  it("reports a burst once at its start, while it lasts, and at its end, not per refusal", () => {
    const { limiter, bursts, advance } = clocked({ rate: 10, burst: 1, quietMs: 500, updateMs: 2000 });
    for (let i = 0; i < 3000; i++) {
      limiter.admit("203.0.113.9");
      advance(1);
      if (i % 100 === 0) limiter.sweep();
    }
    expect(bursts.map((b) => b.phase)).toEqual(["start", "update"]);
    advance(600);
    limiter.sweep();
    const end = bursts.at(-1)!;
    expect(end.phase).toBe("end");
    expect(end.reason).toBe("rate");
    expect(end.rejected.rate + end.allowed).toBe(2999);
    expect(end.durationMs).toBe(2998);
    expect(limiter.stats().bursts).toBe(0);
    const event = limitEvent(end, { limiter: "edge", keyKind: "client-ip", action: "reject-rst", spec: limiter.spec, host: "gw" });
    assertValidEvent(event);
    expect(event).toMatchObject({ type: "limit", phase: "end", key: "203.0.113.9", limits: { rate: 10, burst: 1, maxConcurrent: 0 } });
  });

  it("ends a burst whose key is evicted, and says so", () => {
    const { limiter, bursts } = clocked({ rate: 1, burst: 1, maxKeys: 1 });
    limiter.admit("a");
    limiter.admit("a");
    limiter.admit("b");
    expect(bursts.map((b) => [b.phase, b.key, b.evicted])).toEqual([
      ["start", "a", undefined],
      ["end", "a", true],
    ]);
  });

  it("refuses bad limits with ERR_LIMIT_CONFIG", () => {
    for (const bad of [{ rate: -1 }, { rate: 10, burst: 0 }, { rate: 0, maxConcurrent: 0 }, { maxConcurrent: 1.5 }, { rate: 1, burst: 1, maxKeys: 0 }, { rate: Number.NaN }]) {
      let err: unknown;
      try {
        new Limiter(spec({ rate: 1, burst: 1, ...bad }));
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(bad)).toBeInstanceOf(TrafficError);
      expect((err as TrafficError).code).toBe("ERR_LIMIT_CONFIG");
    }
  });
});

describe("limit keys", () => {
  it("groups IPv6 clients of one /64 into one key, and IPv4-mapped addresses with IPv4", () => {
    expect(addressKey("2001:db8:1:2::1", GROUPING)).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:DB8:1:2:ffff:eeee:dddd:cccc", GROUPING)).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:db8:1:3::1", GROUPING)).toBe("2001:db8:1:3::/64");
    expect(addressKey("2001:db8:1:3::1", { v4Prefix: 32, v6Prefix: 48 })).toBe("2001:db8:1::/48");
    expect(addressKey("2001:db8:1:3::1", { v4Prefix: 32, v6Prefix: 128 })).toBe("2001:db8:1:3::1");
    expect(addressKey("::ffff:192.0.2.7", GROUPING)).toBe("192.0.2.7");
    expect(addressKey("192.0.2.7", { v4Prefix: 24, v6Prefix: 64 })).toBe("192.0.2.0/24");
    expect(addressKey("junk", GROUPING)).toBeNull();
    expect(addressKey(7, GROUPING)).toBeNull();
  });

  it("shares one bucket between two hosts of a /64", () => {
    const { limiter } = clocked({ rate: 1, burst: 2 });
    const keyOf = (ip: string) => messageKey("client-ip", { payload: { remoteAddress: ip } }, GROUPING);
    expect(limiter.admit(keyOf("2001:db8:5:6::a")).allowed).toBe(true);
    expect(limiter.admit(keyOf("2001:db8:5:6::b")).allowed).toBe(true);
    expect(limiter.admit(keyOf("2001:db8:5:6::c"))).toMatchObject({ allowed: false, key: "2001:db8:5:6::/64" });
    expect(limiter.admit(keyOf("2001:db8:5:7::c")).allowed).toBe(true);
  });

  it("takes real ip's address over the socket peer, and names from classify", () => {
    const msg = { realIp: { address: "198.51.100.4" }, payload: { remoteAddress: "127.0.0.1" }, classification: { sni: "a.example.test", host: "B.example.test:8080", rule: "web" } };
    expect(messageKey("client-ip", msg, GROUPING)).toBe("198.51.100.4");
    expect(messageKey("client-ip", { payload: { remoteAddress: "127.0.0.1" } }, GROUPING)).toBe("127.0.0.1");
    expect(messageKey("sni", msg, GROUPING)).toBe("a.example.test");
    expect(messageKey("host", msg, GROUPING)).toBe("b.example.test");
    expect(messageKey("host", { classification: { sni: "a.example.test" } }, GROUPING)).toBe("a.example.test");
    expect(messageKey("rule", msg, GROUPING)).toBe("web");
    expect(messageKey("sni", {}, GROUPING)).toBe(NO_KEY);
    expect(messageKey("client-ip", { clientIp: "unknown" }, GROUPING)).toBe(NO_KEY);
  });
});

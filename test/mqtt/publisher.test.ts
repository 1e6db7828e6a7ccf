import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, connectAsync, type IConnackPacket, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TrafficError } from "../../src/errors";
import { Publisher, type PublisherOptions, type PublishTransport } from "../../src/mqtt/publisher";
import { FileSpool } from "../../src/mqtt/spool";
import { compileTopicTemplate, validatePublishTopic } from "../../src/mqtt/topic";
import { startMosquitto, type Mosquitto } from "../support/mosquitto";
import { systemCommand } from "../support/system";

const mosquittoBin = systemCommand("mosquitto");

describe("topic templates", () => {
  it("fills placeholders and keeps values inside one level", () => {
    const t = compileTopicTemplate("traffic/{host}/{type}/{side}");
    expect(t({ host: "h1", type: "flow-open", side: "client" })).toBe("traffic/h1/flow-open/client");
    expect(t({ host: "a/b+#", type: "lost" })).toBe("traffic/a_b__/lost/none");
  });
  it("rejects unknown placeholders, wildcards, unbalanced braces and $ topics", () => {
    for (const bad of ["traffic/{nope}", "traffic/+/x", "traffic/#", "traffic/{host", "$SYS/x", ""]) {
      expect(() => compileTopicTemplate(bad), bad).toThrow(TrafficError);
    }
    expect(() => validatePublishTopic("a/+/b")).toThrow(/must not contain/);
  });
});

describe.skipIf(mosquittoBin.skip)("publisher queue against mosquitto", () => {
  let broker: Mosquitto;
  let small: Mosquitto;
  /** Brokers a test stops with SIGSTOP: disposed here too, since a test that times out never reaches its finally. */
  const paused: Mosquitto[] = [];
  const clients: MqttClient[] = [];
  const dirs: string[] = [];

  beforeAll(async () => {
    broker = await startMosquitto(mosquittoBin.path as string);
    // A broker that allows 5 unacknowledged QoS 1 messages per client (MQTT 5 receive maximum).
    small = await startMosquitto(mosquittoBin.path as string, undefined, ["max_inflight_messages 5"]);
  });
  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined);
    await broker?.dispose();
    await small?.dispose();
    for (const b of paused) await resumeAndDispose(b);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function resumeAndDispose(b: Mosquitto): Promise<void> {
    // A broker still stopped by SIGSTOP would never act on the SIGTERM of dispose.
    if (b.pid > 0) {
      try {
        process.kill(b.pid, "SIGCONT");
      } catch {
        // already gone
      }
    }
    await b.dispose();
  }

  async function client(port: number, opts: Record<string, unknown> = {}): Promise<MqttClient> {
    const c = await connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, ...opts });
    clients.push(c);
    return c;
  }

  async function receive(port: number, topic: string, count: number): Promise<{ messages: string[]; done: Promise<void> }> {
    const sub = await client(port);
    const messages: string[] = [];
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    sub.on("message", (t, p) => {
      if (t !== topic) return;
      messages.push(p.toString());
      if (messages.length === count) resolve();
    });
    await sub.subscribeAsync(topic, { qos: 1 });
    return { messages, done };
  }

  /**
   * A transport around `c` that counts, from its own side, publishes not yet called back:
   * their most at once (`peak`), and how many were called back only after publish returned.
   */
  function watch(c: MqttClient): PublishTransport & { peak: number; calledBackLater: number } {
    let outstanding = 0;
    const watched = {
      peak: 0,
      calledBackLater: 0,
      publish: (topic: string, payload: string | Buffer, options: { qos: 0 | 1 | 2; retain: boolean }, cb: (err?: Error | null) => void) => {
        outstanding++;
        watched.peak = Math.max(watched.peak, outstanding);
        let returned = false;
        c.publish(topic, payload, options, (err) => {
          if (returned) watched.calledBackLater++;
          outstanding--;
          cb(err);
        });
        returned = true;
      },
    };
    return watched;
  }

  const msg = (topic: string, n: number) => ({ topic, payload: JSON.stringify({ n }), qos: 1 as const, retain: false });

  it("drop-oldest keeps the newest messages while disconnected, counts the dropped, then drains in order", async () => {
    const publisher = new Publisher({ maxQueued: 10, overflow: "drop-oldest", maxInFlight: 100 });
    for (let i = 0; i < 25; i++) expect(publisher.enqueue(msg("q/drop", i))).toBeUndefined();
    expect(publisher.stats()).toMatchObject({ connected: false, queued: 10, dropped: 15, sent: 0 });
    const got = await receive(broker.port, "q/drop", 10);
    publisher.connected(await client(broker.port));
    await got.done;
    expect(got.messages.map((m) => (JSON.parse(m) as { n: number }).n)).toEqual([15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
    expect(await publisher.drain(5000)).toBe(true);
    expect(publisher.stats()).toMatchObject({ sent: 10, dropped: 15, queued: 0, inFlight: 0 });
    publisher.close();
  });

  it("block holds producers until there is room and loses nothing", async () => {
    const publisher = new Publisher({ maxQueued: 5, overflow: "block", maxInFlight: 2 });
    const pending = Array.from({ length: 12 }, (_, i) => publisher.enqueue(msg("q/block", i)));
    expect(pending.filter((p) => p !== undefined)).toHaveLength(7);
    expect(publisher.stats()).toMatchObject({ queued: 5, blocked: 7, dropped: 0 });
    const got = await receive(broker.port, "q/block", 12);
    publisher.connected(await client(broker.port));
    await Promise.all(pending);
    await got.done;
    expect(got.messages.map((m) => (JSON.parse(m) as { n: number }).n)).toEqual([...Array(12).keys()]);
    expect(publisher.stats()).toMatchObject({ dropped: 0, blocked: 0 });
    publisher.close();
  });

  it("hands off what it did not send: waiting, then blocked, in order; a successor sends them; with a spool the spool keeps them", async () => {
    const publisher = new Publisher({ maxQueued: 4, overflow: "block", maxInFlight: 10 });
    const pending = Array.from({ length: 6 }, (_, i) => publisher.enqueue(msg("q/handoff", i)));
    const rest = publisher.handOff();
    expect(rest.map((m) => (JSON.parse(m.payload as string) as { n: number }).n)).toEqual([0, 1, 2, 3, 4, 5]);
    // The blocked producers are let go, and nothing is counted as dropped: it was handed on.
    await Promise.all(pending);
    expect(publisher.stats()).toMatchObject({ queued: 0, blocked: 0, dropped: 0 });
    expect(() => publisher.enqueue(msg("q/handoff", 9))).toThrow(TrafficError);
    expect(publisher.handOff()).toEqual([]);

    const successor = new Publisher({ maxQueued: 10, overflow: "drop-oldest", maxInFlight: 10 });
    for (const m of rest) successor.enqueue(m);
    const got = await receive(broker.port, "q/handoff", 6);
    successor.connected(await client(broker.port));
    await got.done;
    expect(got.messages.map((m) => (JSON.parse(m) as { n: number }).n)).toEqual([0, 1, 2, 3, 4, 5]);
    successor.close();

    const dir = mkdtempSync(join(tmpdir(), "handoff-spool-"));
    dirs.push(dir);
    const spooled = new Publisher({ maxQueued: 10, overflow: "drop-oldest", maxInFlight: 10, spool: new FileSpool(join(dir, "q.ndjson")) });
    for (let i = 0; i < 3; i++) spooled.enqueue(msg("q/handoff-spool", i));
    expect(spooled.handOff()).toEqual([]);
    const reopened = new Publisher({ maxQueued: 10, overflow: "drop-oldest", maxInFlight: 10, spool: new FileSpool(join(dir, "q.ndjson")) });
    expect(reopened.stats().queued).toBe(3);
    reopened.close();
  });

  it("never has more in flight than the broker's receive maximum", async () => {
    const c = connect(`mqtt://127.0.0.1:${small.port}`, { protocolVersion: 5 });
    clients.push(c);
    const connack = await new Promise<IConnackPacket>((resolve) => c.once("connect", resolve));
    const receiveMaximum = connack.properties?.receiveMaximum;
    expect(receiveMaximum).toBe(5);
    const publisher = new Publisher({ maxQueued: 10_000, overflow: "drop-oldest", maxInFlight: 1000 });
    // Watch the window from the transport's side: count publishes not yet called back.
    const watched = watch(c);
    const got = await receive(small.port, "q/window", 2000);
    publisher.connected(watched, receiveMaximum);
    for (let i = 0; i < 2000; i++) publisher.enqueue(msg("q/window", i));
    await got.done;
    expect(await publisher.drain(10_000)).toBe(true);
    expect(watched.peak).toBe(5);
    expect(got.messages.map((m) => (JSON.parse(m) as { n: number }).n)).toEqual([...Array(2000).keys()]);
    publisher.close();
  });

  it("QoS 0: at most one message waits on the socket, and every message arrives in order", async () => {
    const publisher = new Publisher({ maxQueued: 100_000, overflow: "drop-oldest", maxInFlight: 1000 });
    const c = await client(broker.port);
    // Count QoS 0 publishes the client has not called back: mqtt.js calls back at once
    // while the socket takes data and on its drain event once it pushes back.
    const watched = watch(c);
    const total = 20_000;
    const got = await receive(broker.port, "q/zero", total);
    publisher.connected(watched);
    for (let i = 0; i < total; i++) {
      publisher.enqueue({ ...msg("q/zero", i), qos: 0 });
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    expect(await publisher.drain(20_000)).toBe(true);
    await got.done;
    // The socket did push back, and then only one message waited for it.
    expect(watched.calledBackLater).toBeGreaterThan(0);
    expect(watched.peak).toBe(1);
    expect(got.messages.map((m) => (JSON.parse(m) as { n: number }).n)).toEqual([...Array(total).keys()]);
    expect(publisher.stats()).toMatchObject({ sent: total, dropped: 0, queued: 0, inFlight: 0 });
    publisher.close();
  });

  it("QoS 0: a message waiting on a socket that dies is sent on the next connection, and publishing goes on", { timeout: 60_000 }, async () => {
    const own = await startMosquitto(mosquittoBin.path as string);
    paused.push(own);
    try {
      const url = `mqtt://127.0.0.1:${own.port}`;
      const pub = connect(url, { protocolVersion: 5, reconnectPeriod: 100 });
      clients.push(pub);
      await new Promise((resolve) => pub.once("connect", resolve));
      const publisher = new Publisher({ maxQueued: 1_000_000, overflow: "drop-oldest", maxInFlight: 1000 });
      pub.on("close", () => publisher.disconnected());
      publisher.connected(pub);
      // A stopped broker reads nothing: the socket fills and one message waits for its drain.
      process.kill(own.pid, "SIGSTOP");
      const payload = "x".repeat(300);
      let n = 0;
      let lastSent = -1;
      for (;;) {
        for (let i = 0; i < 2000; i++) publisher.enqueue({ topic: "q/zero-lost", payload: `${n++} ${payload}`, qos: 0, retain: false });
        await new Promise((r) => setTimeout(r, 50));
        const s = publisher.stats();
        if (s.inFlight > 0 && s.sent === lastSent) break;
        lastSent = s.sent;
        expect(n).toBeLessThan(500_000);
      }
      expect(publisher.stats().inFlight).toBe(1);
      const sentBefore = publisher.stats().sent;
      // The broker dies with that socket unread; the client never gets its drain.
      const closed = new Promise<void>((resolve) => pub.once("close", () => resolve()));
      process.kill(own.pid, "SIGKILL");
      await own.stop();
      await closed;
      expect(publisher.stats()).toMatchObject({ connected: false, inFlight: 0, queued: n - sentBefore });

      // The client retries every 100 ms: it may be back before restart() has seen the port.
      const reconnected = new Promise<void>((resolve) => pub.once("connect", () => resolve()));
      await own.restart();
      await reconnected;
      const got = await receive(own.port, "q/zero-lost", n - sentBefore);
      publisher.connected(pub);
      await got.done;
      expect(await publisher.drain(20_000)).toBe(true);
      // Everything from the waiting message on arrives once, in order; what the socket had
      // taken before is QoS 0 on a dead connection (sent, at most once).
      expect(got.messages.map((m) => Number(m.slice(0, m.indexOf(" "))))).toEqual(Array.from({ length: n - sentBefore }, (_, i) => sentBefore + i));
      expect(publisher.stats()).toMatchObject({ sent: n, dropped: 0, queued: 0, inFlight: 0 });
      publisher.close();
    } finally {
      paused.splice(paused.indexOf(own), 1);
      await resumeAndDispose(own);
    }
  });

  it("a spool keeps what was queued across a close and reopen, then empties itself", async () => {
    const dir = mkdtempSync(join(tmpdir(), "traffic-spool-"));
    dirs.push(dir);
    const file = join(dir, "events.ndjson");
    const options = (): PublisherOptions => ({ maxQueued: 1000, overflow: "drop-oldest", maxInFlight: 50, spool: new FileSpool(file) });
    const first = new Publisher(options());
    for (let i = 0; i < 300; i++) first.enqueue({ ...msg("q/spool", i), properties: { contentType: "application/json" } });
    first.close();
    expect(readFileSync(file, "utf8").trim().split("\n")).toHaveLength(300);

    const second = new Publisher(options());
    expect(second.stats()).toMatchObject({ queued: 300, spooled: 300 });
    second.enqueue(msg("q/spool", 300));
    const got = await receive(broker.port, "q/spool", 301);
    second.connected(await client(broker.port));
    await got.done;
    expect(got.messages.map((m) => (JSON.parse(m) as { n: number }).n)).toEqual([...Array(301).keys()]);
    expect(await second.drain(5000)).toBe(true);
    second.close();
    // Everything was acknowledged: the spool file is empty and a third start has nothing to send.
    expect(statSync(file).size).toBe(0);
    expect(existsSync(`${file}.acked`)).toBe(true);
    const third = new Publisher(options());
    expect(third.stats()).toMatchObject({ queued: 0, spooled: 0 });
    third.close();
  });
});

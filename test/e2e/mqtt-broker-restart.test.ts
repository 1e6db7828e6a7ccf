import { connectAsync, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeEvent, type LostEvent } from "../../src/events";
import { Publisher } from "../../src/mqtt/publisher";
import { assertValidEvent } from "../support/events";
import { startMosquitto, type Mosquitto } from "../support/mosquitto";
import { systemCommand } from "../support/system";

const mosquittoBin = systemCommand("mosquitto");
const TOTAL = 100_000;
const WINDOW = 1000;

describe.skipIf(mosquittoBin.skip)("publisher across a broker restart (mosquitto)", () => {
  let broker: Mosquitto;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    broker = await startMosquitto(mosquittoBin.path as string);
  });
  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined);
    await broker?.dispose();
  });

  it(`every one of ${TOTAL} QoS 1 events arrives when the broker is stopped and started mid-stream`, { timeout: 240_000 }, async () => {
    const url = `mqtt://127.0.0.1:${broker.port}`;
    // A persistent subscriber session: mosquitto keeps (and persists) what it owes this
    // subscriber while either side is away, so only the publisher's behaviour is tested.
    const subscribe = async (): Promise<MqttClient> => {
      const c = await connectAsync(url, { clientId: "restart-sub", clean: false, reconnectPeriod: 100, protocolVersion: 4 });
      clients.push(c);
      c.on("message", onMessage);
      await c.subscribeAsync("traffic/restart/#", { qos: 1 });
      return c;
    };
    const seen = new Map<string, number>();
    const firstOrder: number[] = [];
    let received = 0;
    let allIn!: () => void;
    const complete = new Promise<void>((resolve) => (allIn = resolve));
    let validated = 0;
    const onMessage = (_topic: string, payload: Buffer): void => {
      received++;
      const event = JSON.parse(payload.toString()) as LostEvent;
      // Validating all 100k would dominate the run; every 97th is a spread sample.
      if (received % 97 === 0) {
        assertValidEvent(event);
        validated++;
      }
      const n = seen.get(event.id) ?? 0;
      if (n === 0) firstOrder.push(Number(event.id.slice(2)));
      seen.set(event.id, n + 1);
      if (seen.size === TOTAL) allIn();
    };
    const sub = await subscribe();

    const pubClient = await connectAsync(url, { clientId: "restart-pub", clean: true, reconnectPeriod: 100, protocolVersion: 4 });
    clients.push(pubClient);
    const publisher = new Publisher({ maxQueued: TOTAL, overflow: "drop-oldest", maxInFlight: WINDOW });
    publisher.connected(pubClient);
    let disconnects = 0;
    pubClient.on("connect", (connack) => publisher.connected(pubClient, connack.properties?.receiveMaximum));
    pubClient.on("close", () => {
      disconnects++;
      publisher.disconnected();
    });

    for (let i = 0; i < TOTAL; i++) {
      const event = makeEvent<LostEvent>({ type: "lost", source: "input", count: i + 1 }, { host: "restart", id: `e-${i}` });
      publisher.enqueue({ topic: "traffic/restart/lost", payload: JSON.stringify(event), qos: 1, retain: false });
      if (i % 5000 === 0) await new Promise((r) => setImmediate(r));
    }

    // Stop the broker once a third has arrived, start it again half a second later.
    while (seen.size < TOTAL / 3) await new Promise((r) => setTimeout(r, 5));
    const stats = publisher.stats();
    expect(stats.queued + stats.inFlight).toBeGreaterThan(0);
    // The subscriber leaves first (its session stays), so what the broker acknowledged
    // and still owes it is an offline queue, which mosquitto persists on stop; the
    // publisher meanwhile has unacknowledged messages in flight when the broker goes.
    await sub.endAsync();
    await broker.stop();
    await new Promise((r) => setTimeout(r, 500));
    expect(publisher.stats().connected).toBe(false);
    await broker.restart();
    await subscribe();
    const deadline = Date.now() + 120_000;
    while (seen.size < TOTAL && Date.now() < deadline) await Promise.race([complete, new Promise((r) => setTimeout(r, 500))]);
    if (seen.size < TOTAL) {
      const missing = Array.from({ length: TOTAL }, (_, i) => `e-${i}`).filter((id) => !seen.has(id));
      throw new Error(`${missing.length} missing (first ${missing.slice(0, 5).join(", ")}); publisher ${JSON.stringify(publisher.stats())}`);
    }
    expect(await publisher.drain(30_000)).toBe(true);

    expect(disconnects).toBeGreaterThanOrEqual(1);
    expect(seen.size).toBe(TOTAL);
    for (let i = 0; i < TOTAL; i++) expect(seen.has(`e-${i}`)).toBe(true);
    // At-least-once: a duplicate can only be a message that was unacknowledged when a
    // connection went away: at most the publisher's in-flight window per disconnection
    // (a loaded machine can add one, a reconnect attempt that times out), plus the
    // broker's in-flight window to the subscriber (mosquitto's default, 20).
    const duplicates = received - TOTAL;
    expect(duplicates).toBeLessThanOrEqual(disconnects * WINDOW + 20);
    // Order: first arrivals come in the order the events were queued.
    for (let i = 1; i < firstOrder.length; i++) expect(firstOrder[i]).toBeGreaterThan(firstOrder[i - 1] as number);
    expect(publisher.stats()).toMatchObject({ sent: TOTAL, dropped: 0, queued: 0, inFlight: 0 });
    expect(validated).toBeGreaterThan(1000);
    console.log(`broker restart: ${TOTAL} events, ${duplicates} duplicates, ${disconnects} disconnect(s)`);
    publisher.close();
  });
});

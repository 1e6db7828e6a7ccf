// Events/s through the mqtt events publisher to a local mosquitto, against raw mqtt.js
// publishing the same payloads in the same run (the anchor), at QoS 0 and 1, and with
// batching. The bar: the publisher reaches at least 0.8× raw mqtt.js.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectAsync, type MqttClient } from "mqtt";
import { makeEvent, type FlowOpenEvent } from "../src/events";
import { Batcher } from "../src/mqtt/batcher";
import { waitForPort } from "../test/rigs/wait";
import { Publisher } from "../src/mqtt/publisher";
import { compileTopicTemplate } from "../src/mqtt/topic";
import { median, type BenchReport, type BenchRow } from "./harness";
import { freePort } from "../test/rigs/free-port";

const EVENTS = 100_000;
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 5);

function findMosquitto(): string | null {
  for (const dir of [...(process.env["PATH"] ?? "").split(":"), "/usr/sbin", "/sbin"]) {
    if (dir && existsSync(join(dir, "mosquitto"))) return join(dir, "mosquitto");
  }
  return null;
}


function sampleEvents(n: number): FlowOpenEvent[] {
  return Array.from({ length: n }, (_, i) =>
    makeEvent<FlowOpenEvent>(
      { type: "flow-open", flowId: String(i + 1), protocol: "tcp", source: "ebpf", pid: null, comm: null, uid: null, ownerFrom: null, cgroupId: null, netns: null, partial: false, side: i % 2 === 0 ? "client" : "server", family: 4, localIp: "192.0.2.1", localPort: 40000 + (i % 20000), remoteIp: "198.51.100.7", remotePort: 443 },
      { host: "bench", id: `b-${i}` },
    ),
  );
}

const topicOf = compileTopicTemplate("traffic/{host}/{type}/{side}");
const RAW_QOS0_DRAIN = "raw mqtt.js QoS 0, waiting on drain";

/** A named way to publish every event once, returning the seconds it took. */
type Contender = [name: string, measure: () => Promise<number>];

/**
 * Raw mqtt.js: serialize, build the same topic, publish, keeping at most `window` publishes
 * not called back (the next one goes out when a callback runs). A plain loop of 100k
 * publishes is no anchor: mqtt.js then hangs one socket drain listener per publish and
 * slows to about a thousand events/s, and QoS 1 runs out of its 65535 packet ids.
 * With `waitOnDrain`, a QoS 0 publish that is not called back at once (the socket pushes
 * back, mqtt.js waits for its drain) stops the loop until it is: the publisher's QoS 0
 * flow control, written by hand, and so the stronger anchor for it.
 */
function rawMqttJs(client: MqttClient, events: FlowOpenEvent[], qos: 0 | 1, { window = 1000, waitOnDrain = false } = {}): Promise<number> {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    let next = 0;
    let outstanding = 0;
    let done = 0;
    let inPublish = false;
    let waiting = false;
    const onSent = (): void => {
      outstanding--;
      done++;
      if (done === events.length) resolve(Number(process.hrtime.bigint() - started) / 1e9);
      else if (!inPublish) {
        waiting = false;
        publishMore();
      }
    };
    const publishMore = (): void => {
      while (!waiting && outstanding < window && next < events.length) {
        const e = events[next++] as FlowOpenEvent;
        outstanding++;
        const before = done;
        inPublish = true;
        client.publish(topicOf({ host: e.host, type: e.type, side: e.side }), JSON.stringify(e), { qos, retain: false }, onSent);
        inPublish = false;
        if (waitOnDrain && qos === 0 && done === before) waiting = true;
      }
    };
    publishMore();
  });
}

/**
 * The mqtt events publisher: the same work through the bounded ordered queue, fed the way
 * a capture source delivers events, in chunks of 1000 per event loop turn.
 */
async function viaPublisher(client: MqttClient, events: FlowOpenEvent[], qos: 0 | 1): Promise<number> {
  const publisher = new Publisher({ maxQueued: events.length, overflow: "drop-oldest", maxInFlight: 1000 });
  publisher.connected(client);
  const started = process.hrtime.bigint();
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as FlowOpenEvent;
    publisher.enqueue({ topic: topicOf({ host: e.host, type: e.type, side: e.side }), payload: JSON.stringify(e), qos, retain: false });
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  const drained = await publisher.drain(120_000);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  publisher.close();
  if (!drained) throw new Error("publisher did not drain");
  return seconds;
}

/** Batches of `size` events per message (one JSON array), QoS 1. */
async function viaBatches(client: MqttClient, events: FlowOpenEvent[], size: number): Promise<number> {
  const publisher = new Publisher({ maxQueued: events.length, overflow: "drop-oldest", maxInFlight: 1000 });
  publisher.connected(client);
  const batcher = new Batcher(size, 50, (topic, json) => void publisher.enqueue({ topic, payload: json, qos: 1, retain: false }));
  const started = process.hrtime.bigint();
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as FlowOpenEvent;
    batcher.add(topicOf({ host: e.host, type: e.type, side: e.side }), JSON.stringify(e));
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  batcher.flush();
  const drained = await publisher.drain(120_000);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  publisher.close();
  if (!drained) throw new Error("publisher did not drain");
  return seconds;
}

/** Runs the MQTT benchmark against a mosquitto it starts on a free loopback port. */
export async function run(): Promise<BenchReport> {
  const binary = findMosquitto();
  if (binary === null) return { name: "mqtt events", rows: [], notes: ["mosquitto is not installed: skipped (apt-get install mosquitto)"] };
  const dir = mkdtempSync(join(tmpdir(), "traffic-bench-mqtt-"));
  const port = await freePort();
  writeFileSync(join(dir, "mosquitto.conf"), `listener ${port} 127.0.0.1\nallow_anonymous true\nlog_dest none\n`);
  const broker: ChildProcess = spawn(binary, ["-c", join(dir, "mosquitto.conf")], { stdio: "ignore" });
  try {
    await waitForPort(port, "127.0.0.1", 5000);
    const client = await connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, clientId: "traffic-bench" });
    const events = sampleEvents(EVENTS);
    const rates: Record<string, number[]> = {};
    const keep = (name: string, seconds: number): void => {
      const rate = EVENTS / seconds;
      if (process.env["BENCH_DEBUG"]) console.error(`${name}: ${Math.round(rate)}/s`);
      (rates[name] ??= []).push(rate);
    };
    // Warm up every path, then alternate them round by round so that none gets a quieter
    // machine; ratios are taken per round (same conditions) and their median kept.
    for (const qos of [0, 1] as const) {
      await rawMqttJs(client, events.slice(0, 10_000), qos);
      await rawMqttJs(client, events.slice(0, 10_000), qos, { waitOnDrain: true });
      await viaPublisher(client, events.slice(0, 10_000), qos);
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const qos of [0, 1] as const) {
        const contenders: Contender[] = [[`raw mqtt.js QoS ${qos}`, () => rawMqttJs(client, events, qos)]];
        if (qos === 0) contenders.push([RAW_QOS0_DRAIN, () => rawMqttJs(client, events, 0, { waitOnDrain: true })]);
        contenders.push([`mqtt events publisher QoS ${qos}`, () => viaPublisher(client, events, qos)]);
        // Each round starts with another contender, so none always follows the same one
        // (and pays for the garbage it left).
        for (let i = 0; i < contenders.length; i++) {
          const [name, measure] = contenders[(round + i) % contenders.length] as Contender;
          keep(name, await measure());
        }
      }
      keep("mqtt events publisher QoS 1, batches of 100", await viaBatches(client, events, 100));
    }
    await client.endAsync();
    const rows: BenchRow[] = [];
    const series = (name: string): number[] => rates[name] ?? [];
    // Ratios per round (same conditions), then their median.
    const ratioOf = (ours: string, anchor: string): number => median(series(ours).map((r, i) => r / (series(anchor)[i] as number)));
    const row = (ours: string, anchor: string, bar?: number): BenchRow => {
      const ratio = ratioOf(ours, anchor);
      return {
        case: ours,
        unit: "events/s",
        ours: median(series(ours)),
        anchorName: anchor,
        anchor: median(series(anchor)),
        ratio,
        ...(bar === undefined ? {} : { bar: `≥ ${bar}× ${anchor}`, pass: ratio >= bar }),
      };
    };
    for (const qos of [0, 1]) rows.push(row(`mqtt events publisher QoS ${qos}`, `raw mqtt.js QoS ${qos}`, 0.8));
    rows.push(row("mqtt events publisher QoS 0", RAW_QOS0_DRAIN));
    rows.push(row("mqtt events publisher QoS 1, batches of 100", "raw mqtt.js QoS 1"));
    return {
      name: "MQTT events vs raw mqtt.js",
      rows,
      notes: [
        `${EVENTS} flow-open events (${JSON.stringify(events[0]).length} bytes each) to mosquitto on loopback, median of ${ROUNDS} rounds, each ratio taken within its round, the contenders' order rotated from round to round`,
        "same for every contender: one mqtt.js client (MQTT 5, no PUBLISH properties), the same topic and JSON bytes built per event inside the timed loop, at most 1000 publishes not called back, timed until the last callback",
        "QoS 0: the publisher stops at a publish the socket does not take at once and goes on at its drain; the raw anchor keeps up to 1000 outstanding, each past the socket's high-water mark waiting on drain with a listener of its own; the drain-waiting raw loop does what the publisher does without its queue and counters, and pulls events as the socket takes them where the publisher is fed 1000 per event loop turn",
      ],
    };
  } finally {
    broker.kill("SIGTERM");
    await new Promise((r) => (broker.exitCode !== null ? r(undefined) : broker.once("exit", r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  run().then(
    (report) => {
      console.log(JSON.stringify(report, null, 2));
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}

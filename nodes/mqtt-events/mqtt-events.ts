import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from "node-red";
import { TrafficError } from "../../src/errors";
import { makeEvent, toEvent, type LostEvent, type MqttStatsEvent } from "../../src/events";
import { Batcher } from "../../src/mqtt/batcher";
import { Publisher, type OutgoingMessage, type OverflowPolicy, type PublishProperties, type PublisherStats, type PublishTransport } from "../../src/mqtt/publisher";
import { FileSpool } from "../../src/mqtt/spool";
import { compileTopicTemplate, validatePublishTopic, type TopicValues } from "../../src/mqtt/topic";
import { handovers } from "../../src/handover-registry";
import { trafficMetrics } from "../../src/observe/metrics";
import { policyVerdictsOf } from "../../src/policy/verdict";
import { configReader } from "../common/config";
import { watchHandovers } from "../common/startup";
import { messages, type Messages } from "../common/messages";
import { compactCount, throttledStatus } from "../common/status";
import type { BrokerHandle, BrokerState, BrokerUser } from "../../src/mqtt/broker";

const read = configReader("ERR_MQTT_CONFIG");

interface MqttEventsDef extends NodeDef {
  broker: string;
  topic: string;
  /** A non-empty msg.topic replaces the template. */
  topicFromMsg: boolean;
  qos: string | number;
  retain: boolean;
  /** MQTT 5: content type application/json on every message. */
  contentType: boolean;
  /** MQTT 5 user properties, one `name=value` a line. */
  userProperties: string;
  /** MQTT 5 message expiry in seconds; empty = none. */
  expiry: string | number;
  maxQueued: string | number;
  overflow: OverflowPolicy;
  maxInFlight: string | number;
  spool: boolean;
  /** Folder of the spool file; empty = <userDir>/traffic-spool. */
  spoolDir: string;
  /** Events per batch message; 0 or 1 = no batching. */
  batchSize: string | number;
  batchMs: string | number;
  /** Seconds between stats events; 0 = none. */
  statsInterval: string | number;
  /**
   * Convert known messages (a `transparent in` connection, a `classify` result, a forward
   * summary) to the package's events before publishing; default on.
   */
  convert: boolean;
}

/** Parses `name=value` lines into MQTT 5 user properties; a repeated name keeps every value. */
export function parseUserProperties(text: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const raw of String(text ?? "").split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "") continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new TrafficError("ERR_MQTT_CONFIG", `expected name=value, got "${line}"`, "user properties");
    const name = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    const prev = out[name];
    out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  return out;
}

function qosOf(value: unknown, fallback: 0 | 1 | 2): 0 | 1 | 2 {
  const n = Number(value);
  return n === 0 || n === 1 || n === 2 ? n : fallback;
}

/** Status text and colour from the publisher's counts. */
export function statusFromStats(s: PublisherStats, state: BrokerState["state"], stateText: string, _: Messages): { fill: "green" | "yellow" | "red" | "grey"; shape: "dot" | "ring"; text: string } {
  if (!s.connected) {
    const fill = state === "error" ? "red" : "yellow";
    // The broker's words (refused, not authorized, …) say more than a count, unless events wait.
    return { fill, shape: "ring", text: s.queued > 0 ? _("mqtt-events.status.queued", { count: compactCount(s.queued) }) : stateText };
  }
  if (s.dropped > 0) return { fill: "yellow", shape: "dot", text: _("mqtt-events.status.sentDropped", { sent: compactCount(s.sent), dropped: compactCount(s.dropped) }) };
  if (s.queued > 0) return { fill: "green", shape: "dot", text: _("mqtt-events.status.queued", { count: compactCount(s.queued) }) };
  return { fill: "green", shape: "dot", text: _("mqtt-events.status.sent", { count: compactCount(s.sent) }) };
}

/** Events a redeployed node had not sent yet, for its next instance to send first. */
interface Unsent {
  readonly messages: OutgoingMessage[];
  /** Says what was dropped when no next instance came (the node was deleted meanwhile). */
  readonly warn: (text: string) => void;
}

const unsentEvents = handovers<Unsent>("mqtt-events", (unsent) =>
  unsent.warn(`${unsent.messages.length} events not sent: no instance of this node came back after the deploy to send them`),
);

export default function register(RED: NodeAPI): void {
  watchHandovers(RED, "mqtt-events", unsentEvents.releaseAll, unsentEvents.releaseAll);
  const _ = messages(RED);
  function MqttEventsNode(this: Node, config: MqttEventsDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const status = throttledStatus(node);
    const broker = RED.nodes.getNode(config.broker) as (Node & BrokerHandle) | null;
    let brokerState: BrokerState["state"] = "disconnected";
    let brokerText = _("mqtt-events.status.disconnected");
    let publisher: Publisher | null = null;
    let batcher: Batcher | null = null;
    let topicOf: ((values: TopicValues) => string) | null = null;
    let qos: 0 | 1 | 2 = 1;
    let properties: PublishProperties | undefined;
    let statsTimer: NodeJS.Timeout | null = null;
    let statusTimer: NodeJS.Timeout | null = null;
    let statsIntervalMs = 0;
    let reportedDropped = 0;
    let publishedDropped = 0;
    let unwatchMetrics = (): void => undefined;

    try {
      if (!broker) throw new TrafficError("ERR_MQTT_CONFIG", _("mqtt-events.error.noBroker"), "broker");
      topicOf = compileTopicTemplate((config.topic || "").trim() || "traffic/{host}/{type}/{side}");
      qos = qosOf(read.int(config.qos, "QoS", { fallback: 1, min: 0, max: 2 }), 1);
      if (broker.protocolVersion === 5) {
        const props: PublishProperties = {};
        if (config.contentType !== false) props.contentType = "application/json";
        const user = parseUserProperties(config.userProperties);
        if (Object.keys(user).length > 0) props.userProperties = user;
        const expiry = read.int(config.expiry, "message expiry", { fallback: 0, min: 0, max: 0xffffffff });
        if (expiry > 0) props.messageExpiryInterval = expiry;
        if (Object.keys(props).length > 0) properties = props;
      }
      const spoolDir = (config.spoolDir || "").trim() || join(RED.settings.userDir ?? tmpdir(), "traffic-spool");
      const spool = config.spool ? new FileSpool(join(spoolDir, `${node.id.replace(/[^A-Za-z0-9._-]/g, "_")}.ndjson`)) : undefined;
      publisher = new Publisher({
        maxQueued: read.int(config.maxQueued, "queue size", { fallback: 10_000, min: 1, max: 100_000_000 }),
        overflow: config.overflow === "block" ? "block" : "drop-oldest",
        maxInFlight: read.int(config.maxInFlight, "in-flight window", { fallback: 1000, min: 1, max: 65535 }),
        ...(spool ? { spool } : {}),
      });
      const counted = publisher;
      unwatchMetrics = trafficMetrics().mqttPublisher(node.id, () => counted.stats());
      // What this node's previous instance had not sent goes out first.
      for (const m of unsentEvents.take(node.id)?.messages ?? []) void publisher.enqueue(m);
      const batchSize = read.int(config.batchSize, "batch size", { fallback: 0, min: 0, max: 100_000 });
      if (batchSize > 1) {
        const batchMs = read.int(config.batchMs, "batch time", { fallback: 1000, min: 1, max: 3_600_000 });
        const p = publisher;
        batcher = new Batcher(batchSize, batchMs, (topic, json) => {
          const message: OutgoingMessage = { topic, payload: json, qos, retain: config.retain === true };
          if (properties) message.properties = properties;
          void p.enqueue(message);
        });
      }
      statsIntervalMs = read.int(config.statsInterval, "stats interval", { fallback: 60, min: 0, max: 86_400 }) * 1000;
    } catch (err) {
      node.error(_("mqtt-events.error.config", { reason: (err as Error).message }));
      status.set({ fill: "red", shape: "ring", text: _("mqtt-events.status.badConfig") });
    }

    const refreshStatus = (): void => {
      if (publisher) status.set(statusFromStats(publisher.stats(), brokerState, brokerText, _));
    };

    const user: BrokerUser = {
      id: node.id,
      brokerState(state: BrokerState): void {
        brokerState = state.state;
        brokerText = state.text;
        if (publisher) {
          if (state.state === "connected" && state.client) {
            publisher.connected(state.client as unknown as PublishTransport, state.receiveMaximum);
          } else {
            publisher.disconnected();
          }
        }
        refreshStatus();
      },
    };

    // A message may pass here more than once (classify's output, then forward's summary)
    // carrying the same verdicts: each verdict id is published once.
    const publishedVerdicts = new Set<string>();
    const publishVerdicts = (msg: object): void => {
      if (!broker || !topicOf) return;
      for (const v of policyVerdictsOf(msg)) {
        if (publishedVerdicts.has(v.id)) continue;
        if (publishedVerdicts.size >= 4096) publishedVerdicts.clear();
        publishedVerdicts.add(v.id);
        // The node that decided knows no agent name; this agent's name goes in, as for the other events.
        const event = { ...v, host: broker.agentHost };
        const values = { host: event.host, type: event.type };
        if (batcher) batcher.add(topicOf(values), JSON.stringify(event));
        else publishEvent(event, values);
      }
    };

    const publishEvent = (value: object, values: TopicValues): void => {
      if (!publisher || !topicOf) return;
      const message: OutgoingMessage = { topic: topicOf(values), payload: JSON.stringify(value), qos, retain: false };
      if (properties) message.properties = properties;
      void publisher.enqueue(message);
    };

    // Stats and lost events go to the output every interval, and to the broker only while
    // connected: queued behind a backlog they would be stale, and under drop-oldest they
    // would push out the very events they count.
    const lostEvent = (count: number, host: string): LostEvent =>
      makeEvent<LostEvent>({ type: "lost", source: "publisher-queue", count, reason: "publisher queue full (drop-oldest)" }, { host });
    const emitStats = (): void => {
      if (!publisher || !broker) return;
      const s = publisher.stats();
      const host = broker.agentHost;
      const stats = makeEvent<MqttStatsEvent>(
        { type: "mqtt-stats", connected: s.connected, queued: s.queued, inFlight: s.inFlight, sent: s.sent, dropped: s.dropped, spooled: s.spooled, intervalMs: statsIntervalMs },
        { host },
      );
      node.send({ topic: "mqtt-stats", payload: stats });
      if (s.connected) publishEvent(stats, { host, type: "mqtt-stats" });
      if (s.dropped > reportedDropped) {
        node.send({ topic: "lost", payload: lostEvent(s.dropped - reportedDropped, host) });
        reportedDropped = s.dropped;
      }
      if (s.connected && s.dropped > publishedDropped) {
        publishEvent(lostEvent(s.dropped - publishedDropped, host), { host, type: "lost" });
        publishedDropped = s.dropped;
      }
    };

    if (publisher && broker) {
      broker.register(user);
      statusTimer = setInterval(refreshStatus, 1000);
      if (statsIntervalMs > 0) statsTimer = setInterval(emitStats, statsIntervalMs);
    }

    node.on("input", (msg: NodeMessageInFlow, _send, done) => {
      if (!publisher || !topicOf || !broker) {
        done(new Error(_("mqtt-events.error.notConfigured")));
        return;
      }
      try {
        // A known message becomes its event; an event or any other payload goes as it is.
        const event = config.convert !== false ? toEvent(msg, { host: broker.agentHost }) : null;
        if (config.convert !== false) publishVerdicts(msg);
        const payload: unknown = event ?? msg.payload;
        const fields = payload !== null && typeof payload === "object" && !Buffer.isBuffer(payload) ? (payload as Record<string, unknown>) : {};
        const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
        // This package's nodes label their messages in msg.topic (the connection, the event type):
        // for an event that label is not a topic, so events always take the template.
        const override = event === null && config.topicFromMsg !== false && typeof msg.topic === "string" && msg.topic !== "" ? msg.topic : undefined;
        const topic = override !== undefined
          ? validatePublishTopic(override, "msg.topic")
          : topicOf({ host: str(fields["host"]) ?? broker.agentHost, type: str(fields["type"]) ?? "message", side: str(fields["side"]), protocol: str(fields["protocol"]) });
        const json = Buffer.isBuffer(payload) ? payload.toString("utf8") : typeof payload === "string" ? payload : JSON.stringify(payload ?? null);
        if (batcher) {
          batcher.add(topic, json);
          refreshStatus();
          done();
          return;
        }
        const m = msg as { qos?: unknown; retain?: unknown; userProperties?: unknown };
        const message: OutgoingMessage = { topic, payload: json, qos: qosOf(m.qos, qos), retain: typeof m.retain === "boolean" ? m.retain : config.retain === true };
        if (properties) {
          message.properties = properties;
          if (m.userProperties && typeof m.userProperties === "object") {
            message.properties = { ...properties, userProperties: { ...(properties.userProperties ?? {}), ...(m.userProperties as Record<string, string>) } };
          }
        }
        const pending = publisher.enqueue(message);
        refreshStatus();
        if (pending === undefined) done();
        else pending.then(() => done(), (err: Error) => done(err));
      } catch (err) {
        done(err as Error);
      }
    });

    node.on("close", (removed: boolean, done: () => void) => {
      if (statsTimer) clearInterval(statsTimer);
      if (statusTimer) clearInterval(statusTimer);
      status.clear();
      batcher?.flush();
      const p = publisher;
      const finish = (): void => {
        if (p !== null && !removed) {
          // Stopped, not deleted: most likely a deploy. The next instance sends what is left.
          const rest = p.handOff();
          if (rest.length > 0) unsentEvents.park(node.id, { messages: rest, warn: (text) => node.warn(text) });
        } else {
          p?.close();
        }
        unwatchMetrics();
        if (broker) broker.deregister(user, done);
        else done();
      };
      // Give what is queued a bounded chance to go out while the connection is still up.
      if (p && p.stats().connected) p.drain(2000).then(finish, finish);
      else finish();
    });
  }
  RED.nodes.registerType("mqtt events", MqttEventsNode);
}

import { hostname } from "node:os";
import type { IClientOptions } from "mqtt";
import type { Node, NodeAPI, NodeDef } from "node-red";
import { agentWill, BrokerConnection, externalBrokerUrl, hostPortUrl, parkedBrokers, type BrokerConnectionSettings, type BrokerHandle, type BrokerLogKey, type BrokerStatusKey, type BrokerTexts } from "../../src/mqtt/broker";
import { compileTopicTemplate } from "../../src/mqtt/topic";
import { messages } from "../common/messages";
import { configReader } from "../common/config";
import { watchHandovers } from "../common/startup";
import { withNodeDefaults } from "../common/defaults";

const read = configReader("ERR_MQTT_CONFIG");

interface TrafficBrokerDef extends NodeDef {
  /** `embedded`: run a broker inside Node-RED; `external`: connect to `broker`:`port`. */
  mode: "embedded" | "external";
  embeddedHost: string;
  embeddedPort: string | number;
  /** External broker host (name or address), or a whole URL, as in the core mqtt-broker. */
  broker: string;
  port: string | number;
  /** Configs saved before the host and port fields: the external broker's URL. */
  url: string;
  clientId: string;
  protocolVersion: string | number;
  keepalive: string | number;
  cleanSession: boolean;
  /** MQTT 5 session expiry (seconds) for a persistent session. */
  sessionExpiry: string | number;
  reconnectPeriod: string | number;
  /** Id of a core `tls-config` node. */
  tls: string;
  /** Host name in topics and agent status; empty = os.hostname(). */
  agentHost: string;
  /** Retained agent status topic (birth and last will); empty turns both off. */
  statusTopic: string;
}

interface TrafficBrokerCredentials {
  user?: string;
  password?: string;
}

/** The `traffic broker` config node as its users see it. */
export interface TrafficBrokerNode extends Node, BrokerHandle {}

/** The catalogue keys of the connection's status texts and log lines. */
const STATUS_TEXTS: Record<BrokerStatusKey, string> = {
  notAuthorized: "traffic-broker.status.notAuthorized",
  refusedCode: "traffic-broker.status.refusedCode",
  refused: "traffic-broker.status.refused",
  tlsRejected: "traffic-broker.status.tlsRejected",
  error: "traffic-broker.status.error",
  disconnected: "traffic-broker.status.disconnected",
  connected: "traffic-broker.status.connected",
  connecting: "traffic-broker.status.connecting",
  badConfig: "traffic-broker.status.badConfig",
  portInUse: "traffic-broker.status.portInUse",
  brokerFailed: "traffic-broker.status.brokerFailed",
};
const LOG_TEXTS: Record<BrokerLogKey, string> = {
  reconnected: "traffic-broker.log.reconnected",
  lost: "traffic-broker.log.lost",
  failed: "traffic-broker.log.failed",
  embeddedKept: "traffic-broker.log.embeddedKept",
  embeddedListening: "traffic-broker.log.embeddedListening",
  embeddedFailed: "traffic-broker.log.embeddedFailed",
};

export default function register(RED: NodeAPI): void {
  // Stopping closes the listening socket at once (server.close), which is all an exiting process needs.
  watchHandovers(RED, "traffic-broker", parkedBrokers.releaseAll, parkedBrokers.releaseAll);
  const _ = messages(RED);
  function TrafficBrokerNodeImpl(this: TrafficBrokerNode & { credentials: TrafficBrokerCredentials }, flowConfig: TrafficBrokerDef): void {
    const config = withNodeDefaults("traffic broker", flowConfig);
    RED.nodes.createNode(this, config);
    const node = this;
    const agentHost = (config.agentHost || "").trim() || hostname();
    (node as { agentHost: string }).agentHost = agentHost;
    let protocolVersion: 4 | 5 = 4;
    let settings: BrokerConnectionSettings | null = null;
    try {
      protocolVersion = read.int(config.protocolVersion, "protocol version", { fallback: 4, min: 4, max: 5 }) as 4 | 5;
      let url: string;
      let embedded: BrokerConnectionSettings["embedded"] = null;
      if (config.mode === "embedded") {
        embedded = { host: (config.embeddedHost || "").trim() || "127.0.0.1", port: read.int(config.embeddedPort, "embedded broker port", { fallback: 1883, min: 1, max: 65535 }) };
        // aedes speaks MQTT 3.1 and 3.1.1 only (the editor help says so).
        protocolVersion = 4;
        url = hostPortUrl("mqtt", embedded.host, embedded.port);
      } else {
        url = externalBrokerUrl({ broker: config.broker, url: config.url, tls: Boolean(config.tls), port: read.int(config.port, "broker port", { fallback: 1883, min: 1, max: 65535 }) });
      }
      const keepalive = read.int(config.keepalive, "keepalive", { fallback: 60, min: 0, max: 65535 });
      const reconnectPeriod = read.int(config.reconnectPeriod, "reconnect period", { fallback: 2000, min: 100, max: 3_600_000 });
      const clean = config.cleanSession !== false;
      const clientId = (config.clientId || "").trim() || `traffic-${agentHost}-${node.id}`.slice(0, 64);
      const options: IClientOptions = { clientId, protocolVersion, keepalive, clean, reconnectPeriod, connectTimeout: 10_000, resubscribe: true };
      if (protocolVersion === 5 && !clean) {
        options.properties = { sessionExpiryInterval: read.int(config.sessionExpiry, "session expiry", { fallback: 3600, min: 0, max: 0xffffffff }) };
      }
      if (node.credentials?.user) options.username = node.credentials.user;
      if (node.credentials?.password) options.password = node.credentials.password;
      if (config.tls) {
        const tlsNode = RED.nodes.getNode(config.tls) as (Node & { addTLSOptions?(o: Record<string, unknown>): void }) | null;
        tlsNode?.addTLSOptions?.(options as Record<string, unknown>);
      }
      const topicTemplate = config.statusTopic === undefined ? "traffic/{host}/status" : config.statusTopic.trim();
      const statusTopic = topicTemplate === "" ? null : compileTopicTemplate(topicTemplate)({ host: agentHost, type: "agent-status" });
      if (statusTopic !== null) options.will = agentWill(statusTopic, agentHost);
      settings = { id: node.id, url, embedded, options, agentHost, statusTopic };
    } catch (err) {
      node.error(_("traffic-broker.error.config", { reason: (err as Error).message }));
    }
    (node as { protocolVersion: 4 | 5 }).protocolVersion = protocolVersion;

    const texts: BrokerTexts = {
      status: (key, params) => _(STATUS_TEXTS[key], params),
      log: (level, key, params) => node[level](_(LOG_TEXTS[key], params)),
    };
    const connection = new BrokerConnection(settings, texts);
    node.register = (user) => connection.register(user);
    node.deregister = (user, done) => {
      connection.deregister(user);
      done();
    };
    node.currentState = () => connection.currentState();
    node.on("close", (removed: boolean, done: () => void) => {
      void connection.close(removed).then(done);
    });
  }

  RED.nodes.registerType("traffic broker", TrafficBrokerNodeImpl as unknown as (this: Node, def: NodeDef) => void, {
    credentials: { user: { type: "text" }, password: { type: "password" } },
  });
}

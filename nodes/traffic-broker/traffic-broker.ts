import { createServer, type Server } from "node:net";
import { hostname } from "node:os";
import { connect, type IClientOptions, type IConnackPacket, type MqttClient } from "mqtt";
import type { Node, NodeAPI, NodeDef } from "node-red";
import { capabilityReport } from "../../src/doctor";
import { TrafficError } from "../../src/errors";
import { makeEvent, type AgentStatusEvent } from "../../src/events";
import { compileTopicTemplate } from "../../src/mqtt/topic";
import { PACKAGE } from "../../src/package-info";
import { messages, type Messages } from "../common/messages";
import { intSetting } from "../common/settings";
import { handovers } from "../../src/handover-registry";
import { watchHandovers } from "../common/startup";
import { withNodeDefaults } from "../common/defaults";


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

/** What a broker tells its users when the connection changes. */
export interface BrokerState {
  state: "connecting" | "connected" | "disconnected" | "error";
  /** Short text for a node status (under 20 characters). */
  text: string;
  /** The client to publish with, while connected. */
  client?: MqttClient;
  /** The broker's receive maximum (MQTT 5 CONNACK), when it sent one. */
  receiveMaximum?: number;
}

/** A node that uses the broker connection. */
export interface BrokerUser {
  readonly id: string;
  brokerState(state: BrokerState): void;
}

/** The `traffic broker` config node as its users see it. */
export interface TrafficBrokerNode extends Node {
  readonly agentHost: string;
  readonly protocolVersion: 4 | 5;
  register(user: BrokerUser): void;
  deregister(user: BrokerUser, done: () => void): void;
  /** The current state, as last sent to users. */
  currentState(): BrokerState;
}

/** Short names of the capture features this agent can use, for the agent status event. */
export function availableFeatures(): string[] {
  const names: Array<[RegExp, string]> = [
    [/^REDIRECT/, "redirect"],
    [/^TPROXY/, "tproxy"],
    [/^managed nft/, "managed-rules"],
    [/^source-preserving/, "transparent-forward"],
    [/^eBPF/, "ebpf"],
    [/^sock_diag/, "sock_diag"],
  ];
  const out: string[] = [];
  for (const report of capabilityReport()) {
    const name = names.find(([re]) => re.test(report.feature))?.[1];
    if (report.available && name !== undefined) out.push(name);
  }
  return out;
}

/** Checks the broker URL: mqtt, mqtts, ws and wss are the schemes mqtt.js speaks. */
export function brokerUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    throw new TrafficError("ERR_MQTT_CONFIG", "not a URL (mqtt://host:1883, mqtts://, ws://, wss://)", "broker URL");
  }
  if (!["mqtt:", "mqtts:", "ws:", "wss:"].includes(parsed.protocol)) {
    throw new TrafficError("ERR_MQTT_CONFIG", `scheme ${parsed.protocol} is not mqtt, mqtts, ws or wss`, "broker URL");
  }
  return url.trim();
}

/** `scheme://host:port`, an IPv6 address in brackets. */
function hostPortUrl(scheme: string, host: string, port: number): string {
  return `${scheme}://${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}`;
}

/**
 * The external broker's URL. The host field may hold a whole URL (ws://host/mqtt), as the
 * core mqtt-broker allows; a plain host takes the port field and mqtts when a TLS config is
 * chosen. A config saved before those fields has only `url`, which still counts.
 */
export function externalBrokerUrl(config: Partial<Pick<TrafficBrokerDef, "broker" | "port" | "url" | "tls">>): string {
  const host = (config.broker ?? "").trim();
  if (host === "") {
    if ((config.url ?? "").trim() !== "") return brokerUrl(config.url!);
    throw new TrafficError("ERR_MQTT_CONFIG", "no broker host", "broker host");
  }
  if (host.includes("://")) return brokerUrl(host);
  if (!/^[A-Za-z0-9.:\-\[\]]+$/.test(host)) throw new TrafficError("ERR_MQTT_CONFIG", `${JSON.stringify(host)} is not a host name or address`, "broker host");
  return brokerUrl(hostPortUrl(config.tls ? "mqtts" : "mqtt", host, intSetting(config.port, 1883, 1, 65535, "broker port")));
}

/** An embedded broker: aedes on a TCP listener, both owned by one config node. */
interface EmbeddedBroker {
  server: Server;
  close(): Promise<void>;
}

/**
 * Loads aedes, which ships only as an ES module. Node 20.19+ and 22.12+ require() it;
 * older 20.x and 22.x need a real import(), which TypeScript would compile to require()
 * under CommonJS, hence the Function wrapper.
 */
async function loadAedes(): Promise<typeof import("aedes")> {
  try {
    return require("aedes") as typeof import("aedes");
  } catch (err) {
    if ((err as { code?: string }).code !== "ERR_REQUIRE_ESM") throw err;
    const importModule = new Function("specifier", "return import(specifier)") as (s: string) => Promise<typeof import("aedes")>;
    return importModule("aedes");
  }
}

async function startEmbeddedBroker(host: string, port: number): Promise<EmbeddedBroker> {
  const { Aedes } = await loadAedes();
  const broker = await Aedes.createBroker();
  const server = createServer(broker.handle);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    server,
    close: () =>
      new Promise<void>((resolve) => {
        // Clients would keep the server open: aedes.close ends them, then the listener closes.
        broker.close(() => server.close(() => resolve()));
      }),
  };
}

/**
 * Embedded brokers a stopped node keeps running for its next instance: subscribers stay
 * connected, their sessions and queued messages live on, and nothing published around a
 * deploy is lost to a broker that was briefly gone.
 */
interface ParkedBroker {
  readonly broker: EmbeddedBroker;
  readonly host: string;
  readonly port: number;
}

const parkedBrokers = handovers<ParkedBroker>("embedded-broker", (parked) => void bounded(parked.broker.close(), 2000));

/** Status text for a connection error: errno names, and CONNACK refusals in words. */
export function errorText(err: Error & { code?: string | number }, _: Messages): string {
  const code = err.code;
  if (typeof code === "number") {
    // CONNACK return codes: MQTT 3.1.1 4/5, MQTT 5 0x86/0x87 are bad credentials / not authorised.
    if (code === 4 || code === 5 || code === 0x86 || code === 0x87) return _("traffic-broker.status.notAuthorized");
    return _("traffic-broker.status.refusedCode", { code });
  }
  if (code === "ECONNREFUSED") return _("traffic-broker.status.refused");
  if (typeof code === "string" && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) return _("traffic-broker.status.tlsRejected");
  return typeof code === "string" ? code.toLowerCase().slice(0, 19) : _("traffic-broker.status.error");
}

/** Races `work` against a timer, so a close handler always finishes. */
function bounded(work: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    work.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      () => {
        clearTimeout(timer);
        resolve();
      },
    );
  });
}

export default function register(RED: NodeAPI): void {
  // Stopping closes the listening socket at once (server.close), which is all an exiting process needs.
  watchHandovers(RED, "traffic-broker", parkedBrokers.releaseAll, parkedBrokers.releaseAll);
  const _ = messages(RED);
  function TrafficBrokerNodeImpl(this: TrafficBrokerNode & { credentials: TrafficBrokerCredentials }, flowConfig: TrafficBrokerDef): void {
    const config = withNodeDefaults("traffic broker", flowConfig);
    RED.nodes.createNode(this, config);
    const node = this;
    const users = new Map<string, BrokerUser>();
    let state: BrokerState = { state: "disconnected", text: _("traffic-broker.status.disconnected") };
    let client: MqttClient | null = null;
    let embedded: EmbeddedBroker | null = null;
    let starting: Promise<void> | null = null;
    let closing = false;
    let configError: Error | null = null;

    const agentHost = (config.agentHost || "").trim() || hostname();
    (node as { agentHost: string }).agentHost = agentHost;
    let protocolVersion: 4 | 5 = 4;
    let options: IClientOptions = {};
    let url = "";
    let statusTopic: string | null = null;
    let embeddedHost = "127.0.0.1";
    let embeddedPort = 1883;

    try {
      protocolVersion = intSetting(config.protocolVersion, 4, 4, 5, "protocol version") as 4 | 5;
      if (config.mode === "embedded") {
        embeddedHost = (config.embeddedHost || "").trim() || "127.0.0.1";
        embeddedPort = intSetting(config.embeddedPort, 1883, 1, 65535, "embedded broker port");
        // aedes speaks MQTT 3.1 and 3.1.1 only (the editor help says so).
        protocolVersion = 4;
        url = hostPortUrl("mqtt", embeddedHost, embeddedPort);
      } else {
        url = externalBrokerUrl(config);
      }
      const keepalive = intSetting(config.keepalive, 60, 0, 65535, "keepalive");
      const reconnectPeriod = intSetting(config.reconnectPeriod, 2000, 100, 3_600_000, "reconnect period");
      const clean = config.cleanSession !== false;
      const clientId = (config.clientId || "").trim() || `traffic-${agentHost}-${node.id}`.slice(0, 64);
      options = { clientId, protocolVersion, keepalive, clean, reconnectPeriod, connectTimeout: 10_000, resubscribe: true };
      if (protocolVersion === 5 && !clean) {
        options.properties = { sessionExpiryInterval: intSetting(config.sessionExpiry, 3600, 0, 0xffffffff, "session expiry") };
      }
      if (node.credentials?.user) options.username = node.credentials.user;
      if (node.credentials?.password) options.password = node.credentials.password;
      if (config.tls) {
        const tlsNode = RED.nodes.getNode(config.tls) as (Node & { addTLSOptions?(o: Record<string, unknown>): void }) | null;
        tlsNode?.addTLSOptions?.(options as Record<string, unknown>);
      }
      const topicTemplate = config.statusTopic === undefined ? "traffic/{host}/status" : config.statusTopic.trim();
      if (topicTemplate !== "") statusTopic = compileTopicTemplate(topicTemplate)({ host: agentHost, type: "agent-status" });
      if (statusTopic !== null) {
        options.will = { topic: statusTopic, payload: Buffer.from(JSON.stringify(agentStatus("offline"))), qos: 1, retain: true };
      }
    } catch (err) {
      configError = err as Error;
      node.error(_("traffic-broker.error.config", { reason: configError.message }));
    }
    (node as { protocolVersion: 4 | 5 }).protocolVersion = protocolVersion;

    function agentStatus(status: "online" | "offline"): AgentStatusEvent {
      return makeEvent<AgentStatusEvent>({ type: "agent-status", status, version: PACKAGE.version, features: availableFeatures() }, { host: agentHost });
    }

    function setState(next: BrokerState): void {
      state = next;
      for (const user of users.values()) user.brokerState(next);
    }

    // One log line each when the connection is lost, when reconnecting fails, and when it
    // is back: not one per reconnect attempt.
    let wasConnected = false;
    let errorLogged = false;
    const onConnect = (connack: IConnackPacket): void => {
      const receiveMaximum = connack.properties?.receiveMaximum;
      if (wasConnected || errorLogged) node.log(`connected to ${url} again`);
      wasConnected = true;
      errorLogged = false;
      if (statusTopic !== null && client !== null) {
        client.publish(statusTopic, JSON.stringify(agentStatus("online")), { qos: 1, retain: true });
      }
      setState({ state: "connected", text: _("traffic-broker.status.connected"), client: client as MqttClient, ...(receiveMaximum === undefined ? {} : { receiveMaximum }) });
    };
    const onReconnect = (): void => setState({ state: "connecting", text: _("traffic-broker.status.connecting") });
    const onClose = (): void => {
      if (state.state === "connected" && !closing) node.warn(`lost the connection to ${url}; reconnecting every ${options.reconnectPeriod} ms, events are queued meanwhile`);
      if (state.state === "connected" || state.state === "connecting") setState({ state: "disconnected", text: _("traffic-broker.status.disconnected") });
    };
    const onError = (err: Error & { code?: string | number }): void => {
      if (!errorLogged && !closing) node.error(`broker ${url}: ${err.message}`);
      errorLogged = true;
      setState({ state: "error", text: errorText(err, _) });
    };

    async function start(): Promise<void> {
      if (configError !== null) {
        setState({ state: "error", text: _("traffic-broker.status.badConfig") });
        return;
      }
      setState({ state: "connecting", text: _("traffic-broker.status.connecting") });
      if (config.mode === "embedded") {
        // Taken before the first await: the flows-started release must not close it first.
        const parked = parkedBrokers.take(node.id);
        try {
          if (parked !== undefined && parked.host === embeddedHost && parked.port === embeddedPort) {
            embedded = parked.broker;
            node.log(`embedded MQTT broker on ${url} kept running across the deploy`);
          } else {
            // Another address or port: the old broker goes first, in case the new one reuses its port.
            if (parked !== undefined) await bounded(parked.broker.close(), 2000);
            embedded = await startEmbeddedBroker(embeddedHost, embeddedPort);
            node.log(`embedded MQTT broker listening on ${url}`);
          }
        } catch (err) {
          const e = err as Error & { code?: string };
          node.error(_("traffic-broker.error.embedded", { host: embeddedHost, port: embeddedPort, reason: e.message }));
          setState({ state: "error", text: e.code === "EADDRINUSE" ? _("traffic-broker.status.portInUse") : _("traffic-broker.status.brokerFailed") });
          return;
        }
        if (closing) return;
      }
      client = connect(url, options);
      client.on("connect", onConnect);
      client.on("reconnect", onReconnect);
      client.on("close", onClose);
      client.on("error", onError);
    }

    node.register = (user: BrokerUser): void => {
      users.set(user.id, user);
      user.brokerState(state);
      if (starting === null && !closing) starting = start();
    };

    node.deregister = (user: BrokerUser, done: () => void): void => {
      users.delete(user.id);
      done();
    };

    node.currentState = (): BrokerState => state;

    node.on("close", (removed: boolean, done: () => void) => {
      closing = true;
      const shutdown = async (): Promise<void> => {
        await starting;
        const c = client;
        if (c !== null) {
          // A clean disconnect does not fire the last will: say offline ourselves first.
          if (statusTopic !== null && c.connected) {
            await bounded(c.publishAsync(statusTopic, JSON.stringify(agentStatus("offline")), { qos: 1, retain: true }), 1000);
          }
          await bounded(c.endAsync(false), 2000);
          if (!c.disconnected) await bounded(c.endAsync(true), 1000);
          c.off("connect", onConnect);
          c.off("reconnect", onReconnect);
          c.off("close", onClose);
          c.off("error", onError);
          // An ended client must never take the process down with an unhandled 'error'.
          c.on("error", () => undefined);
          client = null;
        }
        if (embedded !== null) {
          // Stopped, not deleted: most likely a deploy that starts this node again at once.
          if (removed) await bounded(embedded.close(), 2000);
          else parkedBrokers.park(node.id, { broker: embedded, host: embeddedHost, port: embeddedPort });
          embedded = null;
        }
      };
      bounded(shutdown(), 6000).then(() => {
        users.clear();
        done();
      });
    });
  }

  RED.nodes.registerType("traffic broker", TrafficBrokerNodeImpl as unknown as (this: Node, def: NodeDef) => void, {
    credentials: { user: { type: "text" }, password: { type: "password" } },
  });
}

// The connection to an MQTT broker that the `traffic broker` config node owns, usable
// without Node-RED: the broker URL checks, an embedded aedes broker kept alive across a
// redeploy, the agent status (birth and last will), and one connection state for every
// user of the connection. Texts are the caller's: the connection names them by key.
import { createServer, type Server } from "node:net";
import { connect, type IClientOptions, type IConnackPacket, type MqttClient } from "mqtt";
import { capabilityReport } from "../doctor";
import { TrafficError } from "../errors";
import { makeEvent, type AgentStatusEvent } from "../events";
import { handovers } from "../handover-registry";
import { PACKAGE } from "../package-info";

/** What a broker connection tells its users when it changes. */
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

/** A broker connection as its users (`mqtt events`) see it. */
export interface BrokerHandle {
  readonly agentHost: string;
  readonly protocolVersion: 4 | 5;
  register(user: BrokerUser): void;
  deregister(user: BrokerUser, done: () => void): void;
  /** The current state, as last sent to users. */
  currentState(): BrokerState;
}

/** Status texts by key (`traffic-broker.status.<key>` in the node's catalogue). */
export type BrokerStatusKey = "notAuthorized" | "refusedCode" | "refused" | "tlsRejected" | "error" | "disconnected" | "connected" | "connecting" | "badConfig" | "portInUse" | "brokerFailed";
/** Log lines by key (`traffic-broker.log.<key>`). */
export type BrokerLogKey = "reconnected" | "lost" | "failed" | "embeddedKept" | "embeddedListening" | "embeddedFailed";

export interface BrokerTexts {
  status(key: BrokerStatusKey, params?: Record<string, string | number>): string;
  log(level: "log" | "warn" | "error", key: BrokerLogKey, params: Record<string, string | number>): void;
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
export function hostPortUrl(scheme: string, host: string, port: number): string {
  return `${scheme}://${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}`;
}

/**
 * The external broker's URL. The host may be a whole URL (ws://host/mqtt), as the core
 * mqtt-broker allows; a plain host takes the port and mqtts when TLS is on. A config
 * saved before the host and port fields has only `url`, which still counts.
 */
export function externalBrokerUrl(config: { broker?: string; port: number; url?: string; tls: boolean }): string {
  const host = (config.broker ?? "").trim();
  if (host === "") {
    if ((config.url ?? "").trim() !== "") return brokerUrl(config.url!);
    throw new TrafficError("ERR_MQTT_CONFIG", "no broker host", "broker host");
  }
  if (host.includes("://")) return brokerUrl(host);
  if (!/^[A-Za-z0-9.:[\]-]+$/.test(host)) throw new TrafficError("ERR_MQTT_CONFIG", `${JSON.stringify(host)} is not a host name or address`, "broker host");
  return brokerUrl(hostPortUrl(config.tls ? "mqtts" : "mqtt", host, config.port));
}

/** The status key (and code) for a connection error: errno names, and CONNACK refusals in words. */
export function connectionErrorText(err: Error & { code?: string | number }, texts: Pick<BrokerTexts, "status">): string {
  const code = err.code;
  if (typeof code === "number") {
    // CONNACK return codes: MQTT 3.1.1 4/5, MQTT 5 0x86/0x87 are bad credentials / not authorised.
    if (code === 4 || code === 5 || code === 0x86 || code === 0x87) return texts.status("notAuthorized");
    return texts.status("refusedCode", { code });
  }
  if (code === "ECONNREFUSED") return texts.status("refused");
  if (typeof code === "string" && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) return texts.status("tlsRejected");
  return typeof code === "string" ? code.toLowerCase().slice(0, 19) : texts.status("error");
}

/** Races `work` against a timer, so a close always finishes. */
export function bounded(work: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    work.then(done, done);
  });
}

/** An embedded broker: aedes on a TCP listener. */
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
 * Embedded brokers a stopped connection keeps running for its next instance (same owner
 * id): subscribers stay connected, their sessions and queued messages live on, and nothing
 * published around a deploy is lost to a broker that was briefly gone.
 */
interface ParkedBroker {
  readonly broker: EmbeddedBroker;
  readonly host: string;
  readonly port: number;
}

export const parkedBrokers = handovers<ParkedBroker>("embedded-broker", (parked) => void bounded(parked.broker.close(), 2000));

/** The agent status event (`online` at connect, `offline` at close and as the last will), as published. */
function agentStatusPayload(status: "online" | "offline", host: string): string {
  return JSON.stringify(makeEvent<AgentStatusEvent>({ type: "agent-status", status, version: PACKAGE.version, features: availableFeatures() }, { host }));
}

/** The last will: the agent status `offline`, retained. */
export function agentWill(statusTopic: string, agentHost: string): NonNullable<IClientOptions["will"]> {
  return { topic: statusTopic, payload: Buffer.from(agentStatusPayload("offline", agentHost)), qos: 1, retain: true };
}

export interface BrokerConnectionSettings {
  /** The owner's id: an embedded broker parked at close is taken back by the next connection with it. */
  readonly id: string;
  readonly url: string;
  /** Run aedes on this address and port before connecting to it. */
  readonly embedded: { readonly host: string; readonly port: number } | null;
  readonly options: IClientOptions;
  readonly agentHost: string;
  /** Retained agent status topic (birth and last will), or null for none. */
  readonly statusTopic: string | null;
}

/**
 * One client connection (and, when embedded, the broker it connects to), shared by every
 * registered user. Starts at the first user; one log line each when the connection is lost,
 * when reconnecting fails, and when it is back — not one per reconnect attempt.
 */
export class BrokerConnection {
  private readonly users = new Map<string, BrokerUser>();
  private state: BrokerState;
  private client: MqttClient | null = null;
  private embedded: EmbeddedBroker | null = null;
  private starting: Promise<void> | null = null;
  private closing = false;
  private wasConnected = false;
  private errorLogged = false;

  /** `settings` null: the config was invalid; the state says so and nothing connects. */
  constructor(
    private readonly settings: BrokerConnectionSettings | null,
    private readonly texts: BrokerTexts,
  ) {
    this.state = { state: "disconnected", text: texts.status("disconnected") };
  }

  register(user: BrokerUser): void {
    this.users.set(user.id, user);
    user.brokerState(this.state);
    if (this.starting === null && !this.closing) this.starting = this.start();
  }

  deregister(user: BrokerUser): void {
    this.users.delete(user.id);
  }

  currentState(): BrokerState {
    return this.state;
  }

  private setState(next: BrokerState): void {
    this.state = next;
    for (const user of this.users.values()) user.brokerState(next);
  }

  private agentStatus(status: "online" | "offline"): string {
    return agentStatusPayload(status, this.settings!.agentHost);
  }

  private readonly onConnect = (connack: IConnackPacket): void => {
    const s = this.settings!;
    const receiveMaximum = connack.properties?.receiveMaximum;
    if (this.wasConnected || this.errorLogged) this.texts.log("log", "reconnected", { url: s.url });
    this.wasConnected = true;
    this.errorLogged = false;
    if (s.statusTopic !== null && this.client !== null) this.client.publish(s.statusTopic, this.agentStatus("online"), { qos: 1, retain: true });
    this.setState({ state: "connected", text: this.texts.status("connected"), client: this.client as MqttClient, ...(receiveMaximum === undefined ? {} : { receiveMaximum }) });
  };
  private readonly onReconnect = (): void => this.setState({ state: "connecting", text: this.texts.status("connecting") });
  private readonly onClose = (): void => {
    const s = this.settings!;
    if (this.state.state === "connected" && !this.closing) this.texts.log("warn", "lost", { url: s.url, period: s.options.reconnectPeriod ?? 0 });
    if (this.state.state === "connected" || this.state.state === "connecting") this.setState({ state: "disconnected", text: this.texts.status("disconnected") });
  };
  private readonly onError = (err: Error & { code?: string | number }): void => {
    if (!this.errorLogged && !this.closing) this.texts.log("error", "failed", { url: this.settings!.url, reason: err.message });
    this.errorLogged = true;
    this.setState({ state: "error", text: connectionErrorText(err, this.texts) });
  };

  private async start(): Promise<void> {
    const s = this.settings;
    if (s === null) {
      this.setState({ state: "error", text: this.texts.status("badConfig") });
      return;
    }
    this.setState({ state: "connecting", text: this.texts.status("connecting") });
    if (s.embedded !== null) {
      const { host, port } = s.embedded;
      // Taken before the first await: the flows-started release must not close it first.
      const parked = parkedBrokers.take(s.id);
      try {
        if (parked !== undefined && parked.host === host && parked.port === port) {
          this.embedded = parked.broker;
          this.texts.log("log", "embeddedKept", { url: s.url });
        } else {
          // Another address or port: the old broker goes first, in case the new one reuses its port.
          if (parked !== undefined) await bounded(parked.broker.close(), 2000);
          this.embedded = await startEmbeddedBroker(host, port);
          this.texts.log("log", "embeddedListening", { url: s.url });
        }
      } catch (err) {
        const e = err as Error & { code?: string };
        this.texts.log("error", "embeddedFailed", { host, port, reason: e.message });
        this.setState({ state: "error", text: this.texts.status(e.code === "EADDRINUSE" ? "portInUse" : "brokerFailed") });
        return;
      }
      if (this.closing) return;
    }
    const client = connect(s.url, s.options);
    this.client = client;
    client.on("connect", this.onConnect);
    client.on("reconnect", this.onReconnect);
    client.on("close", this.onClose);
    client.on("error", this.onError);
  }

  /**
   * Says offline, disconnects, and stops or parks the embedded broker: `removed` false is
   * most likely a deploy that starts the same owner again at once, so the broker is parked.
   * Finishes within 6 s whatever the broker does.
   */
  async close(removed: boolean): Promise<void> {
    this.closing = true;
    const shutdown = async (): Promise<void> => {
      await this.starting;
      const c = this.client;
      const s = this.settings;
      if (c !== null && s !== null) {
        // A clean disconnect does not fire the last will: say offline ourselves first.
        if (s.statusTopic !== null && c.connected) await bounded(c.publishAsync(s.statusTopic, this.agentStatus("offline"), { qos: 1, retain: true }), 1000);
        await bounded(c.endAsync(false), 2000);
        if (!c.disconnected) await bounded(c.endAsync(true), 1000);
        c.off("connect", this.onConnect);
        c.off("reconnect", this.onReconnect);
        c.off("close", this.onClose);
        c.off("error", this.onError);
        // An ended client must never take the process down with an unhandled 'error'.
        c.on("error", () => undefined);
        this.client = null;
      }
      if (this.embedded !== null && s !== null && s.embedded !== null) {
        if (removed) await bounded(this.embedded.close(), 2000);
        else parkedBrokers.park(s.id, { broker: this.embedded, host: s.embedded.host, port: s.embedded.port });
        this.embedded = null;
      }
    };
    await bounded(shutdown(), 6000);
    this.users.clear();
  }
}

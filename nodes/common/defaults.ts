/**
 * Field defaults of the nodes whose dialog and runtime once disagreed, so that a flow
 * that omits a field (imported, hand-written, from an older version) runs as the dialog
 * showed it. The one source for both sides: the runtime fills omitted fields from here,
 * and scripts/build.js writes this table into the dialogs where they name
 * TRAFFIC_DEFAULTS (nodes/<name>/<name>.html).
 *
 * The embedded broker is the default because a new user has no broker yet (README,
 * examples); every example flow sets these fields itself.
 */
export const NODE_DEFAULTS = {
  classify: {
    name: "",
    input: "auto",
    property: "payload",
    maxBytes: 16384,
    timeoutMs: 5000,
    serverFirstMs: 300,
    rules: [{ name: "tls", protocols: "tls" }],
    enforcement: "enforce",
    tlsFingerprints: "rules",
  },
  "transparent in": {
    name: "",
    port: 15001,
    protocol: "tcp",
    udpIdleTimeout: 30,
    maxUdpSessions: 65536,
    address: "",
    family: "dual",
    mode: "redirect",
    maxConnections: 1000,
    sniffBytes: 0,
    sniffTimeout: 1,
    proxyProtocol: "off",
    proxyFrom: "",
    unclaimedTimeout: 10,
    unclaimedAction: "close",
    onClose: "keep",
    manageRules: false,
    ruleDestinations: "",
    rulePorts: "",
    ruleMark: "",
    ruleLocal: false,
    ruleLimitRate: "",
    ruleLimitBurst: "",
    ruleLimitConcurrent: "",
  },
  "traffic broker": {
    name: "",
    mode: "embedded",
    embeddedHost: "127.0.0.1",
    embeddedPort: 1883,
    broker: "",
    port: 1883,
    url: "",
    clientId: "",
    // The embedded broker (the default mode) speaks MQTT 3.1.1, as the core mqtt-broker's default.
    protocolVersion: "4",
    keepalive: 60,
    cleanSession: true,
    sessionExpiry: 3600,
    reconnectPeriod: 2000,
    agentHost: "",
    statusTopic: "traffic/{host}/status",
  },
  "ip filter": {
    name: "",
    property: "clientIp",
    propertyType: "msg",
    rules: [{ name: "internal", action: "allow", vt: "cidr", v: "private, loopback" }],
    outputMode: "allow-deny",
    noMatch: "deny",
    enforcement: "enforce",
  },
  limit: {
    name: "",
    keyKind: "client-ip",
    keyProperty: "clientIp",
    v4Prefix: 32,
    v6Prefix: 64,
    rate: 100,
    burst: 100,
    maxConcurrent: 0,
    over: "reject-rst",
    maxKeys: 100000,
  },
} as const;

export type DefaultedType = keyof typeof NODE_DEFAULTS;

/** The node's configuration with each field it omits (undefined) taken from NODE_DEFAULTS. */
export function withNodeDefaults<T extends object>(type: DefaultedType, config: T): T {
  // Node-RED passes the flow and alias as non-enumerable properties; a copy must keep them.
  const out = Object.defineProperties({}, Object.getOwnPropertyDescriptors(config)) as Record<string, unknown>;
  for (const [key, value] of Object.entries(NODE_DEFAULTS[type])) {
    // A fresh copy of each default, so one node changing its rules cannot change another's.
    if (out[key] === undefined) out[key] = JSON.parse(JSON.stringify(value)) as unknown;
  }
  return out as T;
}

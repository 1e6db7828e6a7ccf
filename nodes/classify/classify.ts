import type { Node, NodeAPI, NodeDef, NodeMessageInFlow, NodeStatus } from "node-red";
import {
  type Classification,
  classifierLimits,
  ClassifierLimits,
  classifyDatagrams,
  ClassifyRuleSpec,
  compileRouter,
  FingerprintSet,
  fingerprintsUsed,
  moreBytesSource,
  Router,
  runSniffers,
  Sniffer,
  sniffersWithFingerprints,
  StreamClassifier,
} from "../../src/classify";
import { endpointsOf, flowFirstBytes, type ClassifyEndpoints } from "../../src/events/first-bytes";
import { isTrafficSession } from "../../src/connection";
import { addPolicyVerdict, enforcementOf, type Enforcement } from "../../src/policy/verdict";
import { TrafficError } from "../../src/errors";
import { observeClassification } from "../../src/observe";
import { withNodeDefaults } from "../common/defaults";
import { messages } from "../common/messages";
import { COUNTS_STATUS_MAX, countsText, throttledStatus } from "../common/status";
import { configReader } from "../common/config";

/** One rule as the editor stores it: every condition is text, empty means "any". */
export interface ClassifyRuleConfig {
  name?: string;
  protocols?: string;
  hosts?: string;
  alpn?: string;
  /** JA4 or JA3 hash, exact or a prefix ending in `*`. */
  fingerprints?: string;
  paths?: string;
  ports?: string;
  destinations?: string;
  clients?: string;
}

interface ClassifyDef extends NodeDef {
  /** `auto`: a connection message or a flow event (payload.firstBytes), else the property; `property`: only the property. */
  input: "auto" | "property";
  /** msg property holding the bytes (a Buffer, a byte array or a string). */
  property: string;
  maxBytes: string | number;
  timeoutMs: string | number;
  serverFirstMs: string | number;
  rules: ClassifyRuleConfig[];
  /** `shadow`: every message leaves by "other"; the rule that would have taken it is only reported. */
  enforcement?: Enforcement;
  /** `rules` (default): computed only for the rules that match on them; `fields`: JA4 and JA3 in every ClientHello's fields. */
  tlsFingerprints?: "fields" | "rules";
}

/** What a rule matched on, in words for the policy-verdict event. */
function routeReason(rule: string, c: Classification): string {
  const f = c.fields;
  const parts: string[] = [c.protocol];
  if (f.sni !== undefined) parts.push(`sni ${f.sni}`);
  else if (f.host !== undefined) parts.push(`host ${f.host}`);
  if (f.ja4 !== undefined) parts.push(`ja4 ${f.ja4}`);
  return `rule ${JSON.stringify(rule)} matched ${parts.join(", ")}`;
}

/** `msg.classification`: what the stream is, and which rule routed it. */
export interface ClassificationMessage extends Classification {
  /** Name of the rule that matched, or null for "other". */
  readonly rule: string | null;
  /** Output index (0-based) the message left by. */
  readonly output: number;
}

/** Turns editor rules into rule specs (empty fields left out). */
export function rulesFromConfig(rules: ClassifyRuleConfig[] | undefined): ClassifyRuleSpec[] {
  return (rules ?? []).map((r) => {
    const spec: { -readonly [K in keyof ClassifyRuleSpec]: ClassifyRuleSpec[K] } = {};
    const set = (key: keyof Omit<ClassifyRuleSpec, "name">, value: string | undefined): void => {
      if (value !== undefined && String(value).trim() !== "") spec[key] = String(value);
    };
    if (r.name) spec.name = r.name;
    set("protocols", r.protocols);
    set("hosts", r.hosts);
    set("alpn", r.alpn);
    set("fingerprints", r.fingerprints);
    set("pathPrefixes", r.paths);
    set("destinationPorts", r.ports);
    set("destinations", r.destinations);
    set("clients", r.clients);
    return spec;
  });
}

const read = configReader("ERR_CLASSIFY_CONFIG");

/** Bytes from what a message may carry: a Buffer, a Uint8Array, `{type:"Buffer",data}`, an array of bytes or a string. */
export function bytesOf(value: unknown): Buffer | null {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === "string") return Buffer.from(value, "latin1");
  const data = Array.isArray(value) ? value : value !== null && typeof value === "object" && (value as { type?: unknown }).type === "Buffer" ? (value as { data?: unknown }).data : null;
  if (Array.isArray(data) && data.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) return Buffer.from(data as number[]);
  return null;
}

interface Input {
  bytes: Buffer;
  endpoints: ClassifyEndpoints;
  /** Session id of a live connection, when more bytes can be asked for. */
  sessionId: string | null;
  /** A UDP session's first datagrams: classified as datagrams (QUIC Initials, DNS), not as a stream. */
  datagrams?: Buffer[];
}

export default function register(RED: NodeAPI): void {
  const _ = messages(RED);
  function ClassifyNode(this: Node, flowConfig: ClassifyDef): void {
    const config = withNodeDefaults("classify", flowConfig);
    RED.nodes.createNode(this, config);
    const node = this;
    const status = throttledStatus(node, 250, COUNTS_STATUS_MAX);
    const property = config.property || "payload";
    const auto = config.input !== "property";
    let route: Router | null = null;
    let limits: ClassifierLimits | null = null;
    let configError: Error | null = null;
    const specs = rulesFromConfig(config.rules);
    const outputs = specs.length + 1;
    const counts = new Array<number>(outputs).fill(0);
    // The outputs' labels, as the editor shows them on the ports.
    const labels = [...specs.map((r, i) => r.name ?? _("classify.output.rule", { number: i + 1 })), _("classify.output.other")];
    let enforcement: Enforcement = "enforce";
    // Fingerprints cost a third or more of a ClientHello's parse: computed only when the
    // fields are to carry them or a rule matches on them (also in a flow saved before the
    // setting existed: the editor's default).
    const fingerprints: FingerprintSet = config.tlsFingerprints === "fields" ? "all" : fingerprintsUsed(specs);
    const sniffers: readonly Sniffer[] = sniffersWithFingerprints(fingerprints);
    try {
      enforcement = enforcementOf(config.enforcement);
      limits = classifierLimits({
        maxBytes: read.optionalInt(config.maxBytes, "maxBytes", { min: 0, max: 0x7fffffff }),
        timeoutMs: read.optionalInt(config.timeoutMs, "timeoutMs", { min: 0, max: 0x7fffffff }),
        serverFirstMs: read.optionalInt(config.serverFirstMs, "serverFirstMs", { min: 0, max: 0x7fffffff }),
      });
      route = compileRouter(specs);
      const ruleText = _("classify.status.rules", { count: specs.length });
      node.status(enforcement === "shadow" ? { fill: "yellow", shape: "ring", text: _("classify.status.shadowRules", { rules: ruleText }) } : { fill: "grey", shape: "dot", text: ruleText });
    } catch (err) {
      configError = err as Error;
      node.error(_("classify.error.config", { reason: configError.message }));
      node.status({ fill: "red", shape: "ring", text: _("classify.status.badConfig") });
    }

    const inputOf = (msg: NodeMessageInFlow): Input => {
      const m = msg as { _session?: unknown; payload?: unknown };
      if (auto && m.payload !== null && typeof m.payload === "object" && !Buffer.isBuffer(m.payload)) {
        const info = m.payload as Record<string, unknown>;
        const session = isTrafficSession(m._session) ? m._session.id : null;
        const flow = flowFirstBytes(info);
        if (flow !== null) return { ...flow, sessionId: null };
        if (info["protocol"] === "udp") {
          const list = Array.isArray(info["firstDatagrams"]) ? info["firstDatagrams"] : info["firstBytes"] === undefined ? [] : [info["firstBytes"]];
          const datagrams = list.map((d: unknown) => bytesOf(d));
          if (datagrams.some((d) => d === null)) throw new TrafficError("ERR_CLASSIFY_INPUT", "payload.firstDatagrams holds something other than bytes", "payload.firstDatagrams");
          return { bytes: datagrams[0] ?? Buffer.alloc(0), endpoints: endpointsOf(info), sessionId: null, datagrams: datagrams as Buffer[] };
        }
        if ("firstBytes" in info || session !== null) {
          // A live connection may not have sent anything yet: that is zero bytes, not an error.
          const bytes = info["firstBytes"] === undefined ? Buffer.alloc(0) : bytesOf(info["firstBytes"]);
          if (bytes === null) throw new TrafficError("ERR_CLASSIFY_INPUT", "payload.firstBytes is not bytes", "payload.firstBytes");
          return { bytes, endpoints: endpointsOf(info), sessionId: session };
        }
      }
      let value: unknown;
      try {
        value = RED.util.getMessageProperty(msg, property);
      } catch {
        value = undefined; // a missing parent object: no bytes there
      }
      const bytes = bytesOf(value);
      if (bytes === null) {
        throw new TrafficError("ERR_CLASSIFY_INPUT", `expected a Buffer, byte array or string at msg.${property}`, `msg.${property}`);
      }
      return { bytes, endpoints: {}, sessionId: null };
    };

    // Messages per output by label; a rule that took none yet is left out. In shadow mode
    // the counts are what each rule would have taken. Made when the status is shown, with
    // the output of the last message for its colour.
    const countsStatus = (lastOutput: number): NodeStatus => {
      const text = countsText(counts.map((n, i) => [labels[i]!, n] as const).filter(([, n], i) => n > 0 || i === specs.length));
      if (enforcement === "shadow") return { fill: "yellow", shape: "ring", text: _("classify.status.shadow", { counts: text }) };
      return { fill: lastOutput === specs.length ? "yellow" : "green", shape: "dot", text };
    };

    const deliver = (msg: NodeMessageInFlow, c: Classification, endpoints: ClassifyEndpoints, send: (m: Array<NodeMessageInFlow | null>) => void): void => {
      const verdict = route!({ classification: c, ...endpoints });
      const decided = verdict.index >= 0 ? verdict.index : specs.length;
      // Shadow: the rules are checked and counted, but every message goes on as unmatched.
      const output = enforcement === "shadow" ? specs.length : decided;
      const classification: ClassificationMessage = { ...c, rule: enforcement === "shadow" ? null : verdict.rule, output };
      (msg as { classification?: unknown }).classification = classification;
      const session = (msg as { _session?: unknown })._session;
      const name = typeof c.fields.sni === "string" ? c.fields.sni : typeof c.fields.host === "string" ? c.fields.host : undefined;
      observeClassification(node.id, isTrafficSession(session) ? session.id : null, c.protocol, name, verdict.rule);
      if (verdict.rule !== null) {
        addPolicyVerdict(msg, {
          mode: enforcement,
          verdict: "route",
          nodeType: "classify",
          nodeId: node.id,
          ...(node.name ? { nodeName: node.name } : {}),
          rule: verdict.rule,
          reason: routeReason(verdict.rule, c),
          output: decided,
          ...(isTrafficSession(session) ? { connectionId: session.id } : {}),
          ...(endpoints.clientAddress !== undefined ? { clientIp: endpoints.clientAddress } : {}),
        });
      }
      counts[decided]!++;
      status.set(() => countsStatus(output));
      const out: Array<NodeMessageInFlow | null> = new Array(outputs).fill(null);
      out[output] = msg;
      send(out);
    };

    node.on("input", (msg, send, done) => {
      if (route === null || limits === null) {
        done(configError ?? new Error(_("classify.error.notConfigured")));
        return;
      }
      const lim = limits;
      let input: Input;
      try {
        input = inputOf(msg);
      } catch (err) {
        status.set({ fill: "red", shape: "ring", text: _("classify.status.badInput") });
        done(err as Error);
        return;
      }
      if (input.datagrams !== undefined) {
        // The listener held the session until its first datagrams decided it (or its sniff time passed).
        deliver(msg, classifyDatagrams(input.datagrams, { fingerprints }), input.endpoints, send);
        done();
        return;
      }
      const source = moreBytesSource();
      if (input.sessionId === null || source === null) {
        const bytes = input.bytes.length > lim.maxBytes ? input.bytes.subarray(0, lim.maxBytes) : input.bytes;
        deliver(msg, runSniffers(bytes, true, sniffers, input.endpoints.destinationPort)!, input.endpoints, send);
        done();
        return;
      }
      // A live connection: the listener gives more of its bytes while the limits allow.
      const stream = new StreamClassifier({ ...lim, sniffers, destinationPort: input.endpoints.destinationPort });
      const early = stream.push(input.bytes);
      (early !== null ? Promise.resolve(early) : stream.readFrom(source, input.sessionId))
        .then((c) => {
          deliver(msg, c, input.endpoints, send);
          done();
        })
        .catch((err: unknown) => {
          // The listener failed to give more bytes: decide with what there is, and say why.
          node.warn(_("classify.error.moreBytes", { reason: (err as Error).message }));
          try {
            deliver(msg, runSniffers(input.bytes.subarray(0, lim.maxBytes), true, sniffers, input.endpoints.destinationPort)!, input.endpoints, send);
            done();
          } catch (e) {
            done(e as Error);
          }
        });
    });
    node.on("close", (_removed: boolean, done: () => void) => {
      status.clear();
      done();
    });
  }
  RED.nodes.registerType("classify", ClassifyNode);
}

import type { Node, NodeAPI, NodeDef, NodeMessage, NodeStatus } from "node-red";
import { isTrafficSession } from "../../src/connection";
import { TrafficError } from "../../src/errors";
import {
  forwardConnection,
  forwardUdpSession,
  holdUnclaimedForward,
  rejectConnection,
  rejectUdpSession,
  type ForwardIdentity,
  type ForwardOptions,
  type ForwardSession,
  type ForwardSummary,
  type ForwardTarget,
  type PumpChoice,
  type RejectMode,
  type UdpRejectMode,
} from "../../src/forward";
import { parkSummaries, takeSummaries, type PendingSummary } from "../../src/forward/handover";
import { trafficMetrics } from "../../src/observe/metrics";
import { connectionTable } from "../../src/connection-table";
import { addPolicyVerdict, enforcementOf, type Enforcement } from "../../src/policy/verdict";
import { udpSessions } from "../../src/udp-table";
import { messages, type Messages } from "../common/messages";
import { COUNTS_STATUS_MAX, countsText, throttledStatus } from "../common/status";
import { configReader } from "../common/config";

interface ForwardDef extends NodeDef {
  /** `msg`: msg.action says forward or reject (forward when absent). */
  action: "forward" | "reject" | "msg";
  rejectMode: RejectMode;
  /** How a UDP session is rejected: dropped (a browser then falls back from QUIC to TCP) or answered with ICMP port unreachable. */
  udpRejectMode: UdpRejectMode;
  targetType: "original" | "fixed" | "msg";
  host: string;
  port: string | number;
  /** Property holding "host:port" or { address, port } when targetType is msg. */
  targetProp: string;
  identity: ForwardIdentity;
  keepClientPort: boolean;
  mark: string | number;
  /** Seconds. */
  connectTimeout: string | number;
  /** Seconds; 0: none. */
  idleTimeout: string | number;
  noDelay: boolean;
  pump: PumpChoice;
  /** `shadow`: a connection to reject is forwarded instead; the reject is only reported. */
  enforcement?: Enforcement;
}

/** The rule that sent the message here: classify's, else the ip filter's. */
function decidingRule(msg: NodeMessage): string | null {
  const m = msg as { classification?: { rule?: unknown }; ipFilter?: { rule?: unknown } };
  if (typeof m.classification?.rule === "string") return m.classification.rule;
  if (typeof m.ipFilter?.rule === "string") return m.ipFilter.rule;
  return null;
}

/**
 * Ends that are failures to report to Catch nodes (the others are how connections end).
 * An upstream that resets is a fault of the service behind; a client that does is not.
 */
const FAILURES = new Set(["connect-failed", "no-target", "loop", "error", "upstream-reset"]);

/** "host:port", "[v6]:port" or { address|host, port } → a target; throws ERR_FORWARD_TARGET. */
export function parseTarget(value: unknown, input: string): ForwardTarget {
  if (typeof value === "string") {
    const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(value.trim()) ?? /^([^:[\]]+):(\d{1,5})$/.exec(value.trim());
    if (m === null) throw new TrafficError("ERR_FORWARD_TARGET", `expected host:port or [IPv6]:port, got ${JSON.stringify(value.slice(0, 64))}`, input);
    return { address: m[1]!, port: Number(m[2]) };
  }
  if (typeof value === "object" && value !== null) {
    const o = value as { address?: unknown; host?: unknown; port?: unknown };
    const address = typeof o.address === "string" ? o.address : o.host;
    const port = typeof o.port === "string" ? Number(o.port) : o.port;
    if (typeof address === "string" && typeof port === "number") return { address, port };
  }
  throw new TrafficError("ERR_FORWARD_TARGET", "expected \"host:port\" or { address, port }", input);
}

const read = configReader("ERR_FORWARD_CONFIG");

/** The forward options of a node config (without the target); throws ERR_FORWARD_CONFIG. */
export function forwardOptionsFrom(config: ForwardDef): Omit<ForwardOptions, "target"> {
  const identity = read.oneOf(config.identity, "identity", ["none", "proxy-v1", "proxy-v2", "transparent"] as const, "none");
  const pump = read.oneOf(config.pump, "pump", ["auto", "native", "js"] as const, "auto");
  const mark = read.int(config.mark, "mark", { fallback: 0, min: 0, max: 0xffffffff });
  return {
    identity,
    keepClientPort: config.keepClientPort === true,
    mark,
    connectTimeoutMs: read.seconds(config.connectTimeout, "connectTimeout", { fallbackMs: 10_000, max: 86_400 }),
    idleTimeoutMs: read.seconds(config.idleTimeout, "idleTimeout", { fallbackMs: 0, max: 86_400 }),
    noDelay: config.noDelay !== false,
    pump,
  };
}

/**
 * Whether a node may take the listeners' unclaimed connections: only one that forwards
 * every connection to its original destination. A reject node, a node whose action or
 * target the message decides, or one with a fixed target (its identity and mark were
 * chosen for that target) would send its PROXY header or mark to arbitrary destinations.
 */
export function takesUnclaimed(config: Pick<ForwardDef, "action" | "targetType">): boolean {
  return (config.action || "forward") === "forward" && (config.targetType || "original") === "original";
}

/** SNI (or HTTP Host) and the first ALPN offer from a `classify` result on the message, for PROXY v2 TLVs. */
function tlvsFrom(msg: NodeMessage): { authority?: string; alpn?: string } {
  const fields = (msg as { classification?: { fields?: { sni?: unknown; host?: unknown; alpn?: unknown } } }).classification?.fields;
  if (fields === undefined) return {};
  const authority = typeof fields.sni === "string" ? fields.sni : typeof fields.host === "string" ? fields.host : undefined;
  const alpn = Array.isArray(fields.alpn) && typeof fields.alpn[0] === "string" ? (fields.alpn[0] as string) : undefined;
  return { ...(authority === undefined ? {} : { authority }), ...(alpn === undefined ? {} : { alpn }) };
}

/**
 * Short status text for an error code. `privileged`: the sockets are transparent-bound or
 * marked, the only calls that need a privilege (otherwise EPERM is a firewall's refusal).
 */
function shortCode(code: string, privileged: boolean, _: Messages): string {
  switch (code) {
    case "ERR_FORWARD_LOOP":
      return _("forward.status.loop");
    case "ERR_FORWARD_TARGET":
      return _("forward.status.noTarget");
    case "ERR_NATIVE_UNAVAILABLE":
      return _("forward.status.addonMissing");
    case "EPERM":
      return privileged ? _("common.status.noCapNetAdmin") : _("common.status.notPermitted");
    default:
      return code;
  }
}

/** How long a stopped node's pending summaries wait for its next instance (a redeploy starts it within moments). */
const SUMMARY_HANDOVER_MS = 10_000;

export default function register(RED: NodeAPI): void {
  const _ = messages(RED);
  function ForwardNode(this: Node, config: ForwardDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const status = throttledStatus(node, 250, COUNTS_STATUS_MAX);
    const sessions = new Set<ForwardSession>();
    /** Summaries still to come, with the input's done; handed to the next instance at a redeploy. */
    const awaiting = new Map<Promise<ForwardSummary>, { readonly entry: PendingSummary<NodeMessage>; readonly done: (err?: Error) => void }>();
    let lastError = "";
    let closed = false;
    let options: Omit<ForwardOptions, "target"> | null = null;
    let fixed: ForwardTarget | null = null;
    let enforcement: Enforcement = "enforce";
    let wouldReject = 0;
    try {
      enforcement = enforcementOf(config.enforcement);
      options = forwardOptionsFrom(config);
      if (config.targetType === "fixed") fixed = parseTarget({ address: String(config.host ?? "").trim(), port: Number(config.port) }, "target");
    } catch (err) {
      node.error((err as Error).message);
      status.set({ fill: "red", shape: "ring", text: _("forward.status.badConfig") });
    }

    const privileged = options !== null && (options.identity === "transparent" || (options.mark ?? 0) > 0);

    const show = (): void => {
      if (closed || options === null) return;
      // Made when the status is shown (the throttle drops most), from the state then.
      status.set((): NodeStatus => {
        const n = sessions.size;
        if (enforcement === "shadow" && lastError === "") return { fill: "yellow", shape: "ring", text: `${_("forward.status.shadow")} · ${countsText([[_("forward.status.wouldReject"), wouldReject], [_("forward.status.activeCount"), n]])}` };
        if (lastError === "") return { fill: "green", shape: "dot", text: _("forward.status.active", { count: n }) };
        // The error says more than the count when both do not fit the editor's 19 characters.
        const both = _("forward.status.activeWithError", { count: n, error: lastError });
        return { fill: "yellow", shape: "ring", text: both.length <= 19 ? both : lastError };
      });
    };

    /** The summary goes out as a message of its own, carrying what the input knew (classification, clientIp …). */
    const report = (msg: NodeMessage, summary: ForwardSummary, send: (m: NodeMessage) => void, done: (err?: Error) => void): void => {
      trafficMetrics().forwardSummary(node.id, summary);
      if (summary.error !== undefined && FAILURES.has(summary.end)) lastError = shortCode(summary.error.code, privileged, _);
      show();
      if (closed) {
        done();
        return;
      }
      const out = { ...msg, topic: `forward/${summary.end}`, payload: summary } as NodeMessage & { _session?: unknown };
      // The connection is gone: nothing downstream may try to claim it.
      delete out._session;
      send(out);
      if (summary.error !== undefined && FAILURES.has(summary.end)) {
        done(Object.assign(new Error(`${summary.error.code}: ${summary.error.message}`), { code: summary.error.code }));
      } else {
        done();
      }
    };

    /** Reports the summary when it comes, unless this instance handed it to its successor first. */
    const follow = (entry: PendingSummary<NodeMessage>, send: (m: NodeMessage) => void, done: (err?: Error) => void): void => {
      awaiting.set(entry.summary, { entry, done });
      if (entry.session !== null) {
        sessions.add(entry.session);
        show();
      }
      void entry.summary.then((summary) => {
        if (entry.session !== null) sessions.delete(entry.session);
        if (!awaiting.delete(entry.summary)) return;
        report(entry.msg, summary, send, done);
      });
    };
    // What this node's previous instance still had running (a redeploy): its summaries go out from here.
    for (const entry of takeSummaries<NodeMessage>(node.id)) {
      follow(entry, (m) => node.send(m), (err) => {
        if (err !== undefined) node.error(err, entry.msg);
      });
    }

    // Listeners whose unclaimed action is `forward` need a forwarder in this process.
    const release = options === null || !takesUnclaimed(config) ? () => undefined : holdUnclaimedForward(node.id, options, (summary) => {
      trafficMetrics().forwardSummary(node.id, summary);
      if (summary.error !== undefined && FAILURES.has(summary.end)) {
        lastError = shortCode(summary.error.code, privileged, _);
        node.warn(_("forward.error.unclaimed", { id: summary.id, reason: summary.error.message }));
      }
      show();
    });

    node.on("input", (msg: NodeMessage, send: (m: NodeMessage) => void, done: (err?: Error) => void) => {
      if (options === null) {
        done(new TrafficError("ERR_FORWARD_CONFIG", "the node's configuration is invalid (see the log)", "forward"));
        return;
      }
      const ref = (msg as { _session?: unknown })._session;
      if (!isTrafficSession(ref)) {
        done(new TrafficError("ERR_FORWARD_CONFIG", "msg._session is not a connection from a transparent in node", "msg._session"));
        return;
      }
      let action: "forward" | "reject" = config.action === "reject" ? "reject" : "forward";
      let rejectMode: RejectMode = config.rejectMode === "rst" ? "rst" : "fin";
      if (config.action === "msg") {
        const asked = (msg as { action?: unknown }).action;
        if (asked === "reject" || asked === "reject-rst") {
          action = "reject";
          if (asked === "reject-rst") rejectMode = "rst";
        } else if (asked !== undefined && asked !== "forward") {
          done(new TrafficError("ERR_FORWARD_CONFIG", `msg.action must be forward, reject or reject-rst, got ${JSON.stringify(String(asked).slice(0, 32))}`, "msg.action"));
          return;
        }
      }
      let target: ForwardOptions["target"] = "original";
      try {
        if (config.targetType === "fixed" && fixed !== null) target = fixed;
        else if (config.targetType === "msg") target = parseTarget(RED.util.getMessageProperty(msg, config.targetProp || "target"), `msg.${config.targetProp || "target"}`);
      } catch (err) {
        connectionTable().destroy(ref.id);
        udpSessions().destroy(ref.id);
        done(err as Error);
        return;
      }
      if (udpSessions().info(ref.id) !== undefined) {
        const udp = udpSessions().claim(ref.id, node.id);
        if (udp === undefined) {
          done(new TrafficError("ERR_FORWARD_CONFIG", `session ${ref.id} is gone or already handled by another node`, "msg._session"));
          return;
        }
        if (action === "reject") {
          // reject-rst asks for the loud refusal: for UDP that is ICMP port unreachable.
          const mode: UdpRejectMode = config.action === "msg" ? (rejectMode === "rst" ? "icmp" : config.udpRejectMode === "icmp" ? "icmp" : "drop") : config.udpRejectMode === "icmp" ? "icmp" : "drop";
          follow({ msg, summary: rejectUdpSession(udp, mode), session: null }, send, done);
          return;
        }
        const session = forwardUdpSession(udp, { ...options, target });
        follow({ msg, summary: session.done, session }, send, done);
        return;
      }
      const claimed = connectionTable().claim(ref.id, node.id);
      if (claimed === undefined) {
        done(new TrafficError("ERR_FORWARD_CONFIG", `connection ${ref.id} is gone or already handled by another node`, "msg._session"));
        return;
      }
      if (action === "reject") {
        const rule = decidingRule(msg);
        const client = (msg as { payload?: { remoteAddress?: unknown } }).payload?.remoteAddress;
        addPolicyVerdict(msg, {
          mode: enforcement,
          verdict: "reject",
          nodeType: "forward",
          nodeId: node.id,
          ...(node.name ? { nodeName: node.name } : {}),
          rule,
          reason: `${config.action === "msg" ? "msg.action asked to reject" : "the node rejects"} (${rejectMode === "rst" ? "RST" : "FIN"})${rule === null ? "" : ` the connections of rule ${JSON.stringify(rule)}`}`,
          connectionId: ref.id,
          ...(typeof client === "string" ? { clientIp: client } : {}),
        });
        if (enforcement === "shadow") {
          wouldReject++;
          action = "forward";
        }
      }
      if (action === "reject") {
        follow({ msg, summary: rejectConnection(claimed, rejectMode), session: null }, send, done);
        return;
      }
      const session = forwardConnection(claimed, { ...options, ...tlvsFrom(msg), target });
      follow({ msg, summary: session.done, session }, send, done);
    });

    show();

    node.on("close", (removed: boolean, done: () => void) => {
      closed = true;
      release();
      status.clear();
      // On redeploy, live connections and UDP sessions keep flowing and the next instance
      // (same id) sends their summaries when they end; a removed node ends its connections.
      if (removed) for (const s of sessions) s.stop();
      else {
        const handed = [...awaiting.values()];
        awaiting.clear();
        // The input messages are done here: their summaries leave from the next instance.
        for (const { done: inputDone } of handed) inputDone();
        parkSummaries(node.id, handed.map((h) => h.entry), SUMMARY_HANDOVER_MS);
      }
      done();
    });
  }
  RED.nodes.registerType("forward", ForwardNode);
}

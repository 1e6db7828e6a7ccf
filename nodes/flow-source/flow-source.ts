import type { Node, NodeAPI, NodeDef, NodeMessage } from "node-red";
import { splitList } from "../../src/net/cidr";
import { FlowSource, type FlowMode, type FlowProtocols, type FlowSourceOptions } from "../../src/flow/source";
import type { FlowEvent } from "../../src/events/types";
import { keyFactsFirst } from "../../src/events/make";
import { formatEndpoint } from "../../src/net/ip";
import { effectiveCapabilities } from "../../src/doctor";
import { observeFlowEvents } from "../../src/observe";
import { reportStartFailure, watchFlowStarts, whenFlowsStarted } from "../common/startup";
import { messages, type Messages } from "../common/messages";
import { COUNTS_STATUS_MAX, countsText, throttledStatus } from "../common/status";
import { configReader } from "../common/config";

interface FlowSourceDef extends NodeDef {
  mode: FlowMode;
  /** Transports to report: TCP connections, UDP sockets or both (absent: `tcp`, as before UDP). */
  protocol: FlowProtocols;
  eventOpen: boolean;
  eventClose: boolean;
  eventState: boolean;
  /** Service ports, comma/space separated ("" = all). */
  ports: string;
  /** Remote address ranges ("" = all). */
  cidrs: string;
  side: "any" | "client" | "server";
  cgroupId: string;
  /** `event`: one message per event; `batch`: one message with an array every batchMs. */
  delivery: "event" | "batch";
  batchMs: number | string;
  /** eBPF ring buffer size in KiB (power of two). */
  ringKiB: number | string;
  /** sock_diag dump interval (ms). */
  dumpMs: number | string;
  /** First payload bytes per direction on close events (0 = off, ≤ 512; eBPF only). */
  firstBytes: number | string;
}

/** Parses the editor's port list ("80, 443 8080"). */
export function portsFromConfig(text: string | undefined): number[] {
  return read.ports(text, "ports");
}

const read = configReader("ERR_FLOW_CONFIG");

/** Builds flow source options from the node's configuration; throws on bad values. */
export function optionsFromConfig(config: Partial<FlowSourceDef>): FlowSourceOptions {
  const ringKiB = read.int(config.ringKiB, "ringKiB", { fallback: 4096, min: 4, max: 1 << 20 });
  const dumpMs = read.int(config.dumpMs, "dumpMs", { fallback: 1000, min: 100, max: 0x7fffffff });
  const firstBytes = read.int(config.firstBytes, "firstBytes", { fallback: 0, min: 0, max: 512 });
  const protocols = read.oneOf(config.protocol, "protocol", ["tcp", "udp", "both"] as const, "tcp");
  return {
    mode: config.mode ?? "auto",
    protocols,
    open: config.eventOpen !== false,
    close: config.eventClose !== false,
    state: config.eventState === true,
    ports: portsFromConfig(config.ports),
    cidrs: splitList(String(config.cidrs ?? "")),
    side: config.side ?? "any",
    cgroupId: String(config.cgroupId ?? "").trim() || null,
    ringBytes: ringKiB * 1024,
    dumpIntervalMs: dumpMs,
    firstBytes,
  };
}

/**
 * Status text for a start-up failure: the capabilities eBPF capture lacks in this process
 * (measured: loading needs CAP_BPF, the tp_btf programs also CAP_PERFMON), else a generic one.
 */
export function startFailureText(message: string, _: Messages, have = effectiveCapabilities()): string {
  if (!/CAP_BPF|EPERM|not permitted/.test(message)) return _("flow-source.status.notStarted");
  const missing = (["CAP_BPF", "CAP_PERFMON"] as const).filter((c) => !have.has(c));
  if (missing.length === 2) return _("flow-source.status.noBpfPerfmon");
  return missing.length === 1 ? _("flow-source.status.noCapability", { capability: missing[0] }) : _("common.status.notPermitted");
}

/**
 * The debug sidebar's name for an event: its type, then for a flow the owning command and
 * the connection from the end that opened it to the end that accepted it.
 */
export function flowTopic(e: FlowEvent): string {
  if (e.type === "lost") return e.type;
  const local = formatEndpoint(e.localIp, e.localPort);
  const remote = formatEndpoint(e.remoteIp, e.remotePort);
  const [from, to] = e.side === "client" ? [local, remote] : [remote, local];
  return [e.type, ...(e.comm !== null ? [e.comm] : []), `${from} → ${to}`].join(" ");
}

export default function register(RED: NodeAPI): void {
  watchFlowStarts(RED);
  const _ = messages(RED);
  function FlowSourceNode(this: Node, config: FlowSourceDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const status = throttledStatus(node, 1000, COUNTS_STATUS_MAX);
    let batchMs = 500;
    let pending: FlowEvent[] = [];
    let flushTimer: NodeJS.Timeout | null = null;
    let mode = "";
    let lost = 0;
    // Running without first-bytes capture because CAP_NET_ADMIN is missing (cgroup_skb attach).
    let noNetAdmin = false;

    // Events delivered, per kind this node emits.
    const seen = { "flow-open": 0, "flow-close": 0, "flow-state": 0 };
    const showStatus = (): void => {
      const counts: Array<[string, number]> = [];
      if (config.eventOpen !== false) counts.push([_("flow-source.status.opened"), seen["flow-open"]]);
      if (config.eventClose !== false) counts.push([_("flow-source.status.closed"), seen["flow-close"]]);
      if (config.eventState === true) counts.push([_("flow-source.status.states"), seen["flow-state"]]);
      if (lost > 0) counts.push([_("flow-source.status.lost"), lost]);
      // Counts once there are any: until then the capture in use is the news.
      const any = lost > 0 || seen["flow-open"] + seen["flow-close"] + seen["flow-state"] > 0;
      const text = [noNetAdmin && lost === 0 ? _("common.status.noCapNetAdmin") : mode, ...(any && counts.length > 0 ? [countsText(counts)] : [])].join(" · ");
      status.set({ fill: lost > 0 || noNetAdmin ? "yellow" : mode === "ebpf" ? "green" : "blue", shape: mode === "ebpf" ? "dot" : "ring", text });
    };

    const flush = (): void => {
      flushTimer = null;
      if (pending.length === 0) return;
      const batch = pending;
      pending = [];
      node.send({ topic: "flow-batch", payload: batch } as NodeMessage);
    };

    const onEvents = (events: FlowEvent[]): void => {
      observeFlowEvents(node.id, events);
      for (const e of events) {
        if (e.type !== "lost") {
          seen[e.type]++;
        } else {
          lost += e.count;
          node.warn(_("flow-source.error.lost", { count: e.count, source: e.source, capture: e.capture ?? mode }));
        }
      }
      showStatus();
      if (config.delivery === "batch") {
        for (const e of events) pending.push(keyFactsFirst(e));
        if (flushTimer === null) flushTimer = setTimeout(flush, batchMs);
        return;
      }
      for (const e of events) node.send({ topic: flowTopic(e), payload: keyFactsFirst(e) } as NodeMessage);
    };

    let source: FlowSource | null = null;
    try {
      batchMs = read.int(config.batchMs, "batchMs", { fallback: 500, min: 10, max: 0x7fffffff });
      source = new FlowSource(optionsFromConfig(config), onEvents);
      const started = source.start();
      mode = started.mode;
      if (started.ebpfUnavailable !== null && config.mode !== "sockdiag") node.warn(_("flow-source.error.ebpfUnavailable", { reason: started.ebpfUnavailable }));
      if (started.degraded !== null) {
        noNetAdmin = /CAP_NET_ADMIN/.test(started.degraded);
        node.warn(_("flow-source.error.degraded", { reason: started.degraded }));
      }
      showStatus();
      // Again once the flows run, for Status nodes that did not exist yet.
      whenFlowsStarted(RED, () => {
        if (source !== null) showStatus();
      });
    } catch (err) {
      source = null;
      const e = err as Error;
      reportStartFailure(RED, node, _("flow-source.error.notStarted", { reason: e.message }), (e as { code?: string }).code ?? null, { fill: "red", shape: "ring", text: startFailureText(e.message, _) });
    }

    node.on("close", (_removed: boolean, done: () => void) => {
      try {
        source?.stop();
      } finally {
        source = null;
        if (flushTimer !== null) clearTimeout(flushTimer);
        pending = [];
        status.clear();
        done();
      }
    });
  }
  RED.nodes.registerType("flow source", FlowSourceNode);
}

import type { Node, NodeAPI, NodeDef } from "node-red";
import type { ConnectionInfo } from "../../src/connection";
import type { RejectReason } from "../../src/listener/transparent-listener";
import type { TransparentListenerConfig } from "../../src/listener/options";
import { ManagedCapture, type CaptureRules } from "../../src/listener/managed-capture";
import { connectionTable } from "../../src/connection-table";
import { trafficMetrics } from "../../src/observe/metrics";
import { formatEndpoint } from "../../src/net/ip";
import type { KernelLimit } from "../../src/nft/managed-rules";
import { releaseParked, releaseParkedNow } from "../../src/listener/parked-listener";
import { reportStartFailure, watchFlowStarts, watchHandovers, whenFlowsStarted } from "../common/startup";
import { messages, type Messages } from "../common/messages";
import { COUNTS_STATUS_MAX, compactCount, throttledStatus } from "../common/status";
import { withNodeDefaults } from "../common/defaults";
import { configReader } from "../common/config";

interface TransparentInDef extends NodeDef {
  port: string | number;
  /** `tcp` (default), `udp`, or `both` on the same port. */
  protocol: "tcp" | "udp" | "both";
  /** Seconds a UDP session lasts without a datagram either way. */
  udpIdleTimeout: string | number;
  maxUdpSessions: string | number;
  address: string;
  family: "ipv4" | "ipv6" | "dual";
  mode: "redirect" | "tproxy" | "plain";
  maxConnections: string | number;
  sniffBytes: string | number;
  /** Seconds. */
  sniffTimeout: string | number;
  proxyProtocol: "off" | "optional" | "required";
  proxyFrom: string;
  /** Seconds; 0: wait forever. */
  unclaimedTimeout: string | number;
  unclaimedAction: "close" | "forward";
  /** `keep`: connections a downstream node owns survive a redeploy; `close`: every one ends. */
  onClose: "keep" | "close";
  /** Install the node's own nft table (and TPROXY routing) while it runs. */
  manageRules: boolean;
  ruleDestinations: string;
  rulePorts: string;
  ruleMark: string | number;
  /** Also capture connections this host opens itself (nft output chain; needs ruleMark). */
  ruleLocal?: boolean;
  /** Kernel limits per source with managed rules; "" (or absent): none. */
  ruleLimitRate: string | number;
  ruleLimitBurst: string | number;
  ruleLimitConcurrent: string | number;
}

/** Counts and sizes: ranges here only keep text and NaN out; the library's checks hold the limits. */
const COUNT = { min: 0, max: 0x7fffffff } as const;
const readRules = configReader("ERR_NFT_CONFIG");

/** The kernel limit of the managed rules, or undefined when no field is set (buildRuleset checks the values). */
export function kernelLimitOf(config: Pick<TransparentInDef, "ruleLimitRate" | "ruleLimitBurst" | "ruleLimitConcurrent">): KernelLimit | undefined {
  const rate = readRules.optionalInt(config.ruleLimitRate, "ruleLimitRate", COUNT);
  const burst = readRules.optionalInt(config.ruleLimitBurst, "ruleLimitBurst", COUNT);
  const maxConcurrent = readRules.optionalInt(config.ruleLimitConcurrent, "ruleLimitConcurrent", COUNT);
  if (rate === undefined && burst === undefined && maxConcurrent === undefined) return undefined;
  return { ...(rate === undefined ? {} : { rate }), ...(burst === undefined ? {} : { burst }), ...(maxConcurrent === undefined ? {} : { maxConcurrent }) };
}

/** Short status text for a start-up failure, by error code (the full text goes to the log). */
export function shortReason(err: { code?: string; message?: string }, _: Messages): string {
  switch (err.code) {
    case "EADDRINUSE":
      return _("transparent-in.status.portInUse");
    case "EPERM":
      return /TRANSPARENT/.test(err.message ?? "") ? _("common.status.noCapNetAdmin") : _("common.status.notPermitted");
    case "EACCES":
      return _("transparent-in.status.portNeedsPrivilege");
    case "EADDRNOTAVAIL":
      return _("transparent-in.status.addressNotHere");
    case "EAFNOSUPPORT":
      return _("transparent-in.status.noIpv6");
    case "ERR_NATIVE_UNAVAILABLE":
      return _("transparent-in.status.addonMissing");
    case "ERR_LISTENER_CONFIG":
    case "ERR_NFT_CONFIG":
      return _("transparent-in.status.badConfig");
    case "ERR_NFT_FAILED":
      return /CAP_NET_ADMIN/.test(err.message ?? "") ? _("common.status.noCapNetAdmin") : _("transparent-in.status.nftFailed");
    default:
      return err.code ?? "error";
  }
}

/** The managed rules' fields (the listener's settings give mode, port and protocols). */
export function ruleFieldsFrom(config: TransparentInDef): CaptureRules {
  const limit = kernelLimitOf(config);
  const excludeMark = readRules.optionalInt(config.ruleMark, "ruleMark", { min: 0, max: 0xffffffff });
  return {
    destinations: config.ruleDestinations ?? "",
    ports: config.rulePorts ?? "",
    ...(excludeMark === undefined ? {} : { excludeMark }),
    includeLocal: config.ruleLocal === true,
    ...(limit === undefined ? {} : { limit }),
  };
}

const read = configReader("ERR_LISTENER_CONFIG");

/** Listener settings from the editor's fields (times in the editor are seconds). */
export function listenerConfigFrom(config: TransparentInDef): TransparentListenerConfig {
  return {
    port: read.port(config.port, "port", { allowZero: true }),
    protocol: config.protocol || "tcp",
    udpIdleTimeoutMs: read.seconds(config.udpIdleTimeout, "udpIdleTimeout", { fallbackMs: 30_000, max: 86_400 }),
    maxUdpSessions: read.int(config.maxUdpSessions, "maxUdpSessions", { fallback: 65_536, ...COUNT }),
    address: config.address ?? "",
    family: config.family || "ipv4",
    mode: config.mode || "redirect",
    maxConnections: read.int(config.maxConnections, "maxConnections", { fallback: 0, ...COUNT }),
    sniffBytes: read.int(config.sniffBytes, "sniffBytes", { fallback: 0, ...COUNT }),
    sniffTimeoutMs: read.seconds(config.sniffTimeout, "sniffTimeout", { fallbackMs: 1000, max: 86_400 }),
    proxyProtocol: config.proxyProtocol || "off",
    proxyFrom: config.proxyFrom ?? "",
    unclaimedTimeoutMs: read.seconds(config.unclaimedTimeout, "unclaimedTimeout", { fallbackMs: 10_000, max: 86_400 }),
    unclaimedAction: config.unclaimedAction || "close",
    keepClaimedOnClose: config.onClose !== "close",
  };
}

/** The debug sidebar's name for a connection: the client, and where it was going (else the listener). */
export function connectionTopic(info: ConnectionInfo): string {
  const to = info.originalDst ?? { address: info.localAddress, port: info.localPort };
  return `${formatEndpoint(info.remoteAddress, info.remotePort)} → ${formatEndpoint(to.address, to.port)}`;
}

export default function register(RED: NodeAPI): void {
  watchFlowStarts(RED);
  // Parked listeners and rules nobody took are released once the flows run, or when Node-RED stops.
  watchHandovers(RED, "transparent-in", () => void releaseParked(), releaseParkedNow);
  const _ = messages(RED);
  function TransparentInNode(this: Node, flowConfig: TransparentInDef): void {
    const config = withNodeDefaults("transparent in", flowConfig);
    RED.nodes.createNode(this, config);
    const node = this;
    const status = throttledStatus(node, 250, COUNTS_STATUS_MAX);
    // Takes what the previous instance of this node left running for this one (see close).
    const capture = new ManagedCapture(node.id);
    let closing = false;
    let label = "";
    const rejected: Partial<Record<RejectReason, number>> = {};
    let warnTimer: NodeJS.Timeout | null = null;

    let shownLive = -1;
    // Set once listening and rules are in place: a count shown before would say green while
    // the rules may still fail, and without the `nft` mark they are about to get.
    let ready = false;
    const showLive = (): void => {
      if (!ready || capture.settings === null || closing) return;
      shownLive = capture.liveCount();
      const live = shownLive;
      status.set(() => {
        const where = capture.hasRules ? `${label} ${_("transparent-in.status.nft")}` : label;
        return { fill: "green", shape: "dot", text: `${where} · ${_("transparent-in.status.live", { count: compactCount(live) })}` };
      });
    };

    const fail = (err: Error & { code?: string }): void => {
      if (closing) return;
      status.clear();
      reportStartFailure(RED, node, err.message, err.code ?? null, { fill: "red", shape: "ring", text: shortReason(err, _) });
    };

    // Rejections can come by the thousand: log a summary at most every ten seconds.
    const noteRejected = (reason: RejectReason, detail: string): void => {
      rejected[reason] = (rejected[reason] ?? 0) + 1;
      if (warnTimer !== null) return;
      node.warn(_("transparent-in.error.refused", { reason, detail }));
      warnTimer = setTimeout(() => {
        warnTimer = null;
        const summary = Object.entries(rejected).map(([k, v]) => `${k}: ${v}`).join(", ");
        if (summary !== "") node.warn(_("transparent-in.error.refusedSummary", { summary }));
        for (const k of Object.keys(rejected)) delete rejected[k as RejectReason];
      }, 10_000);
      warnTimer.unref();
    };

    capture.on("connection", (info: ConnectionInfo) => {
      trafficMetrics().connectionAccepted(node.id);
      node.send({ _session: { type: "traffic", id: info.id }, payload: info, topic: connectionTopic(info) });
      showLive();
    });
    capture.on("rejected", noteRejected);
    capture.on("error", (err) => node.error(_("transparent-in.error.listener", { reason: err.message })));
    // Connections accepted before the flows run wait in the capture: a message sent before
    // the downstream nodes exist is lost, and its connection would hang until unclaimed.
    if (capture.holding) {
      whenFlowsStarted(RED, () => {
        if (!closing) capture.deliver();
      });
    }

    const start = async (): Promise<void> => {
      let fields: { listener: TransparentListenerConfig; rules: CaptureRules | null };
      try {
        fields = { listener: listenerConfigFrom(config), rules: config.manageRules ? ruleFieldsFrom(config) : null };
      } catch (err) {
        // Settings this instance cannot run end what its predecessor handed over, as a failed start does.
        await capture.stop(false).catch(() => undefined);
        throw err;
      }
      const s = await capture.start(fields.listener, fields.rules);
      // Under 20 characters with the count: the transport says more than the mode once UDP is in.
      label = s.protocol === "tcp" ? `${s.mode} :${s.port}` : `${s.protocol === "both" ? "tcp+udp" : "udp"} :${s.port}`;
      if (s.unclaimedAction === "forward" && !connectionTable().canDo("forward")) {
        node.warn(_("transparent-in.error.noForwarder"));
      }
      if (closing) return;
      ready = true;
      showLive();
      // Again once the flows run, for Status nodes that did not exist yet.
      whenFlowsStarted(RED, showLive);
    };

    // Connections end without telling the node; refresh the count when it changed (down to 0 too).
    const ticker = setInterval(() => {
      if (capture.settings !== null && capture.liveCount() !== shownLive) showLive();
    }, 1000);
    ticker.unref();

    status.set({ fill: "grey", shape: "ring", text: _("transparent-in.status.starting") });
    const started = start().catch((err: Error) => fail(err));

    node.on("close", (removed: boolean, done: () => void) => {
      closing = true;
      clearInterval(ticker);
      if (warnTimer !== null) clearTimeout(warnTimer);
      status.clear();
      // Stopped, not deleted: most likely a deploy that starts this node again at once, so the
      // capture is handed over to it.
      started
        .then(() => capture.stop(!removed))
        .catch((err: Error) => node.error(_("transparent-in.error.close", { reason: err.message })))
        .finally(() => done());
    });
  }
  RED.nodes.registerType("transparent in", TransparentInNode);
}

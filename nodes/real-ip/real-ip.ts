import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from "node-red";
import { isTrafficSession, type ConnectionInfo } from "../../src/connection";
import { TrafficError } from "../../src/errors";
import { trafficMetrics } from "../../src/observe/metrics";
import { parseProxyHeader } from "../../src/proxy-protocol/parse";
import type { ProxyHeader } from "../../src/proxy-protocol/types";
import { AddressSource, compileRealIp, HeaderSource, RealIpInput, RealIpOptions, RealIpResolver, readsSeveralHeaders } from "../../src/realip/resolve";
import { TrustSpec } from "../../src/realip/trust";
import { messages } from "../common/messages";
import { throttledStatus } from "../common/status";
import { configReader } from "../common/config";

interface RealIpDef extends NodeDef {
  /** CIDRs, addresses and named ranges of trusted proxies, separated by commas, spaces or new lines. */
  trusted: string;
  /** Optional hop limit ("" = no limit). */
  hops: string | number;
  /** The one forwarding header the trusted proxies set, or `none`. */
  header?: HeaderSource | "none" | "";
  /** Legacy (flows saved before `header`): enabled sources in order, comma separated; when set it wins over `header`. */
  sources?: string;
  /** `auto`: msg.req, connection messages, else the custom properties; `custom`: only the properties. */
  input: "auto" | "custom";
  peerProp: string;
  headersProp: string;
  proxyProp: string;
  /** msg property that receives the client address. */
  property: string;
}

type Headers = Record<string, string | string[] | undefined>;

const SHORT: Record<AddressSource, string> = {
  socket: "socket",
  "proxy-protocol": "proxy",
  forwarded: "fwd",
  "x-forwarded-for": "xff",
  "x-real-ip": "x-real-ip",
};

const readTrust = configReader("ERR_TRUST_CONFIG");

/** Builds the trust spec from the editor's fields. */
export function trustFromConfig(trusted: string, hops: string | number): TrustSpec {
  const list = String(trusted ?? "").trim();
  const hopText = String(hops ?? "").trim();
  if (hopText === "") return list;
  const n = readTrust.int(hopText, "hops", { fallback: 0, min: 0, max: 1000 });
  return list === "" ? n : { proxies: list, hops: n };
}

/**
 * The resolver settings a node's config asks for. A node saved with the legacy source
 * list keeps it (so deployed flows behave as before, whatever default the editor filled
 * into `header`); saving it from the dialog clears the list. `legacy` is then set.
 */
export function resolverOptions(config: Pick<RealIpDef, "trusted" | "hops" | "header" | "sources">): { options: RealIpOptions; legacy: boolean } {
  const trust = trustFromConfig(config.trusted, config.hops);
  const sources = sourcesFromConfig(config.sources);
  if (sources !== undefined) return { options: { trust, sources }, legacy: true };
  return { options: config.header ? { trust, header: config.header } : { trust }, legacy: false };
}

/** Parses the editor's source list ("x-forwarded-for,forwarded"). */
export function sourcesFromConfig(sources: string | undefined): AddressSource[] | undefined {
  if (sources === undefined || String(sources).trim() === "") return undefined;
  return String(sources)
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "") as AddressSource[];
}

function lowerCaseHeaders(value: unknown): Headers | undefined {
  if (value === null || typeof value !== "object") return undefined;
  const out: Headers = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v === "string") out[k.toLowerCase()] = v;
    else if (Array.isArray(v)) out[k.toLowerCase()] = v.map(String);
  }
  return out;
}

function peerFrom(value: unknown): { address: string; port?: number } | undefined {
  if (typeof value === "string") return { address: value };
  if (value !== null && typeof value === "object") {
    const v = value as { address?: unknown; port?: unknown; remoteAddress?: unknown; remotePort?: unknown };
    const address = v.address ?? v.remoteAddress;
    const port = v.port ?? v.remotePort;
    if (typeof address === "string") return typeof port === "number" ? { address, port } : { address };
  }
  return undefined;
}

/**
 * A PROXY header given as a parsed object, or as the raw first bytes of a stream (from
 * core `tcp in`, say), which must then start with a complete header.
 */
function proxyFrom(value: unknown): ProxyHeader | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Buffer.isBuffer(value)) return value as ProxyHeader;
  const parsed = parseProxyHeader(value);
  if (parsed.kind === "header") return parsed.header;
  if (parsed.kind === "not-proxy") return undefined;
  throw new TrafficError(parsed.version === 1 ? "ERR_PROXY_V1" : "ERR_PROXY_V2", "the bytes end inside a PROXY header (incomplete)", "PROXY header");
}

interface HttpInRequest {
  headers?: Headers;
  socket?: { remoteAddress?: string; remotePort?: number };
  connection?: { remoteAddress?: string; remotePort?: number };
}

export default function register(RED: NodeAPI): void {
  const _ = messages(RED);
  function RealIpNode(this: Node, config: RealIpDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const status = throttledStatus(node);
    const property = config.property || "clientIp";
    let resolve: RealIpResolver | null = null;
    let configError: Error | null = null;
    try {
      const { options, legacy } = resolverOptions(config);
      resolve = compileRealIp(options);
      if (legacy && readsSeveralHeaders(options.sources!)) node.warn(_("real-ip.warn.severalHeaders", { sources: options.sources!.join(", ") }));
      node.status({});
    } catch (err) {
      configError = err as Error;
      node.error(_("real-ip.error.config", { reason: configError.message }));
      node.status({ fill: "red", shape: "ring", text: _("real-ip.status.badConfig") });
    }

    const fromProperties = (msg: NodeMessageInFlow): RealIpInput | undefined => {
      const peer = peerFrom(RED.util.getMessageProperty(msg, config.peerProp || "peer"));
      if (peer === undefined) return undefined;
      const headers = lowerCaseHeaders(RED.util.getMessageProperty(msg, config.headersProp || "headers"));
      const proxy = config.proxyProp ? proxyFrom(RED.util.getMessageProperty(msg, config.proxyProp)) : undefined;
      return { peer, ...(headers === undefined ? {} : { headers }), ...(proxy ? { proxyHeader: proxy } : {}) };
    };

    const inputOf = (msg: NodeMessageInFlow): RealIpInput | undefined => {
      if (config.input !== "custom") {
        const req = (msg as { req?: HttpInRequest }).req;
        if (req && typeof req === "object" && req.headers) {
          const sock = req.socket ?? req.connection;
          if (sock?.remoteAddress) {
            const peer = sock.remotePort === undefined ? { address: sock.remoteAddress } : { address: sock.remoteAddress, port: sock.remotePort };
            return { peer, headers: req.headers };
          }
          // Express hands over requests whose socket already closed: there is no peer to start from.
          throw new TrafficError("ERR_BAD_ADDRESS", _("real-ip.error.socketClosed"), "socket peer");
        }
        const m = msg as { _session?: unknown; payload?: unknown };
        if (isTrafficSession(m._session) && m.payload && typeof m.payload === "object") {
          const info = m.payload as Partial<ConnectionInfo>;
          if (typeof info.remoteAddress === "string") {
            const peer = typeof info.remotePort === "number" ? { address: info.remoteAddress, port: info.remotePort } : { address: info.remoteAddress };
            const headers = lowerCaseHeaders((msg as { headers?: unknown }).headers);
            return { peer, ...(info.proxy ? { proxyHeader: info.proxy } : {}), ...(headers ? { headers } : {}) };
          }
        }
      }
      return fromProperties(msg);
    };

    node.on("input", (msg, send, done) => {
      if (resolve === null) {
        done(configError ?? new Error(_("real-ip.error.notConfigured")));
        return;
      }
      try {
        const input = inputOf(msg);
        if (input === undefined) {
          throw new TrafficError(
            "ERR_BAD_ADDRESS",
            _("real-ip.error.noPeer", { property: config.peerProp || "peer" }),
            "socket peer",
          );
        }
        const result = resolve(input);
        RED.util.setMessageProperty(msg, property, result.address, true);
        (msg as { realIp?: unknown }).realIp = result;
        if (result.untrustedHeaders) trafficMetrics().untrustedHeaders(node.id);
        status.set(() => ({ fill: result.untrustedHeaders ? "yellow" : "green", shape: "dot", text: `${result.address ?? result.identifier ?? "?"} ${SHORT[result.source]}` }));
        send(msg);
        done();
      } catch (err) {
        const e = err as Error & { code?: string; input?: string };
        status.set({ fill: "red", shape: "ring", text: e instanceof TrafficError ? _("real-ip.status.bad", { input: e.input ?? "input" }) : _("real-ip.status.error") });
        done(e);
      }
    });
    node.on("close", () => status.clear());
  }
  RED.nodes.registerType("real ip", RealIpNode);
}

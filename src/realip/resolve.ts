import { TrafficError } from "../errors";
import { clip, IpAddress, parseIp } from "../net/ip";
import type { ProxyHeader } from "../proxy-protocol/types";
import { ForwardedElement, parseForwardedElement, splitForwarded } from "./forwarded";
import { HopNode, parseListNode } from "./node-address";
import { compileTrust, TrustPredicate, TrustSpec } from "./trust";
import { XffList } from "./x-forwarded-for";

/** Where a client address can come from. */
export type AddressSource = "socket" | "proxy-protocol" | "forwarded" | "x-forwarded-for" | "x-real-ip";

/** The header sources, in the default order of preference. */
export const HEADER_SOURCES = ["forwarded", "x-forwarded-for", "x-real-ip"] as const;
export type HeaderSource = (typeof HEADER_SOURCES)[number];

/** What the resolver is given for one connection or request. */
export interface RealIpInput {
  /** The socket peer: who actually connected to us. */
  readonly peer: { readonly address: string; readonly port?: number };
  /** HTTP request headers, names in lower case (Node's `req.headers`). Arrays are repeated header lines. */
  readonly headers?: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** A PROXY protocol header received on the connection. */
  readonly proxyHeader?: ProxyHeader;
}

/** Resolver settings; compiled once with `compileRealIp`. */
export interface RealIpOptions {
  /** Which proxies to trust (see TrustSpec). Default: nobody. */
  readonly trust?: TrustSpec;
  /**
   * The one forwarding header the trusted proxies set, or `none` (socket and PROXY
   * header only). Every other forwarding header is never read, only reported in
   * `ignoredHeaders`: nginx and HAProxy append to X-Forwarded-For but pass a client's
   * own `Forwarded:` (or X-Forwarded-For, behind a proxy that sets only X-Real-IP)
   * through untouched, so reading a header the proxy does not set lets the client pick
   * its address. Default: x-forwarded-for (as Express and Envoy). Not with `sources`.
   */
  readonly header?: HeaderSource | "none";
  /**
   * Legacy: sources to consult, in order of preference. `proxy-protocol` applies to the
   * connection's PROXY header; of the header sources, the first one present is walked
   * and later ones are reported as ignored. Listing more than one header is unsafe (see
   * `header`); prefer `header`.
   */
  readonly sources?: readonly AddressSource[];
}

/** One step of the chain, from the socket peer outwards. */
export interface ChainHop {
  /** Canonical IP text, or `unknown` / an obfuscated identifier. */
  readonly address: string;
  readonly port?: number;
  readonly source: AddressSource;
  /** True when this hop was trusted, so the walk looked further left. */
  readonly trusted: boolean;
}

/** Why a present source was not used. */
export interface IgnoredSource {
  readonly source: AddressSource;
  readonly reason: "untrusted-peer" | "lower-priority" | "not-enabled" | "local-command" | "no-address";
  /** For untrusted-peer: the address that supplied it. */
  readonly suppliedBy?: string;
}

/** The resolved client. */
export interface RealIpResult {
  /** The client's IP address, canonical; null when the walk ended at `unknown` or an obfuscated node. */
  readonly address: string | null;
  readonly family?: 4 | 6;
  readonly port?: number;
  /** Set when `address` is null: the `unknown` or obfuscated identifier the trusted proxy gave. */
  readonly identifier?: string;
  /** Which source decided the address. */
  readonly source: AddressSource;
  /** Every hop looked at, from the socket peer outwards. */
  readonly chain: readonly ChainHop[];
  /** How many hops were trusted (0: the socket peer is the client). */
  readonly trustedHops: number;
  /** True when headers or entries written by untrusted parties were present and ignored. */
  readonly untrustedHeaders: boolean;
  /** Entries left of the decided address that were not read (written before the first untrusted hop). */
  readonly ignoredEntries: number;
  readonly ignored: readonly IgnoredSource[];
  /** Forwarding headers present on the request that the settings never read (not the configured header). */
  readonly ignoredHeaders: readonly HeaderSource[];
}

/** A compiled resolver. */
export type RealIpResolver = (input: RealIpInput) => RealIpResult;

const ALL_SOURCES: readonly AddressSource[] = ["proxy-protocol", ...HEADER_SOURCES];
const DEFAULT_HEADER: HeaderSource = "x-forwarded-for";

function sourcesOf(options: RealIpOptions): readonly AddressSource[] {
  if (options.sources !== undefined) {
    if (options.header !== undefined) {
      throw new TrafficError("ERR_TRUST_CONFIG", "give either header or the legacy sources list, not both", "header");
    }
    return checkSources(options.sources);
  }
  const header = options.header ?? DEFAULT_HEADER;
  if (header === "none") return ["proxy-protocol"];
  if (!(HEADER_SOURCES as readonly string[]).includes(header)) {
    throw new TrafficError("ERR_TRUST_CONFIG", `unknown forwarding header ${JSON.stringify(header)} (x-forwarded-for, forwarded, x-real-ip or none)`, "header");
  }
  return ["proxy-protocol", header];
}

/** True when a legacy source list reads more than one forwarding header (a client can then choose its address). */
export function readsSeveralHeaders(sources: readonly AddressSource[]): boolean {
  return sources.filter((s) => s !== "proxy-protocol").length > 1;
}

function checkSources(sources: readonly AddressSource[]): readonly AddressSource[] {
  const seen = new Set<string>();
  for (const s of sources) {
    if (!ALL_SOURCES.includes(s) || s === "socket") {
      throw new TrafficError("ERR_TRUST_CONFIG", `unknown address source ${JSON.stringify(s)}`, "sources");
    }
    if (seen.has(s)) throw new TrafficError("ERR_TRUST_CONFIG", `source ${s} listed twice`, "sources");
    seen.add(s);
  }
  return sources;
}

function headerText(value: string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "string") return value;
  // Repeated header lines are one comma-separated list (RFC 7230 section 3.2.2).
  return value.length === 0 ? undefined : value.join(", ");
}

function nodeText(node: HopNode): string {
  return node.kind === "ip" ? node.ip.text : node.kind === "unknown" ? "unknown" : node.id;
}

type MutableHop = { -readonly [K in keyof ChainHop]: ChainHop[K] };

interface Walk {
  chain: MutableHop[];
  current: IpAddress;
  currentPort: number | undefined;
  source: AddressSource;
  /** Set when the walk ended at a non-IP node. */
  identifier: string | undefined;
  hop: number;
  untrusted: boolean;
  ignoredEntries: number;
  ignored: IgnoredSource[];
  ignoredHeaders: HeaderSource[];
}

function markTrusted(walk: Walk): void {
  walk.chain[walk.chain.length - 1]!.trusted = true;
}

function hopOf(address: string, port: number | undefined, source: AddressSource): MutableHop {
  // Same shape for every hop (port present, maybe undefined) keeps property access monomorphic.
  return { address, port, source, trusted: false };
}

/** Steps to `node`; returns false when the walk must stop there (untrusted or not an IP). */
function step(walk: Walk, node: HopNode, source: AddressSource, trust: TrustPredicate): boolean {
  walk.hop++;
  const hop = hopOf(nodeText(node), node.port, source);
  walk.chain.push(hop);
  walk.source = source;
  if (node.kind !== "ip") {
    walk.identifier = hop.address;
    return false;
  }
  walk.current = node.ip;
  walk.currentPort = node.port;
  return trust(node.ip, walk.hop);
}

function walkXff(walk: Walk, header: string, trust: TrustPredicate): void {
  const list = new XffList(header);
  for (let node = list.previous(); node !== undefined; node = list.previous()) {
    if (!step(walk, node, "x-forwarded-for", trust)) {
      if (list.hasMore) {
        walk.untrusted = true;
        let count = 0;
        while (list.hasMore) {
          count++;
          skipOne(list);
        }
        walk.ignoredEntries = count;
      }
      return;
    }
    markTrusted(walk);
  }
}

function skipOne(list: XffList): void {
  try {
    list.previous();
  } catch {
    // Entries left of the first untrusted hop are the client's own words: count, never judge them.
  }
}

function walkForwarded(walk: Walk, header: string, trust: TrustPredicate): void {
  const elements = splitForwarded(header);
  for (let i = elements.length - 1; i >= 0; i--) {
    const element: ForwardedElement = parseForwardedElement(elements[i]!);
    // An element without `for` is a proxy that did not say who its client was.
    const node: HopNode = element.for ?? { kind: "unknown" };
    if (!step(walk, node, "forwarded", trust)) {
      if (i > 0) {
        walk.untrusted = true;
        walk.ignoredEntries = i;
      }
      return;
    }
    markTrusted(walk);
  }
}

function readRealIp(value: string | readonly string[]): HopNode {
  if (typeof value !== "string" && value.length !== 1) {
    throw new TrafficError("ERR_REAL_IP_SYNTAX", `header given ${value.length} times`, "X-Real-IP");
  }
  const text = (typeof value === "string" ? value : value[0]!).trim();
  if (text.indexOf(",") >= 0) {
    throw new TrafficError("ERR_REAL_IP_SYNTAX", `more than one address in ${JSON.stringify(clip(text))}`, "X-Real-IP");
  }
  return parseListNode(text, "ERR_REAL_IP_SYNTAX", "X-Real-IP");
}

/**
 * Compiles resolver settings once. The returned function starts at the socket peer and
 * steps one hop outwards only while the current address is trusted (the method of
 * proxy-addr and nginx `real_ip_recursive`), so nothing a client writes is believed
 * unless a trusted proxy vouched for the hop after it.
 */
export function compileRealIp(options: RealIpOptions = {}): RealIpResolver {
  const trust = compileTrust(options.trust ?? false);
  const sources = sourcesOf(options);
  const useProxyProtocol = sources.includes("proxy-protocol");
  const headerSources = sources.filter((s): s is HeaderSource => s !== "proxy-protocol");
  const disabledHeaders = HEADER_SOURCES.filter((s) => !headerSources.includes(s));

  return (input: RealIpInput): RealIpResult => {
    const address = input.peer?.address;
    if (typeof address !== "string") {
      // Express hands over a request whose socket already closed with no remote address.
      throw new TrafficError("ERR_BAD_ADDRESS", "no socket peer address (the connection is already closed?)", "socket peer");
    }
    const peer = parseIp(address, "socket peer");
    const walk: Walk = {
      chain: [hopOf(peer.text, input.peer.port, "socket")],
      current: peer,
      currentPort: input.peer.port,
      source: "socket",
      identifier: undefined,
      hop: 0,
      untrusted: false,
      ignoredEntries: 0,
      ignored: [],
      ignoredHeaders: [],
    };
    let stopped = false;

    const proxy = input.proxyHeader;
    if (proxy !== undefined) {
      if (!useProxyProtocol) walk.ignored.push({ source: "proxy-protocol", reason: "not-enabled" });
      else if (!trust(walk.current, 0)) {
        walk.ignored.push({ source: "proxy-protocol", reason: "untrusted-peer", suppliedBy: walk.current.text });
        walk.untrusted = true;
        stopped = true;
      } else if (proxy.command === "local") {
        markTrusted(walk);
        walk.ignored.push({ source: "proxy-protocol", reason: "local-command" });
      } else if (proxy.sourceAddress === undefined || !/^(tcp|udp)[46]$/.test(proxy.family)) {
        markTrusted(walk);
        walk.ignored.push({ source: "proxy-protocol", reason: "no-address" });
      } else {
        markTrusted(walk);
        const node: HopNode = { kind: "ip", ip: parseIp(proxy.sourceAddress, "PROXY header") };
        const withPort: HopNode = proxy.sourcePort === undefined ? node : { ...node, port: proxy.sourcePort };
        stopped = !step(walk, withPort, "proxy-protocol", trust);
      }
    }

    const headers = input.headers;
    if (headers !== undefined) {
      let chosen: HeaderSource | undefined;
      for (const source of headerSources) {
        const raw = headers[source];
        if (raw === undefined) continue;
        if (chosen !== undefined) {
          walk.ignored.push({ source, reason: "lower-priority" });
          walk.ignoredHeaders.push(source);
          continue;
        }
        chosen = source;
        if (stopped || walk.identifier !== undefined) {
          walk.ignored.push({ source, reason: "untrusted-peer", suppliedBy: walk.current.text });
          walk.untrusted = true;
          continue;
        }
        if (!walk.chain[walk.chain.length - 1]!.trusted) {
          if (!trust(walk.current, walk.hop)) {
            walk.ignored.push({ source, reason: "untrusted-peer", suppliedBy: walk.current.text });
            walk.untrusted = true;
            continue;
          }
          markTrusted(walk);
        }
        if (source === "x-real-ip") {
          step(walk, readRealIp(raw), "x-real-ip", trust);
        } else {
          const text = headerText(raw);
          if (text === undefined) continue;
          if (source === "forwarded") walkForwarded(walk, text, trust);
          else walkXff(walk, text, trust);
        }
      }
      for (const source of disabledHeaders) {
        if (headers[source] !== undefined) {
          walk.ignored.push({ source, reason: "not-enabled" });
          walk.ignoredHeaders.push(source);
        }
      }
    }

    return finish(walk);
  };
}

function finish(walk: Walk): RealIpResult {
  let trustedHops = 0;
  for (const h of walk.chain) if (h.trusted) trustedHops++;
  const ended = walk.identifier !== undefined;
  return {
    address: ended ? null : walk.current.text,
    family: ended ? undefined : walk.current.family,
    port: ended ? walk.chain[walk.chain.length - 1]!.port : walk.currentPort,
    identifier: walk.identifier,
    source: walk.source,
    chain: walk.chain,
    trustedHops,
    untrustedHeaders: walk.untrusted,
    ignoredEntries: walk.ignoredEntries,
    ignored: walk.ignored,
    ignoredHeaders: walk.ignoredHeaders,
  };
}

/** Resolves one input with options compiled on the spot; prefer `compileRealIp` on hot paths. */
export function resolveClientAddress(input: RealIpInput, options: RealIpOptions = {}): RealIpResult {
  return compileRealIp(options)(input);
}

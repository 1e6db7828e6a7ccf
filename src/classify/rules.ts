import { TrafficError } from "../errors";
import { compileRanges, parseRangeList, RangeMatcher, splitList } from "../net/cidr";
import { tryParseIp } from "../net/ip";
import type { FingerprintSet } from "./fingerprint";
import { Classification, ClassifiedAs } from "./types";

/** Every value `protocol` can take, sniffed or an outcome. */
export const CLASSIFIED_AS: readonly ClassifiedAs[] = [
  "tls",
  "http1",
  "http2",
  "grpc",
  "ssh",
  "mqtt",
  "redis",
  "postgresql",
  "kafka",
  "dubbo",
  "socks4",
  "socks5",
  "proxy",
  "dns",
  "quic",
  "unknown",
  "incomplete",
  "server-first",
];

/**
 * One routing rule. Every condition given must hold (empty ones are left out); a rule
 * with no conditions matches everything. Lists are arrays or text separated by commas,
 * spaces or new lines.
 */
export interface ClassifyRuleSpec {
  readonly name?: string;
  /** Protocols or outcomes; `http2` also matches `grpc` (gRPC is HTTP/2). */
  readonly protocols?: string | readonly string[];
  /**
   * SNI, else HTTP host (port removed): `example.com` exact, `*.example.com` any name
   * below it (not the name itself), `/regex/` or `/regex/i`. Case-insensitive.
   */
  readonly hosts?: string | readonly string[];
  /** Any one of these ALPN names offered. */
  readonly alpn?: string | readonly string[];
  /**
   * TLS client fingerprints, any one of them: a JA4 (`t13d1516h2_8daaf6152771_e5627efa2ab1`)
   * or a JA3 hash (32 hex digits) exactly, or a prefix of either ending in `*`
   * (`t13d1516h2_*`, `q13*`). Case-insensitive; over TCP and QUIC.
   */
  readonly fingerprints?: string | readonly string[];
  /** Any one of these path prefixes (HTTP/1, HTTP/2, gRPC). */
  readonly pathPrefixes?: string | readonly string[];
  /** Destination ports and ranges: `443`, `8000-8100`. */
  readonly destinationPorts?: string | readonly string[];
  /** Destination CIDRs, addresses or named ranges. */
  readonly destinations?: string | readonly string[];
  /** Client CIDRs, addresses or named ranges. */
  readonly clients?: string | readonly string[];
}

/** What a rule is checked against. */
export interface RouteInput {
  readonly classification: Classification;
  readonly destinationAddress?: string;
  readonly destinationPort?: number;
  readonly clientAddress?: string;
}

/** The first rule that matched, or none (`index` -1: the "other" output). */
export interface RouteVerdict {
  readonly index: number;
  readonly rule: string | null;
}

/** A compiled rule table. */
export type Router = (input: RouteInput) => RouteVerdict;

type Check = (input: RouteInput) => boolean;

function list(value: string | readonly string[] | undefined): string[] {
  return value === undefined ? [] : splitList(value);
}

/**
 * The fingerprints the rules' conditions can read: none without fingerprint patterns,
 * JA4 alone when every pattern is a JA4 (it starts with its transport, `t` or `q`, where
 * a JA3 hash is hex digits), else all.
 */
export function fingerprintsUsed(rules: readonly ClassifyRuleSpec[]): FingerprintSet {
  let used: FingerprintSet = "none";
  for (const rule of rules) {
    for (const p of list(rule.fingerprints)) {
      const first = p[0]?.toLowerCase();
      if (first !== "t" && first !== "q") return "all";
      used = "ja4";
    }
  }
  return used;
}

function bad(name: string, why: string): TrafficError {
  return new TrafficError("ERR_RULE_CONFIG", `${name}: ${why}`, "rules");
}

/** Host without a port: "example.com:8443" → "example.com", "[2001:db8::1]:443" → "2001:db8::1". */
export function hostWithoutPort(host: string): string {
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    return close > 0 ? host.slice(1, close) : host;
  }
  const colon = host.indexOf(":");
  // More than one colon: a bare IPv6 address, keep it whole.
  if (colon >= 0 && host.indexOf(":", colon + 1) < 0) return host.slice(0, colon);
  return host;
}

/** Compiles one host pattern into a predicate over lower-case host names. */
export function compileHostPattern(pattern: string, ruleName = "rule"): (host: string) => boolean {
  if (pattern.length >= 2 && pattern.startsWith("/")) {
    const last = pattern.lastIndexOf("/");
    const flags = pattern.slice(last + 1);
    if (last <= 0 || (flags !== "" && flags !== "i")) throw bad(ruleName, `bad regular expression ${JSON.stringify(pattern)}: write /pattern/ or /pattern/i`);
    let re: RegExp;
    try {
      re = new RegExp(pattern.slice(1, last), flags);
    } catch (err) {
      throw bad(ruleName, `bad regular expression ${JSON.stringify(pattern)}: ${(err as Error).message}`);
    }
    return (host) => re.test(host);
  }
  const p = pattern.toLowerCase().replace(/\.$/, "");
  if (p.startsWith("*.")) {
    const suffix = p.slice(1);
    if (suffix.length < 2 || suffix.includes("*")) throw bad(ruleName, `bad wildcard ${JSON.stringify(pattern)}`);
    return (host) => host.length > suffix.length && host.endsWith(suffix);
  }
  if (p.includes("*")) throw bad(ruleName, `a wildcard may only be a leading "*." in ${JSON.stringify(pattern)}`);
  return (host) => host === p;
}

function portRanges(entries: string[], name: string): Array<[number, number]> {
  return entries.map((e) => {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(e);
    const lo = m ? Number(m[1]) : NaN;
    const hi = m ? Number(m[2] ?? m[1]) : NaN;
    if (!m || lo > 65535 || hi > 65535 || lo > hi) throw bad(name, `bad port or range ${JSON.stringify(e)}`);
    return [lo, hi];
  });
}

function addressCheck(entries: string[], name: string, pick: (input: RouteInput) => string | undefined): Check {
  let match: RangeMatcher;
  try {
    match = compileRanges(parseRangeList(entries));
  } catch (err) {
    throw bad(name, err instanceof TrafficError ? err.reason : String(err));
  }
  return (input) => {
    const text = pick(input);
    if (text === undefined) return false;
    const ip = tryParseIp(text);
    return ip !== null && match(ip);
  };
}

function compileRule(rule: ClassifyRuleSpec, i: number): { name: string; checks: Check[] } {
  const name = rule.name !== undefined && rule.name !== "" ? rule.name : `rule ${i + 1}`;
  const checks: Check[] = [];
  const protocols = list(rule.protocols).map((p) => p.toLowerCase());
  if (protocols.length > 0) {
    const set = new Set<string>();
    for (const p of protocols) {
      if (!(CLASSIFIED_AS as readonly string[]).includes(p)) throw bad(name, `unknown protocol ${JSON.stringify(p)}`);
      set.add(p);
      if (p === "http2") set.add("grpc");
    }
    checks.push((input) => set.has(input.classification.protocol));
  }
  const hosts = list(rule.hosts).map((h) => compileHostPattern(h, name));
  if (hosts.length > 0) {
    checks.push((input) => {
      const f = input.classification.fields;
      const raw = f.sni ?? f.host ?? f.targetHost ?? f.dnsName;
      if (raw === undefined) return false;
      const host = hostWithoutPort(raw.toLowerCase()).replace(/\.$/, "");
      for (const h of hosts) if (h(host)) return true;
      return false;
    });
  }
  const alpn = list(rule.alpn);
  if (alpn.length > 0) {
    checks.push((input) => {
      const offered = input.classification.fields.alpn;
      if (offered === undefined) return false;
      for (const a of alpn) if (offered.includes(a)) return true;
      return false;
    });
  }
  const fingerprints = list(rule.fingerprints).map((p) => p.toLowerCase());
  if (fingerprints.length > 0) {
    const exact = new Set<string>();
    const starts: string[] = [];
    for (const p of fingerprints) {
      const star = p.indexOf("*");
      if (star >= 0 && (star !== p.length - 1 || p.length === 1)) throw bad(name, `a fingerprint wildcard may only be a trailing "*" after some characters: ${JSON.stringify(p)}`);
      if (star < 0) exact.add(p);
      else starts.push(p.slice(0, -1));
    }
    checks.push((input) => {
      const f = input.classification.fields;
      for (const fp of [f.ja4, f.ja3Hash]) {
        if (fp === undefined) continue;
        if (exact.has(fp)) return true;
        for (const s of starts) if (fp.startsWith(s)) return true;
      }
      return false;
    });
  }
  const prefixes = list(rule.pathPrefixes);
  if (prefixes.length > 0) {
    for (const p of prefixes) if (!p.startsWith("/")) throw bad(name, `a path prefix starts with "/": ${JSON.stringify(p)}`);
    checks.push((input) => {
      const path = input.classification.fields.path;
      if (path === undefined) return false;
      for (const p of prefixes) if (path.startsWith(p)) return true;
      return false;
    });
  }
  const ports = list(rule.destinationPorts);
  if (ports.length > 0) {
    const ranges = portRanges(ports, name);
    checks.push((input) => {
      const port = input.destinationPort;
      if (port === undefined) return false;
      for (const [lo, hi] of ranges) if (port >= lo && port <= hi) return true;
      return false;
    });
  }
  const destinations = list(rule.destinations);
  if (destinations.length > 0) checks.push(addressCheck(destinations, name, (input) => input.destinationAddress));
  const clients = list(rule.clients);
  if (clients.length > 0) checks.push(addressCheck(clients, name, (input) => input.clientAddress));
  return { name, checks };
}

/**
 * Compiles an ordered rule table once. The router returns the first rule whose every
 * condition holds; nothing matching is index -1, which callers route to "other".
 */
export function compileRouter(rules: readonly ClassifyRuleSpec[]): Router {
  const compiled = rules.map(compileRule);
  return (input) => {
    for (let i = 0; i < compiled.length; i++) {
      const rule = compiled[i]!;
      let ok = true;
      for (const check of rule.checks) {
        if (!check(input)) {
          ok = false;
          break;
        }
      }
      if (ok) return { index: i, rule: rule.name };
    }
    return { index: -1, rule: null };
  };
}

import { TrafficError, TrafficErrorCode } from "../errors";
import { clip, IpAddress, parsePort, tryParseIp } from "../net/ip";

/**
 * One hop named in a forwarding header: an IP address (with the port when the header
 * gave one), the literal `unknown`, or an RFC 7239 obfuscated identifier (`_hidden`).
 */
export type HopNode =
  | { readonly kind: "ip"; readonly ip: IpAddress; readonly port?: number }
  | { readonly kind: "unknown"; readonly port?: number }
  | { readonly kind: "obfuscated"; readonly id: string; readonly port?: number };

const UNKNOWN: HopNode = { kind: "unknown" };

function isObfChar(c: number): boolean {
  // ALPHA / DIGIT / "." / "_" / "-"
  return (
    (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 46 || c === 95 || c === 45
  );
}

function isObfuscated(text: string): boolean {
  if (text.length < 2 || text.charCodeAt(0) !== 95) return false;
  for (let i = 1; i < text.length; i++) if (!isObfChar(text.charCodeAt(i))) return false;
  return true;
}

function fail(code: TrafficErrorCode, input: string, text: string, why: string): never {
  throw new TrafficError(code, `${why}: ${JSON.stringify(clip(text))}`, input);
}

/**
 * Parses a node as written in X-Forwarded-For and X-Real-IP: "192.0.2.1",
 * "192.0.2.1:443", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:443" or "unknown".
 */
export function parseListNode(text: string, code: TrafficErrorCode, input: string): HopNode {
  const ip = tryParseIp(text);
  if (ip !== null) return { kind: "ip", ip };
  if (text.length === 0) fail(code, input, text, "empty address");
  if (text.charCodeAt(0) === 91 /* [ */) {
    const close = text.indexOf("]");
    if (close < 0) fail(code, input, text, "unclosed bracket");
    const inner = tryParseIp(text.slice(1, close));
    if (inner === null || text.slice(1, close).indexOf(":") < 0) fail(code, input, text, "not an IPv6 address in brackets");
    if (close === text.length - 1) return { kind: "ip", ip: inner };
    if (text.charCodeAt(close + 1) !== 58 /* : */) fail(code, input, text, "junk after bracketed address");
    const port = parsePort(text, close + 2);
    if (port < 0) fail(code, input, text, "bad port");
    return { kind: "ip", ip: inner, port };
  }
  const colon = text.indexOf(":");
  if (colon > 0 && text.indexOf(":", colon + 1) < 0) {
    // Exactly one colon: IPv4 with a port. (Bare IPv6 has at least two and was handled above.)
    const v4 = tryParseIp(text.slice(0, colon));
    if (v4 !== null && v4.family === 4) {
      const port = parsePort(text, colon + 1);
      if (port < 0) fail(code, input, text, "bad port");
      return { kind: "ip", ip: v4, port };
    }
  }
  if (text.toLowerCase() === "unknown") return UNKNOWN;
  return fail(code, input, text, "not an IP address");
}

/**
 * Parses an RFC 7239 node (section 6): IPv4, "[IPv6]", "unknown" or an obfuscated
 * identifier, each with an optional ":port" (digits or an obfuscated port).
 * `text` is the value after unquoting.
 */
export function parseForwardedNode(text: string, input: string): HopNode {
  const code: TrafficErrorCode = "ERR_FORWARDED_SYNTAX";
  let name = text;
  let portText: string | undefined;
  if (text.charCodeAt(0) === 91 /* [ */) {
    const close = text.indexOf("]");
    if (close < 0) fail(code, input, text, "unclosed bracket");
    name = text.slice(0, close + 1);
    if (close + 1 < text.length) {
      if (text.charCodeAt(close + 1) !== 58) fail(code, input, text, "junk after bracketed address");
      portText = text.slice(close + 2);
    }
  } else {
    const colon = text.indexOf(":");
    // RFC 7239 section 6: IPv6 must be bracketed, so a second colon is a syntax error.
    if (colon >= 0 && text.indexOf(":", colon + 1) >= 0) fail(code, input, text, "IPv6 address must be in brackets");
    if (colon >= 0) {
      name = text.slice(0, colon);
      portText = text.slice(colon + 1);
    }
  }
  let port: number | undefined;
  if (portText !== undefined) {
    const p = parsePort(portText);
    if (p >= 0) port = p;
    else if (!isObfuscated(portText)) fail(code, input, text, "bad port");
  }
  const withPort = <T extends object>(node: T): T => (port === undefined ? node : { ...node, port });
  if (name.charCodeAt(0) === 91) {
    const inner = name.slice(1, -1);
    const ip = inner.indexOf(":") >= 0 ? tryParseIp(inner) : null;
    if (ip === null) fail(code, input, text, "not an IPv6 address in brackets");
    return withPort({ kind: "ip", ip });
  }
  const ip = tryParseIp(name);
  if (ip !== null) return withPort({ kind: "ip", ip });
  if (name.toLowerCase() === "unknown") return withPort({ kind: "unknown" });
  if (isObfuscated(name)) return withPort({ kind: "obfuscated", id: name });
  return fail(code, input, text, "not an address, `unknown` or obfuscated identifier");
}

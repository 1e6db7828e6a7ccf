import { TrafficError } from "../errors";
import { clip } from "../net/ip";
import { HopNode, parseForwardedNode } from "./node-address";

/** One forwarded-element of an RFC 7239 `Forwarded` header: what one proxy recorded. */
export interface ForwardedElement {
  /** The node that made the request to the proxy (the client, from that proxy's view). */
  readonly for?: HopNode;
  /** The interface where the request came in to the proxy. */
  readonly by?: HopNode;
  readonly host?: string;
  readonly proto?: string;
  /** Other parameters, names in lower case. */
  readonly extensions: Readonly<Record<string, string>>;
}

const INPUT = "Forwarded";

// RFC 7230 tchar: "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TCHAR[c] = 1;
for (let c = 65; c <= 90; c++) TCHAR[c] = 1;
for (let c = 97; c <= 122; c++) TCHAR[c] = 1;

const isTchar = (c: number): boolean => c < 128 && TCHAR[c] === 1;
const isOws = (c: number): boolean => c === 32 || c === 9;

function syntax(header: string, at: number, why: string): never {
  throw new TrafficError("ERR_FORWARDED_SYNTAX", `${why} at offset ${at} in ${JSON.stringify(clip(header, 96))}`, INPUT);
}

/**
 * Splits a Forwarded header into its elements (commas outside quoted strings), with
 * surrounding white space removed; empty list elements are skipped (RFC 7230 section 7).
 * Throws ERR_FORWARDED_SYNTAX for an unterminated quoted string or a control character.
 */
export function splitForwarded(header: string): string[] {
  const elements: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < header.length; i++) {
    const c = header.charCodeAt(i);
    if (quoted) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) quoted = false;
      else if ((c < 32 && c !== 9) || c === 127) syntax(header, i, "control character in quoted string");
    } else if (c === 34) quoted = true;
    else if (c === 44 /* , */) {
      pushTrimmed(elements, header, start, i);
      start = i + 1;
    } else if ((c < 32 && c !== 9) || c === 127) syntax(header, i, "control character");
  }
  if (quoted) syntax(header, header.length, "unterminated quoted string");
  pushTrimmed(elements, header, start, header.length);
  return elements;
}

function pushTrimmed(out: string[], text: string, start: number, end: number): void {
  while (start < end && isOws(text.charCodeAt(start))) start++;
  while (end > start && isOws(text.charCodeAt(end - 1))) end--;
  if (end > start) out.push(text.slice(start, end));
}

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*$/;

/** Parses one forwarded-element: `pair *( ";" pair )`, pair = token "=" ( token / quoted-string ). */
export function parseForwardedElement(element: string): ForwardedElement {
  const seen = new Set<string>();
  const extensions: Record<string, string> = {};
  let forNode: HopNode | undefined;
  let byNode: HopNode | undefined;
  let host: string | undefined;
  let proto: string | undefined;
  let i = 0;
  const n = element.length;
  while (i < n) {
    while (i < n && isOws(element.charCodeAt(i))) i++;
    if (i < n && element.charCodeAt(i) === 59 /* ; */) {
      i++;
      continue;
    }
    if (i >= n) break;
    const nameStart = i;
    while (i < n && isTchar(element.charCodeAt(i))) i++;
    if (i === nameStart) syntax(element, i, "expected a parameter name");
    const name = element.slice(nameStart, i).toLowerCase();
    if (i >= n || element.charCodeAt(i) !== 61 /* = */) syntax(element, i, `expected "=" after ${name}`);
    i++;
    let value: string;
    if (i < n && element.charCodeAt(i) === 34) {
      i++;
      let out = "";
      let chunk = i;
      for (;;) {
        if (i >= n) syntax(element, i, "unterminated quoted string");
        const c = element.charCodeAt(i);
        if (c === 34) break;
        if (c === 92) {
          if (i + 1 >= n) syntax(element, i, "dangling backslash");
          out += element.slice(chunk, i);
          chunk = i + 1;
          i += 2;
          continue;
        }
        i++;
      }
      value = out + element.slice(chunk, i);
      i++;
    } else {
      const valueStart = i;
      while (i < n && isTchar(element.charCodeAt(i))) i++;
      if (i === valueStart) syntax(element, i, `empty or unquoted special value for ${name}`);
      value = element.slice(valueStart, i);
    }
    while (i < n && isOws(element.charCodeAt(i))) i++;
    if (i < n && element.charCodeAt(i) !== 59) syntax(element, i, "expected \";\" between parameters");
    // RFC 7239 section 4: each parameter MUST NOT occur more than once per element.
    if (seen.has(name)) syntax(element, nameStart, `duplicate parameter ${name}`);
    seen.add(name);
    switch (name) {
      case "for":
        forNode = parseForwardedNode(value, INPUT);
        break;
      case "by":
        byNode = parseForwardedNode(value, INPUT);
        break;
      case "host":
        host = value;
        break;
      case "proto":
        if (!SCHEME.test(value)) syntax(element, nameStart, "proto is not a URI scheme");
        proto = value.toLowerCase();
        break;
      default:
        extensions[name] = value;
    }
  }
  const result: { -readonly [K in keyof ForwardedElement]: ForwardedElement[K] } = { extensions };
  if (forNode !== undefined) result.for = forNode;
  if (byNode !== undefined) result.by = byNode;
  if (host !== undefined) result.host = host;
  if (proto !== undefined) result.proto = proto;
  return result;
}

/** Parses a whole Forwarded header (all elements, left to right), strictly. */
export function parseForwarded(header: string): ForwardedElement[] {
  return splitForwarded(header).map(parseForwardedElement);
}

import { latin1, lowerAscii } from "./bytes";
import { ClassificationFields, match, MORE, NO, Sniffer, SniffVerdict } from "./types";

const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;
const COLON = 0x3a;
// Longest registered method is 17 characters (VERSION-CONTROL, BASELINE-CONTROL and friends).
const MAX_METHOD = 20;
// "HTTP/1." after the request target; the minor version digit follows.
const VERSION_PREFIX = [0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e];

// The common methods as constant strings: no allocation for them on the hot path.
const KNOWN_METHODS = ["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"];

function methodName(b: Buffer, end: number): string {
  for (let k = 0; k < KNOWN_METHODS.length; k++) {
    const m = KNOWN_METHODS[k]!;
    if (m.length !== end) continue;
    let same = true;
    for (let i = 0; i < end; i++) {
      if (b[i] !== m.charCodeAt(i)) {
        same = false;
        break;
      }
    }
    if (same) return m;
  }
  return latin1(b, 0, end);
}

function isMethodChar(c: number): boolean {
  return (c >= 65 && c <= 90) || c === 45 || c === 95;
}

// Header names we read, compared case-insensitively without building strings first.
function nameIs(b: Buffer, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    let c = b[start + i]!;
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function trimmed(b: Buffer, start: number, end: number): string {
  while (start < end && (b[start] === SP || b[start] === 9)) start++;
  while (end > start && (b[end - 1] === SP || b[end - 1] === 9 || b[end - 1] === CR)) end--;
  return latin1(b, start, end);
}

/**
 * HTTP/1.x: a request line `METHOD SP target SP HTTP/1.x CRLF`, then headers up to the
 * empty line for Host, Upgrade and Content-Type. With the request line complete but the
 * headers cut off at the cap or deadline, it still answers, with a lower confidence.
 */
export function sniffHttp1(b: Buffer, final: boolean): SniffVerdict {
  const n = b.length;
  let i = 0;
  while (i < n && i <= MAX_METHOD && isMethodChar(b[i]!)) i++;
  if (i === n) return i <= MAX_METHOD ? MORE : NO;
  if (i === 0 || i > MAX_METHOD || b[i] !== SP) return NO;
  const methodEnd = i;
  const targetStart = ++i;
  while (i < n) {
    const c = b[i]!;
    if (c === SP) break;
    if (c < 0x21 || c > 0x7e) return NO;
    i++;
  }
  if (i === n) return MORE;
  const targetEnd = i;
  if (targetEnd === targetStart) return NO;
  i++;
  for (let k = 0; k < VERSION_PREFIX.length; k++, i++) {
    if (i === n) return MORE;
    if (b[i] !== VERSION_PREFIX[k]) return NO;
  }
  if (i === n) return MORE;
  const minor = b[i]!;
  if (minor !== 0x30 && minor !== 0x31) return NO;
  i++;
  if (i < n && b[i] === CR) i++;
  if (i === n) return MORE;
  if (b[i] !== LF) return NO;
  i++;

  // The request line is valid: from here on it is HTTP/1.x whatever follows.
  const method = methodName(b, methodEnd);
  const fields: ClassificationFields = { method, httpVersion: minor === 0x30 ? "1.0" : "1.1" };
  if (method === "CONNECT") fields.host = lowerAscii(latin1(b, targetStart, targetEnd));
  else fields.path = latin1(b, targetStart, targetEnd);
  while (i < n) {
    const eol = b.indexOf(LF, i);
    if (eol < 0) break;
    const lineEnd = eol > i && b[eol - 1] === CR ? eol - 1 : eol;
    if (lineEnd === i) return match("http1", 1, fields); // the empty line: headers complete
    const colon = b.indexOf(COLON, i);
    if (colon < 0 || colon > lineEnd || colon === i) return match("http1", 0.8, fields); // malformed header line
    if (nameIs(b, i, colon, "host")) {
      if (fields.host === undefined) fields.host = lowerAscii(trimmed(b, colon + 1, lineEnd));
    } else if (nameIs(b, i, colon, "upgrade")) fields.upgrade = trimmed(b, colon + 1, lineEnd);
    else if (nameIs(b, i, colon, "content-type")) fields.contentType = trimmed(b, colon + 1, lineEnd);
    i = eol + 1;
  }
  return final ? match("http1", 0.8, fields) : MORE;
}

/** The HTTP/1.x sniffer. */
export const http1Sniffer: Sniffer = { protocol: "http1", sniff: sniffHttp1 };

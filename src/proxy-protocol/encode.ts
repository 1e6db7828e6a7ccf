import { TrafficError } from "../errors";
import { clip, tryParseIp, type IpAddress } from "../net/ip";
import { crc32c } from "./crc32c";
import { PP2_SUBTYPE_SSL, PP2_TYPE } from "./parse";
import type { ProxySslInfo } from "./types";

/** One end of the original connection. */
export interface ProxyEndpoint {
  /** IP address text (IPv4 or IPv6, no zone) for TCP/UDP; a socket path for UNIX transports. */
  readonly address: string;
  /** Port 0-65535; required for TCP/UDP, must be absent for UNIX transports. */
  readonly port?: number;
}

/** Transport of the original connection; the address family follows from the addresses. */
export type ProxyTransport = "tcp" | "udp" | "unix-stream" | "unix-dgram";

/** A TLV to append verbatim. */
export interface ProxyTlvInput {
  readonly type: number;
  readonly value: Uint8Array;
}

/**
 * Input of encodeProxyHeaderV1. Both endpoints, or neither for "PROXY UNKNOWN".
 * Both IPv4 gives TCP4; otherwise TCP6, with an IPv4 end written IPv4-mapped.
 */
export interface ProxyHeaderV1Input {
  readonly source?: ProxyEndpoint;
  readonly destination?: ProxyEndpoint;
}

/**
 * Input of encodeProxyHeaderV2. With command "proxy" (the default) and both
 * endpoints, the family byte follows from `transport` (default "tcp") and the
 * addresses (both IPv4 → IPv4, else IPv6 with IPv4 ends mapped); with neither
 * endpoint it is AF_UNSPEC. Command "local" takes no endpoints.
 */
export interface ProxyHeaderV2Input {
  readonly command?: "proxy" | "local";
  readonly transport?: ProxyTransport;
  readonly source?: ProxyEndpoint;
  readonly destination?: ProxyEndpoint;
  /** PP2_TYPE_ALPN; each character is one byte (latin1), as the parser decodes it. */
  readonly alpn?: string;
  /** PP2_TYPE_AUTHORITY, UTF-8. */
  readonly authority?: string;
  /** PP2_TYPE_UNIQUE_ID, at most 128 bytes. */
  readonly uniqueId?: Uint8Array;
  /** PP2_TYPE_NETNS, US-ASCII. */
  readonly netns?: string;
  /** PP2_TYPE_SSL with sub-TLVs for the string fields that are set. */
  readonly ssl?: ProxySslInfo;
  /** More TLVs appended as given (not the decoded types above: use their fields). */
  readonly tlvs?: readonly ProxyTlvInput[];
  /** Add a PP2_TYPE_CRC32C TLV holding the checksum of the whole header. */
  readonly crc32c?: boolean;
}

/** proxy-protocol.txt 2.2: the constant 12-byte block that opens every v2 header. */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

const V1_INPUT = "PROXY v1 header";
const V2_INPUT = "PROXY v2 header";

/** TLV types the parser decodes and accepts once: they must come from the named fields. */
const DECODED_TYPES = new Set<number>([
  PP2_TYPE.ALPN,
  PP2_TYPE.AUTHORITY,
  PP2_TYPE.CRC32C,
  PP2_TYPE.UNIQUE_ID,
  PP2_TYPE.SSL,
  PP2_TYPE.NETNS,
]);

interface Endpoints {
  readonly source: IpAddress;
  readonly destination: IpAddress;
  readonly sourcePort: number;
  readonly destinationPort: number;
  readonly v6: boolean;
}

function endpointIp(endpoint: ProxyEndpoint, name: string): IpAddress {
  const ip = typeof endpoint.address === "string" ? tryParseIp(endpoint.address) : null;
  // A zone ("fe80::1%eth0") names an interface of the sender and cannot be carried.
  if (ip === null || endpoint.address.indexOf("%") >= 0) {
    throw new TrafficError("ERR_BAD_ADDRESS", `not an IP address without zone: ${JSON.stringify(clip(String(endpoint.address)))}`, name);
  }
  return ip;
}

function endpointPort(endpoint: ProxyEndpoint, name: string): number {
  const port = endpoint.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new TrafficError("ERR_BAD_PORT", `port must be an integer 0-65535, got ${String(port)}`, name);
  }
  return port;
}

function ipEndpoints(source: ProxyEndpoint, destination: ProxyEndpoint): Endpoints {
  const src = endpointIp(source, "source address");
  const dst = endpointIp(destination, "destination address");
  return {
    source: src,
    destination: dst,
    sourcePort: endpointPort(source, "source port"),
    destinationPort: endpointPort(destination, "destination port"),
    v6: src.family === 6 || dst.family === 6,
  };
}

/** Both endpoints or neither: a header describes a connection, not half of one. */
function bothOrNeither(input: { readonly source?: ProxyEndpoint; readonly destination?: ProxyEndpoint }, code: "ERR_PROXY_V1" | "ERR_PROXY_V2"): boolean {
  const hasSource = input.source !== undefined;
  if (hasSource !== (input.destination !== undefined)) {
    throw new TrafficError(code, "source and destination must be given together", code === "ERR_PROXY_V1" ? V1_INPUT : V2_INPUT);
  }
  return hasSource;
}

function v6Text(ip: IpAddress): string {
  return ip.family === 6 ? ip.text : `::ffff:${ip.text}`;
}

/**
 * Encodes a v1 header line ("PROXY TCP4 ...\r\n"). Addresses are written in
 * canonical form, so the line never exceeds 107 bytes.
 */
export function encodeProxyHeaderV1(input: ProxyHeaderV1Input = {}): Buffer {
  if (!bothOrNeither(input, "ERR_PROXY_V1")) return Buffer.from("PROXY UNKNOWN\r\n", "latin1");
  const e = ipEndpoints(input.source!, input.destination!);
  const line = e.v6
    ? `PROXY TCP6 ${v6Text(e.source)} ${v6Text(e.destination)} ${e.sourcePort} ${e.destinationPort}\r\n`
    : `PROXY TCP4 ${e.source.text} ${e.destination.text} ${e.sourcePort} ${e.destinationPort}\r\n`;
  return Buffer.from(line, "latin1");
}

interface PendingTlv {
  readonly type: number;
  readonly value: Uint8Array;
}

function v2Error(reason: string): never {
  throw new TrafficError("ERR_PROXY_V2", reason, V2_INPUT);
}

function latin1Bytes(text: string, name: string): Buffer {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0xff) v2Error(`${name} has a character above U+00FF; it is carried one byte per character`);
  }
  return Buffer.from(text, "latin1");
}

function asciiBytes(text: string, name: string): Buffer {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) v2Error(`${name} must be US-ASCII`);
  }
  return Buffer.from(text, "latin1");
}

function tlvSize(tlvs: readonly PendingTlv[]): number {
  let size = 0;
  for (const t of tlvs) size += 3 + t.value.length;
  return size;
}

function writeTlvs(out: Buffer, at: number, tlvs: readonly PendingTlv[]): number {
  for (const t of tlvs) {
    out[at] = t.type;
    out.writeUInt16BE(t.value.length, at + 1);
    out.set(t.value, at + 3);
    at += 3 + t.value.length;
  }
  return at;
}

function sslValue(ssl: ProxySslInfo): Buffer {
  if (!Number.isInteger(ssl.client) || ssl.client < 0 || ssl.client > 0xff) v2Error("ssl.client must be an integer 0-255");
  if (!Number.isInteger(ssl.verify) || ssl.verify < 0 || ssl.verify > 0xffffffff) v2Error("ssl.verify must be an integer 0-2^32-1");
  const subs: PendingTlv[] = [];
  if (ssl.version !== undefined) subs.push({ type: PP2_SUBTYPE_SSL.VERSION, value: asciiBytes(ssl.version, "ssl.version") });
  if (ssl.cn !== undefined) subs.push({ type: PP2_SUBTYPE_SSL.CN, value: Buffer.from(ssl.cn, "utf8") });
  // Sub-TLV order is free (2.2.6); this is the order HAProxy writes them in.
  if (ssl.keyAlg !== undefined) subs.push({ type: PP2_SUBTYPE_SSL.KEY_ALG, value: asciiBytes(ssl.keyAlg, "ssl.keyAlg") });
  if (ssl.sigAlg !== undefined) subs.push({ type: PP2_SUBTYPE_SSL.SIG_ALG, value: asciiBytes(ssl.sigAlg, "ssl.sigAlg") });
  if (ssl.cipher !== undefined) subs.push({ type: PP2_SUBTYPE_SSL.CIPHER, value: asciiBytes(ssl.cipher, "ssl.cipher") });
  const size = 5 + tlvSize(subs);
  if (size > 0xffff) v2Error("ssl TLV exceeds 65535 bytes");
  const out = Buffer.alloc(size);
  out[0] = ssl.client;
  out.writeUInt32BE(ssl.verify, 1);
  writeTlvs(out, 5, subs);
  return out;
}

function collectTlvs(input: ProxyHeaderV2Input): PendingTlv[] {
  const tlvs: PendingTlv[] = [];
  // 2.2.3: the checksum covers the whole header with its own field zeroed; it is filled in last.
  if (input.crc32c === true) tlvs.push({ type: PP2_TYPE.CRC32C, value: new Uint8Array(4) });
  if (input.alpn !== undefined) tlvs.push({ type: PP2_TYPE.ALPN, value: latin1Bytes(input.alpn, "alpn") });
  if (input.authority !== undefined) tlvs.push({ type: PP2_TYPE.AUTHORITY, value: Buffer.from(input.authority, "utf8") });
  if (input.uniqueId !== undefined) {
    // 2.2.5: "an opaque byte sequence of up to 128 bytes".
    if (input.uniqueId.length > 128) v2Error(`uniqueId of ${input.uniqueId.length} bytes exceeds 128`);
    tlvs.push({ type: PP2_TYPE.UNIQUE_ID, value: input.uniqueId });
  }
  if (input.ssl !== undefined) tlvs.push({ type: PP2_TYPE.SSL, value: sslValue(input.ssl) });
  if (input.netns !== undefined) tlvs.push({ type: PP2_TYPE.NETNS, value: asciiBytes(input.netns, "netns") });
  for (const t of input.tlvs ?? []) {
    if (!Number.isInteger(t.type) || t.type < 0 || t.type > 0xff) v2Error(`TLV type must be an integer 0-255, got ${String(t.type)}`);
    if (DECODED_TYPES.has(t.type)) v2Error(`TLV type 0x${t.type.toString(16).padStart(2, "0")} must be given through its named field`);
    tlvs.push({ type: t.type, value: t.value });
  }
  for (const t of tlvs) if (t.value.length > 0xffff) v2Error(`TLV 0x${t.type.toString(16)} value exceeds 65535 bytes`);
  return tlvs;
}

function unixPathBytes(endpoint: ProxyEndpoint, name: string): Buffer {
  if (endpoint.port !== undefined) throw new TrafficError("ERR_BAD_PORT", "UNIX socket addresses have no port", name);
  const path = Buffer.from(String(endpoint.address), "utf8");
  // 2.2: "The addresses are exactly 108 bytes each" (sun_path, NUL-padded).
  if (path.length > 108 || path.includes(0)) {
    throw new TrafficError("ERR_BAD_ADDRESS", "UNIX socket path must be at most 108 bytes without NUL", name);
  }
  return path;
}

/**
 * Encodes a binary v2 header (proxy-protocol.txt 2.2), TLVs included, with a
 * valid PP2_TYPE_CRC32C when `crc32c` is set. Throws TrafficError
 * (ERR_BAD_ADDRESS, ERR_BAD_PORT, ERR_PROXY_V2) for input it cannot encode.
 */
export function encodeProxyHeaderV2(input: ProxyHeaderV2Input = {}): Buffer {
  const command = input.command ?? "proxy";
  if (command !== "proxy" && command !== "local") v2Error(`unknown command ${JSON.stringify(String(command))}`);
  const transport = input.transport ?? "tcp";
  const hasEndpoints = bothOrNeither(input, "ERR_PROXY_V2");
  // 2.2: for LOCAL "it should not present any address so it sets this field to zero".
  if (command === "local" && hasEndpoints) v2Error("a LOCAL header carries no addresses");

  let fam = 0x00;
  let addressLength = 0;
  let ip: Endpoints | null = null;
  let paths: [Buffer, Buffer] | null = null;
  if (hasEndpoints) {
    switch (transport) {
      case "tcp":
      case "udp":
        ip = ipEndpoints(input.source!, input.destination!);
        fam = (ip.v6 ? 0x20 : 0x10) | (transport === "tcp" ? 0x01 : 0x02);
        addressLength = ip.v6 ? 36 : 12;
        break;
      case "unix-stream":
      case "unix-dgram":
        paths = [unixPathBytes(input.source!, "source address"), unixPathBytes(input.destination!, "destination address")];
        fam = transport === "unix-stream" ? 0x31 : 0x32;
        addressLength = 216;
        break;
      default:
        v2Error(`unknown transport ${JSON.stringify(String(transport))}`);
    }
  }

  const tlvs = collectTlvs(input);
  const len = addressLength + tlvSize(tlvs);
  if (len > 0xffff) v2Error(`header needs ${len} bytes after the fixed part; the length field holds at most 65535`);
  // Zero-filled: the UNIX paths rely on NUL padding and the checksum field on zeros.
  const out = Buffer.alloc(16 + len);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x20 | (command === "proxy" ? 0x01 : 0x00);
  out[13] = fam;
  out.writeUInt16BE(len, 14);
  if (ip !== null) {
    if (ip.v6) {
      writeIPv6(out, 16, ip.source);
      writeIPv6(out, 32, ip.destination);
      out.writeUInt16BE(ip.sourcePort, 48);
      out.writeUInt16BE(ip.destinationPort, 50);
    } else {
      out.writeUInt32BE(ip.source.v4, 16);
      out.writeUInt32BE(ip.destination.v4, 20);
      out.writeUInt16BE(ip.sourcePort, 24);
      out.writeUInt16BE(ip.destinationPort, 26);
    }
  } else if (paths !== null) {
    out.set(paths[0], 16);
    out.set(paths[1], 124);
  }
  writeTlvs(out, 16 + addressLength, tlvs);
  if (input.crc32c === true) {
    // The CRC32C TLV is the first one; its value starts after its 3-byte type and length.
    out.writeUInt32BE(crc32c(out), 16 + addressLength + 3);
  }
  return out;
}

function writeIPv6(out: Buffer, at: number, ip: IpAddress): void {
  if (ip.v6 === null) {
    // IPv4 next to IPv6: written IPv4-mapped (::ffff:a.b.c.d).
    out[at + 10] = 0xff;
    out[at + 11] = 0xff;
    out.writeUInt32BE(ip.v4, at + 12);
    return;
  }
  out.set(ip.v6.toByteArray(), at);
}

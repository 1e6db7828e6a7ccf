import { TrafficError } from "../errors";
import { clip, formatIPv4, formatIPv6, IpAddress, parseIPv4Strict, tryParseIp } from "./ip";

/** One address range: an IPv4 network and mask, or an IPv6 network and prefix length. */
export type IpRange =
  | { readonly family: 4; readonly network: number; readonly mask: number; readonly prefix: number }
  | { readonly family: 6; readonly network: Uint16Array; readonly prefix: number };

/** Named ranges, in the words of proxy-addr and Express's `trust proxy`. */
export const NAMED_RANGES: Readonly<Record<string, readonly string[]>> = {
  loopback: ["127.0.0.0/8", "::1/128"],
  linklocal: ["169.254.0.0/16", "fe80::/10"],
  uniquelocal: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
  private: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
  any: ["0.0.0.0/0", "::/0"],
};

/** The IPv4 netmask of a prefix length, as an unsigned integer. */
export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

function badCidr(text: string, why: string): TrafficError {
  return new TrafficError("ERR_BAD_CIDR", `${why}: ${JSON.stringify(clip(text))}`, "cidr");
}

/** The prefix length of a contiguous IPv4 netmask ("255.255.255.0" is 24), or -1. */
function netmaskPrefix(value: number): number {
  const inverted = ~value >>> 0;
  // A contiguous mask inverted is 2^k - 1: adding one leaves no bit in common with it.
  if ((inverted & (inverted + 1)) !== 0) return -1;
  return 32 - Math.log2(inverted + 1);
}

/**
 * Parses "192.0.2.0/24", "192.0.2.0/255.255.255.0" (netmask notation, as Express and
 * nginx trust lists are often written), "2001:db8::/32" or a single address (a /32 or
 * /128). Host bits set below the prefix are an error: "192.0.2.1/24" is almost always a
 * typo, and the message names the network that was probably meant.
 */
export function parseCidr(text: string): IpRange {
  const slash = text.indexOf("/");
  const addressText = slash >= 0 ? text.slice(0, slash) : text;
  if (addressText.indexOf("%") >= 0) throw badCidr(text, "a zone index has no place in a range");
  const ip = tryParseIp(addressText);
  if (ip === null) throw badCidr(text, "not an address or CIDR");
  const mapped = ip.family === 4 && parseIPv4Strict(addressText) < 0;
  let prefix = ip.family === 4 ? 32 : 128;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    const netmask = p.indexOf(".") >= 0 ? parseIPv4Strict(p) : -2;
    if (netmask !== -2) {
      if (ip.family !== 4 || mapped) throw badCidr(text, "a netmask applies to IPv4 addresses only");
      prefix = netmask < 0 ? -1 : netmaskPrefix(netmask);
      if (prefix < 0) throw badCidr(text, "bad netmask (its one bits must be contiguous)");
    } else {
      if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) throw badCidr(text, "bad prefix length");
      prefix = Number(p);
      if (mapped) {
        // "::ffff:192.0.2.0/120" names IPv4 addresses; keep it in IPv4 terms.
        if (prefix < 96 || prefix > 128) throw badCidr(text, "IPv4-mapped prefix must be 96-128");
        prefix -= 96;
      }
    }
  }
  if (ip.family === 4) {
    if (prefix > 32) throw badCidr(text, "IPv4 prefix must be 0-32");
    const mask = maskOf(prefix);
    const network = (ip.v4 & mask) >>> 0;
    if (network !== ip.v4) throw hostBits(text, `${formatIPv4(network)}/${prefix}`);
    return { family: 4, network: ip.v4, mask, prefix };
  }
  if (prefix > 128) throw badCidr(text, "IPv6 prefix must be 0-128");
  const v6 = ip.v6!;
  const network = maskV6(v6, prefix);
  for (let i = 0; i < 8; i++) if (network[i] !== v6[i]) throw hostBits(text, `${formatIPv6(network)}/${prefix}`);
  return { family: 6, network: v6, prefix };
}

function hostBits(text: string, meant: string): TrafficError {
  return badCidr(text, `host bits set beyond the prefix (did you mean ${meant}?)`);
}

function groupMask(prefix: number, group: number): number {
  const bits = Math.max(0, Math.min(16, prefix - 16 * group));
  return bits === 0 ? 0 : (0xffff << (16 - bits)) & 0xffff;
}

/** The first `prefix` bits of an IPv6 address, the rest zero. */
export function maskV6(groups: Uint16Array, prefix: number): Uint16Array {
  const out = new Uint16Array(8);
  for (let i = 0; i < 8; i++) out[i] = groups[i]! & groupMask(prefix, i);
  return out;
}

/** True when the first `prefix` bits of `groups` equal those of `network`. */
function v6InRange(groups: Uint16Array, network: Uint16Array, prefix: number): boolean {
  for (let i = 0; i < 8 && 16 * i < prefix; i++) {
    if ((groups[i]! & groupMask(prefix, i)) !== network[i]) return false;
  }
  return true;
}

/** Splits a list given as text ("a, b c\nd") or as an array into trimmed entries. */
export function splitList(list: string | readonly string[]): string[] {
  const items = typeof list === "string" ? [list] : list;
  const out: string[] = [];
  for (const item of items) {
    for (const part of String(item).split(/[\s,]+/)) if (part !== "") out.push(part);
  }
  return out;
}

/** Expands named ranges and parses every entry of a CIDR list. */
export function parseRangeList(list: string | readonly string[]): IpRange[] {
  const ranges: IpRange[] = [];
  for (const entry of splitList(list)) {
    const key = entry.toLowerCase();
    const named = Object.hasOwn(NAMED_RANGES, key) ? NAMED_RANGES[key] : undefined;
    if (named !== undefined) for (const cidr of named) ranges.push(parseCidr(cidr));
    else ranges.push(parseCidr(entry));
  }
  return ranges;
}

/** A compiled predicate: is this address inside any of the ranges? */
export type RangeMatcher = (ip: IpAddress) => boolean;

/** Compiles ranges once into a predicate that does no parsing per call. */
export function compileRanges(ranges: readonly IpRange[]): RangeMatcher {
  const v4net: number[] = [];
  const v4mask: number[] = [];
  const v6: Array<[Uint16Array, number]> = [];
  for (const r of ranges) {
    if (r.family === 4) {
      v4net.push(r.network);
      v4mask.push(r.mask);
    } else v6.push([r.network, r.prefix]);
  }
  const n4 = v4net.length;
  const n6 = v6.length;
  return (ip: IpAddress): boolean => {
    if (ip.family === 4) {
      const a = ip.v4;
      for (let i = 0; i < n4; i++) if ((a & v4mask[i]!) >>> 0 === v4net[i]) return true;
      return false;
    }
    const addr = ip.v6!;
    for (let i = 0; i < n6; i++) if (v6InRange(addr, v6[i]![0], v6[i]![1])) return true;
    return false;
  };
}

/** True when `text` is a valid CIDR, single address or named range. */
export function isValidRangeEntry(text: string): boolean {
  try {
    parseRangeList([text]);
    return true;
  } catch {
    return false;
  }
}

import { TrafficError } from "../errors";
import { compileRanges, parseRangeList } from "../net/cidr";
import { IpAddress } from "../net/ip";

/**
 * Which proxies to trust:
 * - a list of CIDRs, single addresses and named ranges (`loopback`, `linklocal`,
 *   `uniquelocal`/`private`), as an array or as text separated by commas or spaces;
 * - a hop count N: trust the N nearest hops whatever their address (Express `trust proxy` N);
 * - `{ proxies, hops }`: both, a hop must be in the list *and* within the count;
 * - `false` or an empty list: trust nobody (the socket peer is the client).
 */
export type TrustSpec =
  | string
  | readonly string[]
  | number
  | boolean
  | { readonly proxies?: string | readonly string[]; readonly hops?: number }
  | TrustPredicate;

/** Compiled trust: is the address at hop `hop` (0 = socket peer) a trusted proxy? */
export type TrustPredicate = (ip: IpAddress, hop: number) => boolean;

function checkHops(hops: number): number {
  if (!Number.isInteger(hops) || hops < 0 || hops > 1000) {
    throw new TrafficError("ERR_TRUST_CONFIG", `hop count must be an integer 0-1000, got ${hops}`, "trust");
  }
  return hops;
}

function listPredicate(list: string | readonly string[]): TrustPredicate {
  const ranges = parseRangeList(list);
  if (ranges.length === 0) return () => false;
  const inRanges = compileRanges(ranges);
  return (ip) => inRanges(ip);
}

/** Compiles a trust specification once into a predicate that does no parsing per call. */
export function compileTrust(spec: TrustSpec): TrustPredicate {
  if (typeof spec === "function") return spec;
  if (typeof spec === "boolean") return spec ? () => true : () => false;
  if (typeof spec === "number") {
    const hops = checkHops(spec);
    return (_ip, hop) => hop < hops;
  }
  if (typeof spec === "string" || Array.isArray(spec)) return listPredicate(spec as string | readonly string[]);
  if (spec !== null && typeof spec === "object") {
    const { proxies, hops } = spec as { proxies?: string | readonly string[]; hops?: number };
    const inList = proxies === undefined ? () => true : listPredicate(proxies);
    if (hops === undefined) return inList;
    const max = checkHops(hops);
    return (ip, hop) => hop < max && inList(ip, hop);
  }
  throw new TrafficError("ERR_TRUST_CONFIG", `unsupported trust setting: ${String(spec)}`, "trust");
}

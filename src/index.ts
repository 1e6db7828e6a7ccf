/**
 * Library API: the package's core, usable without Node-RED.
 *
 * - Client address: `compileRealIp(options)` → resolver, `resolveClientAddress(input, options)`,
 *   `compileTrust(spec)`; header parsers `parseForwarded`, `parseXForwardedFor`.
 * - PROXY protocol: `parseProxyHeader(bytes)` (incremental), `encodeProxyHeaderV1/V2`.
 * - Addresses: `parseIp`, `tryParseIp`, `parseCidr`, `parseRangeList`, `compileRanges`,
 *   `compileIpFilter(rules)`.
 * - Transparent capture: `TransparentListener`, `getOriginalDst(socketOrFd)`, `getLocalAddress`, `createListenerFd`, `connectionTable()`.
 * - Classification: `classifyBytes(bytes)`, `StreamClassifier`, `compileRouter(rules)`.
 * - Host report: `capabilityReport()`.
 * Every error from bad input is a `TrafficError` with a `code` and a `reason`.
 */
export { TrafficError, isTrafficError, type TrafficErrorCode } from "./errors";
export { parseIp, tryParseIp, parseIPv4Strict, parseIPv6, formatIPv4, formatIPv6, parsePort, type IpAddress } from "./net/ip";
export { parseCidr, parseRangeList, compileRanges, splitList, isValidRangeEntry, NAMED_RANGES, type IpRange, type RangeMatcher } from "./net/cidr";
export { compileTrust, type TrustSpec, type TrustPredicate } from "./realip/trust";
export {
  compileRealIp,
  resolveClientAddress,
  HEADER_SOURCES,
  type RealIpInput,
  type RealIpOptions,
  type RealIpResult,
  type RealIpResolver,
  type ChainHop,
  type AddressSource,
  type HeaderSource,
  type IgnoredSource,
} from "./realip/resolve";
export { parseForwarded, splitForwarded, parseForwardedElement, type ForwardedElement } from "./realip/forwarded";
export { parseXForwardedFor } from "./realip/x-forwarded-for";
export type { HopNode } from "./realip/node-address";
export * from "./proxy-protocol";
export { compileIpFilter, type IpRuleSpec, type IpFilter, type IpFilterVerdict } from "./ipfilter/rules";
export { isTrafficSession, type ConnectionInfo, type TrafficSessionRef, type OriginalDstMethod } from "./connection";
export { capabilityReport, effectiveCapabilities, formatCapabilityReport, type FeatureReport, type CapabilityName } from "./doctor";
export * from "./classify";
export * from "./listener";
export * from "./forward";

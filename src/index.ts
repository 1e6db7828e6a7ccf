/**
 * Library API: the package's core, usable without Node-RED.
 *
 * - Client address: `compileRealIp(options)` → resolver, `resolveClientAddress(input, options)`,
 *   `compileTrust(spec)`; header parsers `parseForwarded`, `parseXForwardedFor`.
 * - PROXY protocol: `parseProxyHeader(bytes)` (incremental), `encodeProxyHeaderV1/V2`.
 * - Addresses: `parseIp`, `tryParseIp`, `parseCidr`, `parseRangeList`, `compileRanges`,
 *   `compileIpFilter(rules)`.
 * - Transparent capture: `TransparentListener`, `ManagedCapture` (a listener with its nft rules,
 *   handed over across a restart), `getOriginalDst(socketOrFd)`, `getLocalAddress`, `createListenerFd`, `connectionTable()`.
 * - Classification: `classifyBytes(bytes)`, `StreamClassifier` (`.readFrom` a live connection), `compileRouter(rules)`.
 * - Events and MQTT: event types (every event, flow events included) and `eventSchema(type)`, `makeEvent`, `toEvent(msg)`, `Publisher` (ordered,
 *   bounded, optional `FileSpool`), `compileTopicTemplate`, `Batcher`.
 * - Connection limits: `new Limiter(spec, onBurst)` (per-key token bucket and concurrency cap,
 *   bounded LRU of keys), `messageKey`, `addressKey`, `limitEvent(burst, options)`.
 * - Host report: `capabilityReport()`.
 * - TCP flows of the host: `new FlowSource(options, onEvents)` (eBPF, else sock_diag),
 *   `probeFlowFeatures()`, `doctorReport()`; it emits the flow events of `./events`.
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
export * from "./limit";
export { compileIpFilter, type IpRuleSpec, type IpFilter, type IpFilterVerdict } from "./ipfilter/rules";
export { isTrafficSession, type ConnectionInfo, type TrafficSessionRef, type OriginalDstMethod } from "./connection";
export { capabilityReport, effectiveCapabilities, formatCapabilityReport, type FeatureReport, type CapabilityName } from "./doctor";
export * from "./classify";
export * from "./listener";
export { FlowSource, explainBpfFailure, type FlowMode, type FlowProtocols, type FlowSourceOptions, type FlowSourceStatus, type FlowSourceStats } from "./flow/source";
export { compileFlowFilter, type FlowFilterSpec, type FlowFilter } from "./flow/filter";
export { probeFlowFeatures, trialLoad, doctorReport, cgroupV2Root, type FlowFeatureReport } from "./flow/features";
export * from "./events";
export {
  Publisher,
  type PublisherOptions,
  type PublisherStats,
  type PublishTransport,
  type OutgoingMessage,
  type PublishProperties,
  type OverflowPolicy,
} from "./mqtt/publisher";
export { FileSpool, type Spool, type SpoolRecord } from "./mqtt/spool";
export { compileTopicTemplate, validatePublishTopic, TOPIC_PLACEHOLDERS, type TopicPlaceholder, type TopicValues } from "./mqtt/topic";
export { Batcher } from "./mqtt/batcher";
export { BrokerConnection, brokerUrl, externalBrokerUrl, type BrokerConnectionSettings, type BrokerHandle, type BrokerState, type BrokerTexts, type BrokerUser } from "./mqtt/broker";
export * from "./forward";
export { trafficMetrics, TrafficMetrics, liveFeed, LiveFeed, TopTalkers, type LiveSnapshot, type LiveRow, type Talker } from "./observe";

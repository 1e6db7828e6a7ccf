export type { ProxyHeader, ProxyParseResult, ProxySslInfo, ProxyTlv } from "./types";
export {
  parseProxyHeader,
  PP2_CLIENT,
  PP2_SUBTYPE_SSL,
  PP2_TYPE,
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_MAX_LENGTH,
  type ProxyParseOptions,
} from "./parse";
export {
  encodeProxyHeaderV1,
  encodeProxyHeaderV2,
  type ProxyEndpoint,
  type ProxyHeaderV1Input,
  type ProxyHeaderV2Input,
  type ProxyTlvInput,
  type ProxyTransport,
} from "./encode";
export { crc32c, crc32cZeros } from "./crc32c";

/** Codes of the errors this package raises for bad input or configuration. */
export type TrafficErrorCode =
  | "ERR_BAD_ADDRESS"
  | "ERR_BAD_PORT"
  | "ERR_BAD_CIDR"
  | "ERR_TRUST_CONFIG"
  | "ERR_FORWARDED_SYNTAX"
  | "ERR_XFF_SYNTAX"
  | "ERR_REAL_IP_SYNTAX"
  | "ERR_PROXY_V1"
  | "ERR_PROXY_V2"
  | "ERR_RULE_CONFIG"
  | "ERR_CLASSIFY_INPUT"
  | "ERR_CLASSIFY_CONFIG"
  | "ERR_NATIVE_UNAVAILABLE"
  | "ERR_NO_FD"
  | "ERR_LISTENER_CONFIG"
  | "ERR_NFT_CONFIG"
  | "ERR_NFT_FAILED"
  | "ERR_TOPIC"
  | "ERR_MQTT_CONFIG"
  | "ERR_METRICS_CONFIG"
  | "ERR_SPOOL"
  | "ERR_FORWARD_CONFIG"
  | "ERR_FORWARD_TARGET"
  | "ERR_FORWARD_LOOP"
  | "ERR_LIMIT_CONFIG"
  | "ERR_FLOW_CONFIG";

/**
 * The one error type of the pure core: `code` says what kind of input was wrong,
 * `reason` says why in words an operator can act on, `input` names where it came from.
 */
export class TrafficError extends Error {
  readonly code: TrafficErrorCode;
  readonly reason: string;
  readonly input: string | undefined;

  constructor(code: TrafficErrorCode, reason: string, input?: string) {
    super(input === undefined ? reason : `${input}: ${reason}`);
    this.name = "TrafficError";
    this.code = code;
    this.reason = reason;
    this.input = input;
  }
}

/** True when `err` is an error raised by this package's core. */
export function isTrafficError(err: unknown): err is TrafficError {
  return err instanceof TrafficError;
}

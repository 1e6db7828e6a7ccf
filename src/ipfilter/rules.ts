import { TrafficError } from "../errors";
import { compileRanges, parseRangeList, RangeMatcher } from "../net/cidr";
import { IpAddress, tryParseIp } from "../net/ip";

/** One allow/deny rule over CIDRs, single addresses and named ranges. */
export interface IpRuleSpec {
  readonly name?: string;
  readonly action: "allow" | "deny";
  /** CIDR list: an array, or text separated by commas, spaces or new lines. */
  readonly ranges: string | readonly string[];
}

/** The outcome for one address: the first rule that matched, or none. */
export interface IpFilterVerdict {
  /** Index of the first matching rule, -1 when no rule matched or the input is not an address. */
  readonly index: number;
  readonly rule: string | null;
  readonly action: "allow" | "deny" | null;
  /** The canonical address that was matched, null when the input was not an IP address. */
  readonly address: string | null;
}

/** A compiled rule table. */
export type IpFilter = (address: unknown) => IpFilterVerdict;

/**
 * Compiles an ordered rule table once; the returned function checks the rules in order
 * and reports the first match. Anything that is not an IP address (null, `unknown`,
 * junk) matches no rule, so a deny-by-default policy stays closed.
 */
export function compileIpFilter(rules: readonly IpRuleSpec[]): IpFilter {
  const compiled: Array<{ name: string; action: "allow" | "deny"; match: RangeMatcher }> = rules.map((rule, i) => {
    if (rule.action !== "allow" && rule.action !== "deny") {
      throw new TrafficError("ERR_RULE_CONFIG", `rule ${i + 1}: action must be allow or deny`, "rules");
    }
    const name = rule.name !== undefined && rule.name !== "" ? rule.name : `rule ${i + 1}`;
    let ranges;
    try {
      ranges = parseRangeList(rule.ranges);
    } catch (err) {
      const reason = err instanceof TrafficError ? err.reason : String(err);
      throw new TrafficError("ERR_RULE_CONFIG", `${name}: ${reason}`, "rules");
    }
    return { name, action: rule.action, match: compileRanges(ranges) };
  });
  return (address: unknown): IpFilterVerdict => {
    let ip: IpAddress | null = null;
    if (typeof address === "string") ip = tryParseIp(address);
    if (ip === null) return { index: -1, rule: null, action: null, address: null };
    for (let i = 0; i < compiled.length; i++) {
      const rule = compiled[i]!;
      if (rule.match(ip)) return { index: i, rule: rule.name, action: rule.action, address: ip.text };
    }
    return { index: -1, rule: null, action: null, address: ip.text };
  };
}

import type { Node, NodeAPI, NodeDef, NodeStatus } from "node-red";
import { TrafficError } from "../../src/errors";
import { isTrafficSession } from "../../src/connection";
import { trafficMetrics } from "../../src/observe/metrics";
import { compileIpFilter, IpFilter, IpFilterVerdict, IpRuleSpec } from "../../src/ipfilter/rules";
import { addPolicyVerdict, enforcementOf, type Enforcement } from "../../src/policy/verdict";
import { messages } from "../common/messages";
import { COUNTS_STATUS_MAX, countsText, throttledStatus } from "../common/status";
import { withNodeDefaults } from "../common/defaults";

/** One rule as the editor stores it: `vt` says whether `v` is a CIDR list or an environment variable name. */
export interface IpFilterRuleConfig {
  name?: string;
  action: "allow" | "deny";
  vt: "cidr" | "env";
  v: string;
}

interface IpFilterDef extends NodeDef {
  property: string;
  propertyType: "msg";
  rules: IpFilterRuleConfig[];
  /** `rules`: one output per rule plus "no match"; `allow-deny`: output 1 allowed, output 2 denied. */
  outputMode: "rules" | "allow-deny";
  /** In allow-deny mode, what an address that matches no rule gets. */
  noMatch: "allow" | "deny";
  /** `shadow`: a denied message leaves by the allowed output; the deny is only reported. */
  enforcement?: Enforcement;
}

/** Why an address was denied, in words for the policy-verdict event. */
function denyReason(v: IpFilterVerdict, property: string): string {
  if (v.rule !== null) return `rule ${JSON.stringify(v.rule)} (deny) matched ${v.address ?? "the address"}`;
  if (v.address === null) return `msg.${property} is not an IP address; no rule matches it, the no-match default is deny`;
  return `no rule matched ${v.address}; the no-match default is deny`;
}

/** Resolves editor rules into rule specs, reading environment lists through Node-RED. */
export function rulesFromConfig(rules: IpFilterRuleConfig[], readEnv: (name: string) => unknown): IpRuleSpec[] {
  return (rules ?? []).map((rule, i) => {
    let ranges = rule.v ?? "";
    if (rule.vt === "env") {
      const value = readEnv(rule.v);
      if (value === undefined || value === null || String(value).trim() === "") {
        throw new TrafficError("ERR_RULE_CONFIG", `rule ${i + 1}: environment variable ${rule.v} is not set`, "rules");
      }
      ranges = String(value);
    }
    return { ...(rule.name ? { name: rule.name } : {}), action: rule.action, ranges };
  });
}

export default function register(RED: NodeAPI): void {
  const _ = messages(RED);
  function IpFilterNode(this: Node, flowConfig: IpFilterDef): void {
    const config = withNodeDefaults("ip filter", flowConfig);
    RED.nodes.createNode(this, config);
    const node = this;
    const status = throttledStatus(node, 250, COUNTS_STATUS_MAX);
    const property = config.property || "clientIp";
    const mode = config.outputMode === "allow-deny" ? "allow-deny" : "rules";
    const noMatch = config.noMatch === "allow" ? "allow" : "deny";
    const counts = { allow: 0, deny: 0, none: 0 };
    let filter: IpFilter | null = null;
    let configError: Error | null = null;
    let rules: IpRuleSpec[] = [];
    let enforcement: Enforcement = "enforce";
    try {
      enforcement = enforcementOf(config.enforcement);
      rules = rulesFromConfig(config.rules, (name) => RED.util.evaluateNodeProperty(name, "env", node, {}));
      filter = compileIpFilter(rules);
      const ruleText = rules.length === 1 ? _("ip-filter.status.oneRule") : _("ip-filter.status.rules", { count: rules.length });
      node.status(enforcement === "shadow" ? { fill: "yellow", shape: "ring", text: _("ip-filter.status.shadowRules", { rules: ruleText }) } : { fill: "grey", shape: "dot", text: ruleText });
    } catch (err) {
      configError = err as Error;
      node.error(_("ip-filter.error.rules", { reason: configError.message }));
      node.status({ fill: "red", shape: "ring", text: _("ip-filter.status.badRules") });
    }
    const outputs = mode === "rules" ? rules.length + 1 : 2;
    // Denies per rule (the last entry: the no-match default), enforced or not.
    const denies = new Array<number>(rules.length + 1).fill(0);

    // Made when the status is shown (the throttle drops most), from the counts then.
    const countsStatus = (): NodeStatus =>
      enforcement === "shadow"
        ? { fill: "yellow", shape: "ring", text: `${_("ip-filter.status.shadow")} · ${_("ip-filter.status.wouldDeny")} ${denies.join("/")}` }
        : {
            fill: "green",
            shape: "dot",
            text: countsText([
              [_("ip-filter.status.allowed"), counts.allow],
              [_("ip-filter.status.denied"), counts.deny],
              [_("ip-filter.status.noMatch"), counts.none],
            ]),
          };

    node.on("input", (msg, send, done) => {
      if (filter === null) {
        // Fail closed: with broken rules nothing passes.
        done(configError ?? new Error(_("ip-filter.error.notConfigured")));
        return;
      }
      const value = RED.util.getMessageProperty(msg, property);
      const verdict = filter(value);
      (msg as { ipFilter?: unknown }).ipFilter = { ...verdict, property, value: typeof value === "string" ? value : null };
      const out: Array<typeof msg | null> = new Array(outputs).fill(null);
      // In rules mode the wiring of a deny rule's output decides what happens; the node
      // reports the rule's action either way.
      const action = mode === "rules" ? verdict.action : (verdict.action ?? noMatch);
      if (action === "deny") {
        denies[verdict.index >= 0 ? verdict.index : rules.length]!++;
        const session = (msg as { _session?: unknown })._session;
        addPolicyVerdict(msg, {
          mode: enforcement,
          verdict: "deny",
          nodeType: "ip filter",
          nodeId: node.id,
          ...(node.name ? { nodeName: node.name } : {}),
          rule: verdict.rule,
          reason: denyReason(verdict, property),
          ...(isTrafficSession(session) ? { connectionId: session.id } : {}),
          ...(typeof value === "string" ? { clientIp: value } : {}),
        });
      }
      if (mode === "rules") {
        out[verdict.index >= 0 ? verdict.index : rules.length] = msg;
        if (verdict.action === null) counts.none++;
        else counts[verdict.action]++;
      } else {
        if (verdict.action === null) counts.none++;
        out[action === "allow" || enforcement === "shadow" ? 0 : 1] = msg;
        counts[action!]++;
      }
      trafficMetrics().ipFilterVerdict(node.id, verdict.rule ?? (verdict.index >= 0 ? `#${verdict.index + 1}` : null), action ?? "none");
      status.set(countsStatus);
      send(out);
      done();
    });
    node.on("close", () => status.clear());
  }
  RED.nodes.registerType("ip filter", IpFilterNode);
}

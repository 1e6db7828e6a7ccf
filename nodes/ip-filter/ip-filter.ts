import type { Node, NodeAPI, NodeDef } from "node-red";
import { TrafficError } from "../../src/errors";
import { trafficMetrics } from "../../src/observe/metrics";
import { compileIpFilter, IpFilter, IpRuleSpec } from "../../src/ipfilter/rules";
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
    try {
      rules = rulesFromConfig(config.rules, (name) => RED.util.evaluateNodeProperty(name, "env", node, {}));
      filter = compileIpFilter(rules);
      node.status({ fill: "grey", shape: "dot", text: rules.length === 1 ? _("ip-filter.status.oneRule") : _("ip-filter.status.rules", { count: rules.length }) });
    } catch (err) {
      configError = err as Error;
      node.error(_("ip-filter.error.rules", { reason: configError.message }));
      node.status({ fill: "red", shape: "ring", text: _("ip-filter.status.badRules") });
    }
    const outputs = mode === "rules" ? rules.length + 1 : 2;

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
      if (mode === "rules") {
        out[verdict.index >= 0 ? verdict.index : rules.length] = msg;
        if (verdict.action === null) counts.none++;
        else counts[verdict.action]++;
      } else {
        const action = verdict.action ?? noMatch;
        if (verdict.action === null) counts.none++;
        out[action === "allow" ? 0 : 1] = msg;
        counts[action]++;
      }
      trafficMetrics().ipFilterVerdict(node.id, verdict.rule ?? (verdict.index >= 0 ? `#${verdict.index + 1}` : null), mode === "rules" ? verdict.action ?? "none" : verdict.action ?? noMatch);
      status.set({ fill: "green", shape: "dot", text: countsText([
          [_("ip-filter.status.allowed"), counts.allow],
          [_("ip-filter.status.denied"), counts.deny],
          [_("ip-filter.status.noMatch"), counts.none],
        ]) });
      send(out);
      done();
    });
    node.on("close", () => status.clear());
  }
  RED.nodes.registerType("ip filter", IpFilterNode);
}

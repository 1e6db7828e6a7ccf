import { TrafficError } from "../errors";
import { isTrafficEvent, makeEvent, type EventBody } from "../events/make";
import type { PolicyVerdictEvent } from "../events/types";

/**
 * `enforce`: a policy node carries out its verdicts; `shadow`: every connection passes as
 * if allowed and the verdicts are only reported (Envoy RBAC `shadow_rules`, Cilium's audit
 * mode), so a new policy can be watched on real traffic before it bites.
 */
export type Enforcement = "enforce" | "shadow";

/** Reads a node's `enforcement` setting: absent or empty is `enforce`; anything else but the two is ERR_RULE_CONFIG. */
export function enforcementOf(value: unknown): Enforcement {
  if (value === undefined || value === null || value === "" || value === "enforce") return "enforce";
  if (value === "shadow") return "shadow";
  throw new TrafficError("ERR_RULE_CONFIG", `enforcement must be enforce or shadow, got ${JSON.stringify(String(value).slice(0, 32))}`, "enforcement");
}

/** The verdicts a message collected on its way (`msg.policyVerdicts`), oldest first. */
export function policyVerdictsOf(msg: object): PolicyVerdictEvent[] {
  const list = (msg as { policyVerdicts?: unknown }).policyVerdicts;
  if (!Array.isArray(list)) return [];
  return list.filter((v): v is PolicyVerdictEvent => isTrafficEvent(v) && v.type === "policy-verdict");
}

/**
 * Records a verdict on the message it is about, as a complete `policy-verdict` event in
 * `msg.policyVerdicts`: the message carries it to wherever the flow sends it (forward's
 * summary keeps it), and `mqtt events` publishes each one beside the message's own event.
 * A new array each time, so clones sent to other wires keep their own history.
 */
export function addPolicyVerdict(msg: object, body: Omit<EventBody<PolicyVerdictEvent>, "type">): PolicyVerdictEvent {
  const event = makeEvent<PolicyVerdictEvent>({ type: "policy-verdict", ...body });
  (msg as { policyVerdicts?: unknown }).policyVerdicts = [...policyVerdictsOf(msg), event];
  return event;
}

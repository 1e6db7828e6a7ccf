import { TrafficError } from "../errors";

/** Placeholders a topic template may use; each names a field of the event (or the agent's host). */
export const TOPIC_PLACEHOLDERS = ["host", "type", "side", "protocol"] as const;
export type TopicPlaceholder = (typeof TOPIC_PLACEHOLDERS)[number];

/** Value a placeholder takes when the event has no such field, so the topic keeps its levels. */
export const MISSING_LEVEL = "none";

/** Values a compiled template reads. */
export type TopicValues = Partial<Record<TopicPlaceholder, string>>;

/**
 * Checks a concrete topic to publish to: MQTT forbids wildcards in PUBLISH topics
 * (MQTT 3.1.1 §4.7.1, 5.0 §4.7.1) and an empty topic; `$` topics belong to the broker.
 */
export function validatePublishTopic(topic: string, input = "topic"): string {
  if (topic.length === 0) throw new TrafficError("ERR_TOPIC", "empty topic", input);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: MQTT forbids NUL in a topic (MQTT 5 1.5.4).
  if (/[+#\u0000]/.test(topic)) throw new TrafficError("ERR_TOPIC", "a publish topic must not contain +, # or NUL", input);
  if (topic.startsWith("$")) throw new TrafficError("ERR_TOPIC", "topics starting with $ are reserved for the broker", input);
  if (Buffer.byteLength(topic) > 65535) throw new TrafficError("ERR_TOPIC", "topic longer than 65535 bytes", input);
  return topic;
}

/** A value put into one topic level must not add levels or wildcards. */
function levelSafe(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: MQTT forbids NUL in a topic (MQTT 5 1.5.4).
  return value.length === 0 ? MISSING_LEVEL : value.replace(/[/+#\u0000]/g, "_");
}

/**
 * Compiles a template like `traffic/{host}/{type}/{side}` once into a function from event
 * values to a topic. Unknown placeholders, unbalanced braces and wildcards are
 * configuration errors raised here, not per message.
 */
export function compileTopicTemplate(template: string): (values: TopicValues) => string {
  const parts: Array<{ text: string } | { key: TopicPlaceholder }> = [];
  const re = /\{([^{}]*)\}/g;
  let last = 0;
  for (let m = re.exec(template); m !== null; m = re.exec(template)) {
    const key = m[1] as string;
    if (!(TOPIC_PLACEHOLDERS as readonly string[]).includes(key)) {
      throw new TrafficError("ERR_TOPIC", `unknown placeholder {${key}}; use ${TOPIC_PLACEHOLDERS.map((p) => `{${p}}`).join(", ")}`, "topic template");
    }
    parts.push({ text: template.slice(last, m.index) }, { key: key as TopicPlaceholder });
    last = m.index + m[0].length;
  }
  parts.push({ text: template.slice(last) });
  const literal = parts.map((p) => ("text" in p ? p.text : "x")).join("");
  if (/[{}]/.test(literal)) throw new TrafficError("ERR_TOPIC", "unbalanced { or } in template", "topic template");
  validatePublishTopic(literal, "topic template");
  return (values) => {
    let out = "";
    for (const p of parts) out += "text" in p ? p.text : levelSafe(values[p.key] ?? "");
    return out;
  };
}

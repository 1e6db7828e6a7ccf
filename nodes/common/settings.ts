import { TrafficError } from "../../src/errors";

/**
 * Reads an integer field of a node's configuration: the editor stores numbers as strings
 * or numbers, and an empty field means the default.
 */
export function intSetting(value: string | number | undefined, fallback: number, min: number, max: number, input: string): number {
  const text = String(value ?? "").trim();
  if (text === "") return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new TrafficError("ERR_MQTT_CONFIG", `must be an integer from ${min} to ${max}`, input);
  return n;
}

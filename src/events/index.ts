import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { EventType } from "./types";

export * from "./types";
export * from "./make";
export * from "./convert";
export * from "./first-bytes";

/**
 * Folder of the generated JSON Schemas (`<type>.json`, and `event.json` for any event),
 * at the package root: two levels up from src/events, three from dist/src/events.
 */
export const SCHEMAS_DIR = [join(__dirname, "..", "..", "schemas"), join(__dirname, "..", "..", "..", "schemas")].find((dir) =>
  existsSync(join(dir, "event.json")),
) ?? join(__dirname, "..", "..", "..", "schemas");

/** The JSON Schema (draft-07) of one event type, or of any event (`"event"`). */
export function eventSchema(type: EventType | "event"): Record<string, unknown> {
  return JSON.parse(readFileSync(join(SCHEMAS_DIR, `${type}.json`), "utf8")) as Record<string, unknown>;
}

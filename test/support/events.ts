import Ajv, { type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import { EVENT_TYPES, eventSchema, type EventType } from "../../src/events";

const ajv = new Ajv({ allErrors: true, strict: true });
addFormats(ajv);
const validators = new Map<string, ValidateFunction>();

function validator(type: EventType | "event"): ValidateFunction {
  let v = validators.get(type);
  if (v === undefined) {
    v = ajv.compile(eventSchema(type));
    validators.set(type, v);
  }
  return v;
}

/**
 * Throws unless `value` is valid against the schema of its own `type` and against the
 * union schema: every test that sees an event the package emitted runs it through here.
 */
export function assertValidEvent(value: unknown): void {
  const type = (value as { type?: unknown } | null)?.type;
  if (typeof type !== "string" || !(EVENT_TYPES as readonly string[]).includes(type)) {
    throw new Error(`not an event of this package: ${JSON.stringify(value)?.slice(0, 200)}`);
  }
  for (const name of [type as EventType, "event" as const]) {
    const v = validator(name);
    if (!v(value)) throw new Error(`invalid ${name} event: ${ajv.errorsText(v.errors)}\n${JSON.stringify(value).slice(0, 400)}`);
  }
}

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { EVENT_SCHEMA_VERSION, EVENT_TYPES, type TrafficEvent } from "./types";

/** An event as its producer writes it: everything but the fields every event shares. */
export type EventBody<E extends TrafficEvent = TrafficEvent> = E extends TrafficEvent ? Omit<E, "schemaVersion" | "id" | "time" | "host"> : never;

/**
 * Makes event ids that are unique across agents and restarts without coordination: a
 * random per-process prefix and a counter, so they also sort in emission order per process.
 */
export function eventIdSource(prefix = randomBytes(6).toString("hex")): () => string {
  let seq = 0;
  return () => `${prefix}-${(++seq).toString(36)}`;
}

const defaultId = eventIdSource();

// The host name, read again at most every HOST_TTL_MS: os.hostname() is a system call, and
// a busy gateway makes several events per connection (it was an eighth of a classify
// node's CPU). A renamed host shows in events within that time.
const HOST_TTL_MS = 5000;
let host = "";
let hostReadAt = Number.NEGATIVE_INFINITY;

/** This host's name as events carry it (os.hostname(), cached for a few seconds). */
export function eventHost(): string {
  const now = Date.now();
  if (now - hostReadAt >= HOST_TTL_MS || now < hostReadAt) {
    host = hostname();
    hostReadAt = now;
  }
  return host;
}

/** Completes an event body with schemaVersion, id, time and host. */
export function makeEvent<E extends TrafficEvent>(
  body: EventBody<E>,
  options: { host?: string; id?: string; time?: Date } = {},
): E {
  return {
    schemaVersion: EVENT_SCHEMA_VERSION,
    id: options.id ?? defaultId(),
    time: (options.time ?? new Date()).toISOString(),
    host: options.host ?? eventHost(),
    ...body,
  } as unknown as E;
}

/** True when `value` looks like one of this package's events (type and schema version). */
export function isTrafficEvent(value: unknown): value is TrafficEvent {
  if (value === null || typeof value !== "object") return false;
  const v = value as { type?: unknown; schemaVersion?: unknown };
  return v.schemaVersion === EVENT_SCHEMA_VERSION && typeof v.type === "string" && (EVENT_TYPES as readonly string[]).includes(v.type);
}

/** What a reader of an event looks for first: what happened, who, between which ends, how it ended. */
const KEY_FACTS = ["type", "comm", "pid", "side", "localIp", "localPort", "remoteIp", "remotePort", "end", "error", "bytesSent", "bytesReceived", "durationMs"] as const;

/**
 * The same event with its key facts as the first properties, for the debug sidebar and
 * JSON readers (property order is all that changes).
 */
export function keyFactsFirst<E extends object>(event: E): E {
  const fields = event as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of KEY_FACTS) if (key in fields) out[key] = fields[key];
  // Keys already set keep their place: the rest follow in the event's own order.
  return Object.assign(out, fields) as E;
}

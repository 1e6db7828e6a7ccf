import { makeEvent } from "../events/make";
import type { LimitEvent } from "../events/types";
import type { LimitKeyKind } from "./key";
import type { LimitBurst, LimitSpec } from "./limiter";

/** What a limiter's events say about the limiter itself. */
export interface LimitEventContext {
  /** Name of the limiter (a node's name or id). */
  readonly limiter: string;
  readonly keyKind: LimitKeyKind;
  readonly action: LimitEvent["action"];
  readonly spec: Pick<LimitSpec, "rate" | "burst" | "maxConcurrent">;
  /** Host name stamped on the event; default this host's. */
  readonly host?: string;
  /** Event time; default now. */
  readonly time?: Date;
}

/** The `limit` event of one burst report. */
export function limitEvent(burst: LimitBurst, context: LimitEventContext): LimitEvent {
  const time = context.time ?? new Date();
  return makeEvent<LimitEvent>(
    {
      type: "limit",
      phase: burst.phase,
      limiter: context.limiter,
      keyKind: context.keyKind,
      key: burst.key,
      reason: burst.reason,
      action: context.action,
      rejected: { ...burst.rejected },
      allowed: burst.allowed,
      startedAt: new Date(time.getTime() - burst.startedAgoMs).toISOString(),
      durationMs: burst.durationMs,
      ...(burst.evicted === true ? { evicted: true } : {}),
      limits: { rate: context.spec.rate, burst: context.spec.burst, maxConcurrent: context.spec.maxConcurrent },
    },
    { time, ...(context.host === undefined ? {} : { host: context.host }) },
  );
}

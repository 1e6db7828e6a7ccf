import type { Node, NodeAPI, NodeDef, NodeMessage } from "node-red";
import { isTrafficSession } from "../../src/connection";
import { rejectConnection } from "../../src/forward/forward";
import {
  checkGrouping,
  LIMIT_DEFAULTS,
  LIMIT_KEY_KINDS,
  limitEvent,
  Limiter,
  messageKey,
  NO_KEY,
  valueKey,
  type AddressGrouping,
  type LimitKeyKind,
} from "../../src/limit";
import type { LimitEvent } from "../../src/events/types";
import { connectionTable } from "../../src/connection-table";
import { NODE_DEFAULTS, withNodeDefaults } from "../common/defaults";
import { messages } from "../common/messages";
import { COUNTS_STATUS_MAX, countsText, throttledStatus } from "../common/status";
import { configReader } from "../common/config";

/** What happens to a connection over the limit. */
export type LimitOver = LimitEvent["action"];

interface LimitDef extends NodeDef {
  keyKind: LimitKeyKind;
  /** With keyKind `property`: the msg property whose value is the key. */
  keyProperty: string;
  v4Prefix: number | string;
  v6Prefix: number | string;
  /** New connections per second per key; 0: none. */
  rate: number | string;
  burst: number | string;
  /** Open connections per key; 0: no cap. */
  maxConcurrent: number | string;
  over: LimitOver;
  maxKeys: number | string;
}

const OVER: readonly LimitOver[] = ["reject-fin", "reject-rst", "output"];

const read = configReader("ERR_LIMIT_CONFIG");
const D = NODE_DEFAULTS.limit;
const COUNT = { min: 0, max: Number.MAX_SAFE_INTEGER } as const;

export default function register(RED: NodeAPI): void {
  const _ = messages(RED);
  function LimitNode(this: Node, flowConfig: LimitDef): void {
    const config = withNodeDefaults("limit", flowConfig);
    RED.nodes.createNode(this, config);
    const node = this;
    const status = throttledStatus(node, 250, COUNTS_STATUS_MAX);
    const table = connectionTable();
    let limiter: Limiter | null = null;
    let configError: Error | null = null;
    let grouping: AddressGrouping = { v4Prefix: 32, v6Prefix: 64 };
    const kind: LimitKeyKind = config.keyKind;
    const over: LimitOver = config.over;
    const property = config.keyProperty || "clientIp";
    const name = config.name || node.id;
    try {
      read.oneOf(kind, "keyKind", LIMIT_KEY_KINDS, D.keyKind);
      read.oneOf(over, "over", OVER, D.over);
      grouping = checkGrouping({ v4Prefix: read.int(config.v4Prefix, "v4Prefix", { fallback: D.v4Prefix, min: 0, max: 32 }), v6Prefix: read.int(config.v6Prefix, "v6Prefix", { fallback: D.v6Prefix, min: 0, max: 128 }) });
      const spec = {
        ...LIMIT_DEFAULTS,
        rate: read.number(config.rate, "rate", { fallback: D.rate, ...COUNT }),
        burst: read.number(config.burst, "burst", { fallback: D.burst, ...COUNT }),
        maxConcurrent: read.int(config.maxConcurrent, "maxConcurrent", { fallback: D.maxConcurrent, ...COUNT }),
        maxKeys: read.int(config.maxKeys, "maxKeys", { fallback: D.maxKeys, ...COUNT }),
      };
      limiter = new Limiter(spec, (burst) => {
        const event = limitEvent(burst, { limiter: name, keyKind: kind, action: over, spec });
        node.send([null, null, { topic: `limit/${event.phase}`, payload: event }]);
      });
      node.status({ fill: "grey", shape: "dot", text: _("limit.status.ready") });
    } catch (err) {
      configError = err as Error;
      node.error(_("limit.error.config", { reason: configError.message }));
      node.status({ fill: "red", shape: "ring", text: _("limit.status.badConfig") });
    }

    // A path through a missing object (`tenant.id` without `msg.tenant`) throws in Node-RED:
    // for a key that is just a missing value.
    const propertyOf = (msg: NodeMessage): unknown => {
      try {
        return RED.util.getMessageProperty(msg, property);
      } catch {
        return undefined;
      }
    };
    const showStatus = (): void => {
      if (limiter === null) return;
      const current = limiter;
      // Made when the status is shown (the throttle drops most), from the counts then.
      status.set(() => {
        const s = current.stats();
        return {
          fill: s.bursts > 0 ? "yellow" : "green",
          shape: "dot",
          text: countsText([
            [_("limit.status.allowed"), s.allowed],
            [_("limit.status.refused"), s.rejected],
            [_("limit.status.evicted"), s.evictions],
          ]),
        };
      });
    };
    const sweeper = setInterval(() => {
      if (limiter !== null && limiter.sweep() > 0) showStatus();
    }, 250);
    sweeper.unref();

    node.on("input", (msg, send, done) => {
      if (limiter === null) {
        // Fail closed: with a broken configuration nothing passes.
        done(configError ?? new Error(_("limit.error.notConfigured")));
        return;
      }
      const key = kind === "property" ? valueKey(propertyOf(msg)) ?? NO_KEY : messageKey(kind, msg, grouping);
      const admission = limiter.admit(key);
      const session = (msg as { _session?: unknown })._session;
      const id = isTrafficSession(session) ? session.id : null;
      (msg as { limit?: unknown }).limit = admission.allowed ? { key, allowed: true } : { key, allowed: false, reason: admission.reason };
      if (admission.allowed) {
        // The connection counts toward the cap until it ends, whoever owns it by then.
        if (id === null || !table.whenGone(id, admission.release)) admission.release();
        send([msg, null, null]);
      } else if (over === "output") {
        send([null, msg, null]);
      } else if (id !== null) {
        const claimed = table.claim(id, node.id);
        if (claimed !== undefined) void rejectConnection(claimed, over === "reject-rst" ? "rst" : "fin");
        else table.destroy(id);
      }
      showStatus();
      done();
    });

    node.on("close", (_removed: boolean, done: () => void) => {
      clearInterval(sweeper);
      limiter?.endAll();
      status.clear();
      done();
    });
  }
  RED.nodes.registerType("limit", LimitNode);
}

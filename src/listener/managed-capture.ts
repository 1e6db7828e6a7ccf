import { EventEmitter } from "node:events";
import type { ConnectionInfo } from "../connection";
import { connectionTable } from "../connection-table";
import { TrafficError } from "../errors";
import { nativeAvailability } from "../native";
import { installRules, removeRules, replaceRules, type ManagedRules, type RuleSpec } from "../nft/managed-rules";
import { udpSessions } from "../udp-table";
import { createCapture, type Capture } from "./capture";
import type { ListenerSettings, TransparentListenerConfig } from "./options";
import { parkListener, takeParkedListener } from "./parked-listener";
import type { TransparentListenerEvents } from "./transparent-listener";

/** The rule fields a caller chooses; mode, port and protocols follow the listener's settings. */
export type CaptureRules = Omit<RuleSpec, "mode" | "port" | "protocols">;

/**
 * How long a stopped owner's listener and rules wait for its successor. A redeploy starts
 * it within moments; a runtime that stops releases everything at once (releaseParkedNow).
 */
export const HANDOVER_GRACE_MS = 10_000;

/**
 * One owner's capture: the listener, the nft rules that divert traffic to it, and their
 * handover across a restart of the owner (a Node-RED redeploy stops a node and starts a new
 * instance with the same id). Created, it takes what its predecessor parked; `start` keeps
 * that socket and those rules when the settings allow, replaces them when not; `stop`
 * parks them for the successor, or closes them when the owner is gone for good.
 *
 * Connections come out as 'connection' events. Those accepted before `deliver` is called
 * (only when a predecessor handed over: its flow's successors may not exist yet) are held
 * and then delivered in order, except the ones that ended meanwhile.
 */
export class ManagedCapture extends EventEmitter<TransparentListenerEvents> {
  readonly owner: string;
  private listener: Capture | null = null;
  private rules: ManagedRules | null = null;
  private readonly held: ConnectionInfo[];
  private delivering: boolean;
  private stopping = false;
  private readonly graceMs: number;

  constructor(owner: string, options: { handoverGraceMs?: number } = {}) {
    super();
    this.owner = owner;
    this.graceMs = options.handoverGraceMs ?? HANDOVER_GRACE_MS;
    const handed = takeParkedListener(owner);
    this.held = handed === undefined ? [] : [...handed.waiting];
    this.delivering = handed === undefined;
    if (handed !== undefined) {
      // Owned from here: a failed start closes them like its own.
      this.listener = handed.listener;
      this.rules = handed.rules;
      this.serve(handed.listener);
    }
  }

  /** True when a predecessor handed its listener over: connections wait for `deliver`. */
  get holding(): boolean {
    return !this.delivering;
  }

  /** The running listener's settings, or null before a start and after a stop. */
  get settings(): ListenerSettings | null {
    return this.listener?.settings ?? null;
  }

  /** True while this capture's nft rules are installed. */
  get hasRules(): boolean {
    return this.rules !== null;
  }

  /** Connections and UDP sessions of the listener that are still open. */
  liveCount(): number {
    return this.listener?.liveCount() ?? 0;
  }

  /**
   * Listens with `config` and installs `rules` (null: none, and removes any handed over).
   * On failure whatever it holds is closed before the error is thrown.
   */
  async start(config: TransparentListenerConfig, rules: CaptureRules | null): Promise<ListenerSettings> {
    try {
      return await this.open(config, rules);
    } catch (err) {
      // Rules that could not be installed leave a listener nobody's traffic reaches: close it.
      if (this.rules !== null) await removeRules(this.rules).catch(() => undefined);
      this.rules = null;
      await this.listener?.close().catch(() => undefined);
      this.listener = null;
      throw err;
    }
  }

  /** Sends the held connections that are still open, and every later one as it comes. */
  deliver(): void {
    if (this.stopping || this.delivering) return;
    this.delivering = true;
    // Those that ended meanwhile left the table.
    for (const info of this.held.splice(0)) if (connectionTable().info(info.id) !== undefined || udpSessions().info(info.id) !== undefined) this.emit("connection", info);
  }

  /**
   * Ends this owner's use. `handover`: listening and capturing go on for a successor with the
   * same owner name (for the grace time), so no connection of that moment passes the policy
   * or finds nothing listening. Otherwise the rules are removed and the listener closed.
   */
  async stop(handover: boolean): Promise<void> {
    this.stopping = true;
    if (handover && this.listener !== null) {
      parkListener(this.owner, this.listener, this.rules, this.graceMs, this.held.splice(0));
      this.listener = null;
      this.rules = null;
      return;
    }
    await this.close();
  }

  private async open(config: TransparentListenerConfig, rules: CaptureRules | null): Promise<ListenerSettings> {
    const native = nativeAvailability();
    if (!native.available) throw new TrafficError("ERR_NATIVE_UNAVAILABLE", native.reason, "native addon");
    if (rules !== null && (config.mode ?? "redirect") === "plain") throw new TrafficError("ERR_NFT_CONFIG", "managed rules need mode redirect or tproxy", "mode");
    // The previous instance's socket serves on when the new settings need the same one;
    // otherwise it goes (rules first, as at a close) before this one binds the port.
    if (this.listener !== null && !this.listener.reconfigure(config)) {
      if (this.rules !== null) await removeRules(this.rules);
      this.rules = null;
      await this.listener.close();
      this.listener = null;
    }
    if (this.listener === null) {
      const l = createCapture(config, this.owner);
      this.serve(l);
      // Listening before the rules capture anything: a connection the rules divert must
      // find a socket, or under TPROXY its SYN is dropped until the client retries.
      await l.start();
      this.listener = l;
    }
    const s = this.listener.settings;
    if (rules !== null) {
      const spec: RuleSpec = { ...rules, mode: s.mode === "tproxy" ? "tproxy" : "redirect", port: s.port, protocols: s.protocol === "both" ? ["tcp", "udp"] : [s.protocol] };
      // Rules handed over stay in place when unchanged, and are replaced in one step when not.
      this.rules = this.rules === null ? await installRules(this.owner, spec) : await replaceRules(this.rules, this.owner, spec);
    } else if (this.rules !== null) {
      await removeRules(this.rules);
      this.rules = null;
    }
    return s;
  }

  private serve(l: Capture): void {
    l.removeAllListeners();
    l.on("connection", (info: ConnectionInfo) => {
      if (this.delivering) this.emit("connection", info);
      else this.held.push(info);
    });
    l.on("rejected", (reason, detail) => this.emit("rejected", reason, detail));
    l.on("error", (err) => this.emit("error", err));
  }

  private async close(): Promise<void> {
    // Rules first: nothing is diverted to the port once its listener is gone.
    const rules = this.rules;
    this.rules = null;
    if (rules !== null) await removeRules(rules);
    const listener = this.listener;
    this.listener = null;
    if (listener !== null) await listener.close();
  }
}

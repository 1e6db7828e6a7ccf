import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNodeAndOpen, openEditor, snapshot, type EditorSession } from "../support/browser";
import { systemCommand } from "../support/system";

const chromiumPath = systemCommand("chromium");

describe.skipIf(chromiumPath.skip)("editor dialog in a real browser: classify", () => {
  let editor: EditorSession | undefined;
  let page: Page;
  let url = "";

  beforeAll(async () => {
    editor = await openEditor(chromiumPath.path!, { paletteType: "classify" });
    page = editor.page;
    url = editor.url;
  }, 120_000);

  afterAll(async () => {
    await editor?.close();
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
    expect(editor!.pageErrors).toEqual([]);
  }, 60_000);
});

// The transparent in and original dst dialogs in Debian chromium against a real Node-RED:
// rows follow the choices, bad values are flagged, a deployed listener shows its status.
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNodeAndOpen, openEditor, snapshot, type EditorSession } from "../support/browser";
import { freePort } from "../support/net";
import { systemCommand } from "../support/system";

const chromiumPath = systemCommand("chromium");

describe.skipIf(chromiumPath.skip)("editor dialogs in a real browser: transparent in and original dst", () => {
  let editor: EditorSession | undefined;
  let page: Page;
  let url = "";
  let listenPort = 0;

  beforeAll(async () => {
    listenPort = await freePort();
    editor = await openEditor(chromiumPath.path!, { paletteType: "transparent in" });
    page = editor.page;
    url = editor.url;
  }, 120_000);

  afterAll(async () => {
    await editor?.close();
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

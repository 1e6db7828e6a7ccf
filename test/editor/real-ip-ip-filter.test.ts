import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNodeAndOpen, openEditor, snapshot, type EditorSession } from "../support/browser";
import { systemCommand } from "../support/system";

const chromiumPath = systemCommand("chromium");

describe.skipIf(chromiumPath.skip)("editor dialogs in a real browser: real ip and ip filter", () => {
  let editor: EditorSession | undefined;
  let page: Page;
  let url = "";

  beforeAll(async () => {
    editor = await openEditor(chromiumPath.path!, { paletteType: "real ip" });
    page = editor.page;
    url = editor.url;
  }, 120_000);

  afterAll(async () => {
    await editor?.close();
  });

  it("shows both nodes in the traffic category with their icons", async () => {
    for (const type of ["real ip", "ip filter"]) {
      const node = page.locator(`#red-ui-palette-traffic .red-ui-palette-node[data-palette-type="${type}"]`);
      await expect(node.count()).resolves.toBe(1);
      const icon = await node.locator(".red-ui-palette-icon").evaluate((el) => getComputedStyle(el).backgroundImage);
      expect(icon).toContain(type.replace(" ", "-") + ".svg");
    }
  });

  it("real ip: rejects a bad trusted CIDR as the user types, accepts a fix, deploys", async () => {
    await addNodeAndOpen(page, "real ip", 200, 120);
    const trusted = page.locator("#node-input-trusted");
    await trusted.waitFor();
    await trusted.fill("loopback, 10.0.0.1/8");
    await trusted.press("End");
    await expect(page.locator("#traffic-trusted-error").textContent()).resolves.toMatch(/host bits.*did you mean 10\.0\.0\.0\/8\?/);
    await expect(page.locator("#traffic-trusted-error").isVisible()).resolves.toBe(true);
    await snapshot(page, "real-ip-dialog-invalid");
    await trusted.fill("loopback, 10.0.0.0/255.0.0.0, 2001:db8::/32");
    await trusted.press("End");
    await expect(page.locator("#traffic-trusted-error").isVisible()).resolves.toBe(false);
    // One header, X-Forwarded-For for a new node.
    await expect(page.locator("#node-input-header").inputValue()).resolves.toBe("x-forwarded-for");
    await page.locator("#node-input-header").selectOption("forwarded");
    await page.locator("#node-dialog-ok").click();
    const saved = await page.evaluate(() => {
      const RED = (window as unknown as { RED: { nodes: { eachNode(cb: (n: Record<string, unknown>) => void): void } } }).RED;
      let found: Record<string, unknown> | undefined;
      RED.nodes.eachNode((n) => {
        if (n["type"] === "real ip") found = { trusted: n["trusted"], header: n["header"], sources: n["sources"], valid: n["valid"] };
      });
      return found;
    });
    expect(saved).toEqual({ trusted: "loopback, 10.0.0.0/255.0.0.0, 2001:db8::/32", header: "forwarded", sources: "", valid: true });
  });

  it("ip filter: flags a bad rule, labels outputs by rule, deploys with a status", async () => {
    await addNodeAndOpen(page, "ip filter", 450, 240);
    await page.locator("#node-input-rule-container").waitFor();
    await page.locator("#node-input-outputMode").selectOption("rules");
    const value = page.locator("#node-input-rule-container .rule-v").first();
    await value.fill("192.0.2.0/33");
    await value.press("End");
    await expect(page.locator(".rule-error").first().textContent()).resolves.toMatch(/prefix must be 0-32/);
    await snapshot(page, "ip-filter-dialog-invalid");
    await value.fill("192.0.2.0/24");
    await value.press("End");
    await expect(page.locator(".rule-error").first().textContent()).resolves.toBe("");
    await page.locator("#node-dialog-ok").click();
    const ports = await page.locator(".red-ui-flow-node-group").last().locator(".red-ui-flow-port-output").count();
    expect(ports).toBe(2); // one rule + "no match"
    await page.locator("#red-ui-header-button-deploy").click();
    await page.locator(".red-ui-flow-node-status-label", { hasText: "1 rule" }).waitFor({ timeout: 15_000 });
    await snapshot(page, "ip-filter-deployed");
    const deployed = (await (await fetch(`${url}/flows`)).json()) as Array<{ type: string; rules?: unknown; outputs?: number }>;
    expect(deployed.find((n) => n.type === "ip filter")).toMatchObject({ outputs: 2, rules: [{ action: "allow", vt: "cidr", v: "192.0.2.0/24" }] });
  });
});

// The limit node's dialog in a real browser: palette entry and icon, the fields shown per
// key kind, validation as the user types, the saved values, the deployed status and the
// rendered help.
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { addNodeAndOpen, editorPerSuite, snapshot } from "../support/browser";
import { systemCommand } from "../support/system";

const chromiumPath = systemCommand("chromium");

type RedWindow = { RED: { nodes: { eachNode(cb: (n: Record<string, unknown>) => void): void }; sidebar: { help: { show(type: string): void } } } };

/** True when the editor marks the field invalid (its validator said no). */
function invalid(field: ReturnType<Page["locator"]>): Promise<boolean> {
  return field.evaluate((el) => el.classList.contains("input-error"));
}

function saved(page: Page): Promise<Record<string, unknown> | undefined> {
  return page.evaluate(() => {
    let found: Record<string, unknown> | undefined;
    (window as unknown as RedWindow).RED.nodes.eachNode((n) => {
      if (n["type"] === "limit" && found === undefined) {
        found = {};
        for (const key of ["keyKind", "rate", "burst", "v6Prefix", "maxConcurrent", "over", "valid"]) found[key] = n[key];
      }
    });
    return found;
  });
}

describe.skipIf(chromiumPath.skip)("editor in a real browser: limit", () => {
  const editor = editorPerSuite(chromiumPath.path!, "limit");

  it("sits in the traffic category with its icon", async () => {
    const node = editor.page.locator('#red-ui-palette-traffic .red-ui-palette-node[data-palette-type="limit"]');
    await expect(node.count()).resolves.toBe(1);
    const icon = await node.locator(".red-ui-palette-icon").evaluate((el) => getComputedStyle(el).backgroundImage);
    expect(icon).toContain("limit.svg");
  });

  it("shows the fields of the chosen key, flags bad limits as typed, saves and deploys", async () => {
    const page = editor.page;
    await addNodeAndOpen(page, "limit", 250, 140);
    // A new node: 100/s, burst 100, reset, per client address with the prefix fields shown.
    await expect(page.locator("#node-input-rate").inputValue()).resolves.toBe("100");
    await expect(page.locator("#node-input-burst").inputValue()).resolves.toBe("100");
    await expect(page.locator("#node-input-over").inputValue()).resolves.toBe("reject-rst");
    await expect(page.locator(".traffic-limit-prefix").isVisible()).resolves.toBe(true);
    await expect(page.locator(".traffic-limit-property").isVisible()).resolves.toBe(false);
    await page.locator("#node-input-keyKind").selectOption("property");
    await expect(page.locator(".traffic-limit-property").isVisible()).resolves.toBe(true);
    await expect(page.locator(".traffic-limit-prefix").isVisible()).resolves.toBe(false);
    await page.locator("#node-input-keyKind").selectOption("client-ip");

    const burst = page.locator("#node-input-burst");
    await burst.fill("0");
    await burst.press("Tab");
    await expect(invalid(burst)).resolves.toBe(true);
    await snapshot(page, "limit-dialog-invalid");
    await burst.fill("20");
    await burst.press("Tab");
    await expect(invalid(burst)).resolves.toBe(false);
    const v6 = page.locator("#node-input-v6Prefix");
    await v6.fill("129");
    await v6.press("Tab");
    await expect(invalid(v6)).resolves.toBe(true);
    await v6.fill("56");
    await v6.press("Tab");
    await expect(invalid(v6)).resolves.toBe(false);
    await page.locator("#node-input-maxConcurrent").fill("50");
    await page.locator("#node-input-over").selectOption("output");
    await page.locator("#node-dialog-ok").click();
    expect(await saved(page)).toMatchObject({ keyKind: "client-ip", rate: 100, burst: "20", v6Prefix: "56", maxConcurrent: "50", over: "output", valid: true });
    const ports = await page.locator(".red-ui-flow-node-group").last().locator(".red-ui-flow-port-output").count();
    expect(ports).toBe(3);
    await page.locator("#red-ui-header-button-deploy").click();
    await page.locator(".red-ui-flow-node-status-label", { hasText: "ready" }).waitFor({ timeout: 15_000 });
    await snapshot(page, "limit-deployed");
    const deployed = (await (await fetch(`${editor.session.url}/flows`)).json()) as Array<Record<string, unknown>>;
    expect(deployed.find((n) => n["type"] === "limit")).toMatchObject({ rate: 100, burst: "20", maxConcurrent: "50", over: "output" });
    expect(editor.session.pageErrors).toEqual([]);
  });

  it("flags a limit that limits nothing", async () => {
    const page = editor.page;
    await addNodeAndOpen(page, "limit", 250, 300);
    await page.locator("#node-input-rate").fill("0");
    await page.locator("#node-input-maxConcurrent").fill("0");
    await page.locator("#node-input-maxConcurrent").press("Tab");
    await expect(invalid(page.locator("#node-input-maxConcurrent"))).resolves.toBe(true);
    await page.locator("#node-input-maxConcurrent").fill("10");
    await page.locator("#node-input-maxConcurrent").press("Tab");
    await expect(invalid(page.locator("#node-input-maxConcurrent"))).resolves.toBe(false);
    await page.locator("#node-dialog-cancel").click();
  });

  it("renders its help with inputs, outputs and details", async () => {
    const page = editor.page;
    await page.evaluate(() => (window as unknown as RedWindow).RED.sidebar.help.show("limit"));
    await expect.poll(() => page.locator("h1.red-ui-help-title").textContent(), { timeout: 10_000 }).toBe("limit");
    const help = page.locator("h1.red-ui-help-title + .red-ui-help");
    await expect(help.locator("h3", { hasText: "Outputs" }).count()).resolves.toBe(1);
    // Each property line became a definition entry (a colon in one would end the list).
    await expect(help.locator("dl.message-properties dt").count()).resolves.toBe(6);
    await expect(help.textContent()).resolves.toMatch(/token bucket per key/);
  });
});

// The enforce/shadow setting of ip filter, classify and forward, and classify's JA4/JA3
// rule condition, in the real editor: set in the dialog, deployed, shown in the status.
import { describe, expect, it } from "vitest";
import { addNodeAndOpen, editorPerSuite, snapshot } from "../support/browser";
import { systemCommand } from "../support/system";

const chromiumPath = systemCommand("chromium");

type Deployed = Array<{ type: string; enforcement?: string; rules?: Array<Record<string, unknown>>; action?: string }>;

describe.skipIf(chromiumPath.skip)("editor: enforce or shadow, and fingerprint rules, in a real browser", () => {
  const editor = editorPerSuite(chromiumPath.path!, "classify");

  it("each policy dialog offers enforce (the default) and shadow; shadow deploys and shows in the status", async () => {
    const page = editor.page;
    // ip filter
    await addNodeAndOpen(page, "ip filter", 200, 100);
    const mode = page.locator("#node-input-enforcement");
    await expect(mode.inputValue()).resolves.toBe("enforce");
    await mode.selectOption("shadow");
    await page.locator("#node-dialog-ok").click();
    // classify, with a JA4 prefix rule: a misplaced wildcard is flagged as typed
    await addNodeAndOpen(page, "classify", 200, 220);
    await expect(page.locator("#node-input-enforcement").inputValue()).resolves.toBe("enforce");
    // A rule shows as one line until opened.
    await page.locator("#node-input-rule-container .traffic-rule-summary").first().click();
    const fp = page.locator("#node-input-rule-container .rule-fingerprints").first();
    await fp.fill("t13*_8daaf6152771");
    await fp.press("End");
    await expect(page.locator("#node-input-rule-container .rule-fingerprints-error").first().textContent()).resolves.toMatch(/trailing \*/);
    await fp.fill("t13d1516h2_*, 0149f47eabf9a20d0893e2a44e5a6323");
    await fp.press("End");
    await expect(page.locator("#node-input-rule-container .rule-fingerprints-error").first().textContent()).resolves.toBe("");
    await page.locator("#node-input-enforcement").selectOption("shadow");
    await snapshot(page, "classify-dialog-shadow-ja4");
    await page.locator("#node-dialog-ok").click();
    // forward: the mode is a reject setting; in shadow the target settings apply again
    await addNodeAndOpen(page, "forward", 200, 340);
    const row = page.locator(".traffic-enforcement-row");
    await expect(row.isVisible()).resolves.toBe(false);
    await page.locator("#node-input-action").selectOption("reject");
    await expect(row.isVisible()).resolves.toBe(true);
    await expect(page.locator("#node-input-targetType").isVisible()).resolves.toBe(false);
    await page.locator("#node-input-enforcement").selectOption("shadow");
    await expect(page.locator("#node-input-targetType").isVisible()).resolves.toBe(true);
    await snapshot(page, "forward-dialog-shadow");
    await page.locator("#node-dialog-ok").click();

    await page.locator("#red-ui-header-button-deploy").click();
    await page.locator(".red-ui-flow-node-status-label", { hasText: "shadow, 1 rule" }).first().waitFor({ timeout: 15_000 });
    await page.locator(".red-ui-flow-node-status-label", { hasText: /^shadow · would reject 0/ }).waitFor({ timeout: 15_000 });
    const deployed = (await (await fetch(`${editor.session.url}/flows`)).json()) as Deployed;
    expect(deployed.find((n) => n.type === "ip filter")).toMatchObject({ enforcement: "shadow" });
    expect(deployed.find((n) => n.type === "classify")).toMatchObject({ enforcement: "shadow", rules: [{ fingerprints: "t13d1516h2_*, 0149f47eabf9a20d0893e2a44e5a6323" }] });
    expect(deployed.find((n) => n.type === "forward")).toMatchObject({ action: "reject", enforcement: "shadow" });
    await snapshot(page, "policy-shadow-deployed");
    expect(editor.session.pageErrors).toEqual([]);
  });
});

import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNodeAndOpen, openEditor, snapshot, type EditorSession } from "../support/browser";
import { IS_ROOT, systemCommand } from "../support/system";

const chromiumPath = systemCommand("chromium");
const setpriv = systemCommand("setpriv");

// Node-RED runs without CAP_NET_ADMIN and CAP_NET_RAW (either allows transparent sockets); the dialog asks the admin endpoint what this host
// allows and warns before the operator deploys a TPROXY listener that cannot work.
describe.skipIf(chromiumPath.skip || setpriv.skip || !IS_ROOT)("transparent in dialog warns about a missing capability", () => {
  let editor: EditorSession | undefined;
  let page: Page;

  beforeAll(async () => {
    editor = await openEditor(chromiumPath.path!, { paletteType: "transparent in", wrap: [setpriv.path!, "--inh-caps=-net_admin,-net_raw", "--bounding-set=-net_admin,-net_raw", "--"] });
    page = editor.page;
  }, 120_000);

  afterAll(async () => {
    await editor?.close();
  });

  it("names CAP_NET_ADMIN when TPROXY is chosen, and says nothing for plain", async () => {
    await addNodeAndOpen(page, "transparent in", 200, 120);
    const warning = page.locator("#traffic-capability-warning");
    await page.locator("#node-input-mode").selectOption("tproxy");
    await warning.waitFor({ state: "visible" });
    expect(await warning.textContent()).toMatch(/missing CAP_NET_ADMIN/);
    await snapshot(page, "transparent-in-capability-warning");
    await page.locator("#node-input-mode").selectOption("plain");
    await warning.waitFor({ state: "hidden" });
    // The bind address offers this host's addresses.
    expect(await page.locator("#traffic-address-list option[value='127.0.0.1']").count()).toBe(1);
    await page.locator("#node-dialog-cancel").click();
  });
});

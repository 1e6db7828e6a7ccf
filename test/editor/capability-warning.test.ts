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
const setpriv = systemCommand("setpriv");

// Node-RED runs without CAP_NET_ADMIN; the dialog asks the admin endpoint what this host
// allows and warns before the operator deploys a TPROXY listener that cannot work.
describe.skipIf(chromiumPath.skip || setpriv.skip || !IS_ROOT)("transparent in dialog warns about a missing capability", () => {
  let dir = "";
  let red: { child: ChildProcess; url: string } | undefined;
  let browser: { browser: Browser; close(): Promise<void> } | undefined;
  let page: Page;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-editor-caps-"));
    const port = await freePort();
    prepareUserDir(dir, { port, flows: [{ id: "t1", type: "tab", label: "Flow 1" }] });
    red = await startNodeRed(dir, { port, wrap: [setpriv.path!, "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"] });
    browser = await launchChromium(chromiumPath.path!);
    page = await browser.browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${red!.url}/`);
    await page.locator(`.red-ui-palette-node[data-palette-type="transparent in"]`).waitFor({ timeout: 60_000 });
  }, 120_000);

  afterAll(async () => {
    if (browser) await browser.close();
    if (red) await stopNodeRed(red.child);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
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

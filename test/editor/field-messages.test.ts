// Every dialog in a real browser: each checked field, given a bad value, says why under
// the field (not only a red border); a fresh node shows no message and no empty row; labels
// start with a capital and fit their line.
import type { Page } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";
import { addNodeAndOpen, editorPerSuite, snapshot } from "../support/browser";
import { systemCommand } from "../support/system";

const chromiumPath = systemCommand("chromium");

type Step = ["fill", string, string] | ["select", string, string] | ["check", string, boolean];
/** Steps that make the field shown and bad, and what its message must say. */
interface Case {
  readonly field: string;
  readonly steps: readonly Step[];
  readonly says: RegExp;
}

const RANGE_PORT = /must be 1 to 65535/;
const DIALOGS: ReadonlyArray<{ type: string; cases: readonly Case[] }> = [
  {
    type: "transparent in",
    cases: [
      { field: "port", steps: [["fill", "#node-input-port", "70000"]], says: RANGE_PORT },
      { field: "maxConnections", steps: [["fill", "#node-input-maxConnections", "many"]], says: /whole number/ },
      { field: "proxyFrom", steps: [["select", "#node-input-proxyProtocol", "required"], ["fill", "#node-input-proxyFrom", ""]], says: /required/ },
      { field: "proxyFrom", steps: [["fill", "#node-input-proxyFrom", "10.0.0.1/8"]], says: /host bits/ },
      { field: "unclaimedTimeout", steps: [["fill", "#node-input-unclaimedTimeout", "soon"]], says: /number of seconds/ },
      { field: "ruleDestinations", steps: [["check", "#node-input-manageRules", true], ["fill", "#node-input-ruleDestinations", ""]], says: /required/ },
      { field: "rulePorts", steps: [["fill", "#node-input-rulePorts", "80, 80-70000"]], says: /80-70000 is not a port/ },
      { field: "ruleMark", steps: [["fill", "#node-input-ruleMark", "0"]], says: /must be 1 to 4294967295/ },
    ],
  },
  {
    type: "forward",
    cases: [
      { field: "host", steps: [["select", "#node-input-targetType", "fixed"], ["fill", "#node-input-host", "bad host!"]], says: /not a host name or IP address/ },
      { field: "port", steps: [["fill", "#node-input-port", "70000"]], says: RANGE_PORT },
      { field: "mark", steps: [["fill", "#node-input-mark", "mark"]], says: /whole number/ },
      { field: "connectTimeout", steps: [["fill", "#node-input-connectTimeout", "soon"]], says: /number of seconds/ },
      { field: "idleTimeout", steps: [["fill", "#node-input-idleTimeout", "90000"]], says: /must be 0 to 86400/ },
    ],
  },
  {
    type: "flow source",
    cases: [
      { field: "ports", steps: [["fill", "#node-input-ports", "80, http"]], says: /http is not a port/ },
      { field: "cidrs", steps: [["fill", "#node-input-cidrs", "10.0.0.1/8"]], says: /host bits/ },
      { field: "cgroupId", steps: [["fill", "#node-input-cgroupId", "web"]], says: /whole number/ },
      { field: "batchMs", steps: [["select", "#node-input-delivery", "batch"], ["fill", "#node-input-batchMs", "5"]], says: /at least 10/ },
      { field: "ringKiB", steps: [["fill", "#node-input-ringKiB", "1000"]], says: /power of two/ },
      { field: "firstBytes", steps: [["fill", "#node-input-firstBytes", "600"]], says: /must be 0 to 512/ },
    ],
  },
  {
    type: "real ip",
    cases: [
      { field: "trusted", steps: [["fill", "#node-input-trusted", "loopback, 10.0.0.1/8"]], says: /host bits/ },
      { field: "hops", steps: [["fill", "#node-input-hops", "2000"]], says: /must be 0 to 1000/ },
    ],
  },
  {
    type: "mqtt events",
    cases: [
      { field: "topic", steps: [["fill", "#node-input-topic", "traffic/#"]], says: /no \+ or #/ },
      { field: "expiry", steps: [["fill", "#node-input-expiry", "1h"]], says: /whole number/ },
      { field: "maxQueued", steps: [["fill", "#node-input-maxQueued", "0"]], says: /must be 1 to/ },
      { field: "maxInFlight", steps: [["fill", "#node-input-maxInFlight", "70000"]], says: /must be 1 to 65535/ },
      { field: "statsInterval", steps: [["fill", "#node-input-statsInterval", "often"]], says: /whole number/ },
    ],
  },
  {
    type: "classify",
    cases: [
      { field: "maxBytes", steps: [["fill", "#node-input-maxBytes", "2000000"]], says: /must be 0 to 1048576/ },
      { field: "timeoutMs", steps: [["fill", "#node-input-timeoutMs", "5s"]], says: /whole number/ },
      { field: "serverFirstMs", steps: [["fill", "#node-input-serverFirstMs", "-1"]], says: /whole number/ },
    ],
  },
];

async function act(page: Page, step: Step): Promise<void> {
  const field = page.locator(step[1]);
  if (step[0] === "select") await field.selectOption(step[2]);
  else if (step[0] === "check") await field.setChecked(step[2]);
  else {
    await field.fill(step[2]);
    await field.press("Tab");
  }
}

/** Checks the open dialog (`form`): no message on a fresh node, no empty rows, labels that fit. */
async function checkFreshDialog(page: Page, form: string, what: string): Promise<void> {
  const report = await page.evaluate((sel) => {
    const root = document.querySelector(sel)!;
    const visible = (el: Element): boolean => (el as HTMLElement).offsetParent !== null && el.getBoundingClientRect().height > 0;
    const messages = Array.from(root.querySelectorAll(".traffic-field-error")).filter(visible).map((el) => el.textContent);
    // A row shown on screen whose only visible part is an empty label is a gap.
    const empty = Array.from(root.querySelectorAll(".form-row")).filter(visible).filter((row) => {
      const parts = Array.from(row.children).filter(visible);
      return parts.every((el) => el.tagName === "LABEL" && (el.textContent ?? "").trim() === "");
    }).length;
    const labels = Array.from(root.querySelectorAll(".form-row label")).filter(visible).flatMap((el) => {
      const text = (el.textContent ?? "").trim();
      if (text === "") return [];
      const style = getComputedStyle(el);
      const lines = Math.round(el.getBoundingClientRect().height / parseFloat(style.lineHeight));
      const cut = el.scrollWidth > el.clientWidth + 1 || lines > 1;
      const lower = text.charAt(0) !== text.charAt(0).toUpperCase();
      return cut || lower ? [`${text}${cut ? " (cut off)" : ""}${lower ? " (lower case)" : ""}`] : [];
    });
    return { messages, empty, labels };
  }, form);
  expect(report.messages, `${what}: messages on a fresh node`).toEqual([]);
  expect(report.empty, `${what}: empty rows`).toBe(0);
  expect(report.labels, `${what}: labels`).toEqual([]);
}

async function expectMessages(page: Page, what: string, cases: readonly Case[]): Promise<void> {
  for (const c of cases) {
    for (const step of c.steps) await act(page, step);
    const line = page.locator(`#traffic-${c.field}-error`);
    await expect(line.isVisible(), `${what} ${c.field}: message shown`).resolves.toBe(true);
    await expect(line.textContent(), `${what} ${c.field}`).resolves.toMatch(c.says);
  }
}

describe.skipIf(chromiumPath.skip)("every dialog says why a field is invalid", () => {
  const editor = editorPerSuite(chromiumPath.path!, "classify");
  let x = 120;

  // A failed case leaves its dialogs open: close them for the next one.
  afterEach(async () => {
    const page = editor.page;
    for (let tries = 0; tries < 20 && (await page.locator(".red-ui-tray").count()) > 0; tries++) {
      for (const cancel of ["#node-config-dialog-cancel", "#node-dialog-cancel"]) {
        if (await page.locator(cancel).isVisible()) await page.locator(cancel).click();
      }
      await page.waitForTimeout(300);
    }
    await page.locator(".red-ui-tray").waitFor({ state: "detached" });
  });

  for (const dialog of DIALOGS) {
    it(dialog.type, async () => {
      const page = editor.page;
      await addNodeAndOpen(page, dialog.type, (x += 70), 120);
      await checkFreshDialog(page, "#dialog-form", dialog.type);
      await expectMessages(page, dialog.type, dialog.cases);
      await snapshot(page, `field-messages-${dialog.type.replace(/ /g, "-")}`);
      await page.locator("#node-dialog-cancel").click();
      await page.locator(".red-ui-tray").waitFor({ state: "detached" });
      expect(editor.session.pageErrors).toEqual([]);
    }, 60_000);
  }

  it("ip filter and original dst: fresh dialogs are tidy", async () => {
    const page = editor.page;
    await addNodeAndOpen(page, "ip filter", (x += 70), 200);
    await checkFreshDialog(page, "#dialog-form", "ip filter");
    await page.locator("#node-dialog-cancel").click();
    await page.locator(".red-ui-tray").waitFor({ state: "detached" });
    await addNodeAndOpen(page, "original dst", (x += 70), 200);
    await checkFreshDialog(page, "#dialog-form", "original dst");
    await page.locator("#node-dialog-cancel").click();
    await page.locator(".red-ui-tray").waitFor({ state: "detached" });
  }, 60_000);

  it("traffic broker", async () => {
    const page = editor.page;
    await addNodeAndOpen(page, "mqtt events", (x += 70), 280);
    await page.locator("#node-input-btn-broker-add").click();
    const form = "#node-config-dialog-edit-form";
    await page.locator(form).waitFor();
    await checkFreshDialog(page, form, "traffic broker");
    await expectMessages(page, "traffic broker", [
      { field: "embeddedPort", steps: [["fill", "#node-config-input-embeddedPort", "99999"]], says: RANGE_PORT },
      { field: "keepalive", steps: [["fill", "#node-config-input-keepalive", "1m"]], says: /whole number/ },
      { field: "reconnectPeriod", steps: [["fill", "#node-config-input-reconnectPeriod", "10"]], says: /must be 100 to 3600000/ },
      { field: "sessionExpiry", steps: [["check", "#node-config-input-cleanSession", false], ["fill", "#node-config-input-sessionExpiry", "1d"]], says: /whole number/ },
      { field: "broker", steps: [["select", "#node-config-input-mode", "external"], ["fill", "#node-config-input-broker", "bad host!"]], says: /not a host name, IP address or URL/ },
      { field: "broker", steps: [["fill", "#node-config-input-broker", "http://broker.example"]], says: /mqtt:\/\//},
      { field: "port", steps: [["fill", "#node-config-input-port", "0"]], says: RANGE_PORT },
    ]);
    await snapshot(page, "field-messages-traffic-broker");
    await page.locator("#node-config-dialog-cancel").click();
    await page.locator(form).waitFor({ state: "detached" });
    expect(editor.session.pageErrors).toEqual([]);
  }, 60_000);
});

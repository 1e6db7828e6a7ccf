import type { Locator, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { addNodeAndOpen, openEditor, snapshot, type EditorSession } from "../support/browser";
import { vector } from "../support/classify-vectors";
import { systemCommand } from "../support/system";
import { until } from "../support/wait";

const chromiumPath = systemCommand("chromium");

type Rule = Record<string, string>;
type RedWindow = {
  RED: {
    nodes: {
      filterNodes(f: { type: string }): Array<{ id: string; rules: Rule[] }>;
      node(id: string): { id: string; rules: Rule[] };
      import(n: unknown): void;
      addLink(l: unknown): void;
      dirty(d: boolean): void;
    };
    view: { redraw(full: boolean): void };
    comms: { subscribe(topic: string, cb: (topic: string, msg: { name?: string; msg?: string }) => void): void };
  };
  classifyDebug?: Array<{ name?: string; msg?: string }>;
};

/** The rows of the open classify dialog, one per rule. */
function ruleRows(page: Page): Locator {
  return page.locator("#node-input-rule-container li");
}

/** A rule row's one-line summary, and whether its conditions are shown. */
async function rowState(row: Locator): Promise<{ summary: string; open: boolean; invalid: boolean }> {
  const summary = row.locator(".traffic-rule-summary");
  return {
    // The parts a reader sees one after the other (number, name, conditions, output).
    // biome-ignore lint/performance/useDomNodeTextContent: innerText is the rendered text (hidden parts left out), what a reader sees.
    summary: await summary.evaluate((el) => Array.from(el.children).map((c) => (c as HTMLElement).innerText.trim()).filter((t) => t !== "").join(" ")),
    open: await row.locator(".traffic-rule-body").isVisible(),
    invalid: (await summary.getAttribute("class"))!.includes("traffic-rule-invalid"),
  };
}

/** Which condition inputs of a row carry the red mark (on the box a user sees), with their shown reasons. */
async function markedFields(row: Locator): Promise<Record<string, string>> {
  return row.evaluate((el) => {
    const out: Record<string, string> = {};
    for (const input of Array.from(el.querySelectorAll(".traffic-rule-body input[class*=rule-]"))) {
      // A multi-select (typedInput) shows its box right after the input it keeps the value in.
      const box = input.classList.contains("red-ui-typedInput") ? input.nextElementSibling! : input;
      if (!box.classList.contains("input-error")) continue;
      const key = Array.from(input.classList).find((c) => c.startsWith("rule-"))!.slice("rule-".length);
      const line = el.querySelector(`.rule-${key}-error`) as HTMLElement;
      out[key] = line.offsetParent !== null ? (line.textContent ?? "") : "(no reason shown)";
    }
    return out;
  });
}

/** Types into a row's condition and leaves the field as a user would (End, then the value is read). */
async function typeCondition(row: Locator, key: string, value: string): Promise<void> {
  await row.locator(`.rule-${key}`).fill(value);
  await row.locator(`.rule-${key}`).press("End");
}

/** The protocols a row's multi-select shows checked (its menu opened and closed again). */
async function checkedProtocols(page: Page, row: Locator): Promise<string[]> {
  await row.locator(".red-ui-typedInput-option-trigger").click();
  const menu = page.locator(".red-ui-typedInput-options:visible");
  await menu.waitFor();
  const checked = await menu.locator("a").evaluateAll((links) =>
    links.filter((a) => (a.querySelector("input[type=checkbox]") as HTMLInputElement).checked).map((a) => a.getAttribute("value")!),
  );
  await page.keyboard.press("Escape");
  await menu.waitFor({ state: "hidden" });
  return checked;
}

/** Labels of the open rule that start in lower case or do not fit their box. */
async function badLabels(row: Locator): Promise<string[]> {
  return row.locator(".traffic-rule-body > label").evaluateAll((labels) =>
    labels.flatMap((el) => {
      const text = (el.textContent ?? "").trim();
      const cut = el.scrollWidth > el.clientWidth + 1 || el.getBoundingClientRect().height > 2 * parseFloat(getComputedStyle(el).fontSize);
      const lower = text.charAt(0) !== text.charAt(0).toUpperCase();
      return cut || lower ? [`${text}${cut ? " (cut off)" : ""}${lower ? " (lower case)" : ""}`] : [];
    }),
  );
}

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

  // A failed case leaves its dialog open; the next case needs the workspace.
  afterEach(async () => {
    const cancel = page.locator("#node-dialog-cancel");
    if (await cancel.isVisible()) await cancel.click();
    await page.locator(".red-ui-tray").waitFor({ state: "detached" });
  });

  it("shows classify in the traffic category with its icon", async () => {
    const node = page.locator(`#red-ui-palette-traffic .red-ui-palette-node[data-palette-type="classify"]`);
    await expect(node.count()).resolves.toBe(1);
    const icon = await node.locator(".red-ui-palette-icon").evaluate((el) => getComputedStyle(el).backgroundImage);
    expect(icon).toContain("classify.svg");
  });

  it("rules are one line until opened; a bad condition marks its own field with the reason; protocols are a multi-select; deployed outputs follow the rules", async () => {
    await addNodeAndOpen(page, "classify", 250, 150);
    const rows = ruleRows(page);
    await expect(rows.count()).resolves.toBe(1);
    const first = rows.nth(0);
    await expect(rowState(first)).resolves.toEqual({ summary: "1 · tls · tls → output 1", open: false, invalid: false });

    // Opened by a click; the labels of its conditions read whole.
    await first.locator(".traffic-rule-summary").click();
    await expect(rowState(first)).resolves.toMatchObject({ open: true });
    await expect(first.locator(".traffic-rule-summary").getAttribute("aria-expanded")).resolves.toBe("true");
    await expect(badLabels(first)).resolves.toEqual([]);
    await expect(markedFields(first)).resolves.toEqual({});

    // Each bad condition marks that input, and only it, with why.
    await typeCondition(first, "hosts", "*.*.example.test");
    await expect(markedFields(first)).resolves.toEqual({ hosts: "bad wildcard *.*.example.test" });
    await typeCondition(first, "ports", "443, 70000");
    await expect(markedFields(first)).resolves.toEqual({ hosts: "bad wildcard *.*.example.test", ports: expect.stringMatching(/70000/) });
    await typeCondition(first, "ports", "");
    await typeCondition(first, "hosts", "api.example.test");
    await typeCondition(first, "clients", "10.0.0.1/8");
    await expect(markedFields(first)).resolves.toEqual({ clients: expect.stringMatching(/host bits/) });
    // Closed from the keyboard, the line says the rule is invalid and why.
    await first.locator(".traffic-rule-summary").focus();
    await page.keyboard.press("Enter");
    const closedBad = await rowState(first);
    expect(closedBad).toMatchObject({ open: false, invalid: true });
    await expect(first.locator(".traffic-rule-summary-error").textContent()).resolves.toMatch(/^Client CIDRs: .*host bits/);
    await snapshot(page, "classify-rule-invalid-closed");
    await page.keyboard.press(" ");
    await expect(rowState(first)).resolves.toMatchObject({ open: true });
    await typeCondition(first, "clients", "");
    await expect(markedFields(first)).resolves.toEqual({});

    // A new rule opens for editing and the other one closes.
    await page.locator(".node-input-rule-container-row .red-ui-editableList-addButton").first().click();
    await expect(rows.count()).resolves.toBe(2);
    const second = rows.nth(1);
    await expect(rowState(first)).resolves.toEqual({ summary: "1 · tls · tls · sni/host api.example.test → output 1", open: false, invalid: false });
    await expect(rowState(second)).resolves.toMatchObject({ open: true });
    await second.locator(".rule-name").fill("web");
    // Protocols by keyboard: open the menu, tick tls (the first) and http2 (two further down), close.
    await expect(second.locator(".red-ui-typedInput-container").textContent()).resolves.toContain("any protocol");
    await second.locator(".red-ui-typedInput-option-trigger").focus();
    await page.keyboard.press("Enter");
    await page.locator(".red-ui-typedInput-options:visible").waitFor();
    await page.keyboard.press("Enter");
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("Enter");
    await snapshot(page, "classify-protocols-menu");
    await page.keyboard.press("Escape");
    await page.locator(".red-ui-typedInput-options:visible").waitFor({ state: "hidden" });
    await expect(second.locator(".red-ui-typedInput-container").textContent()).resolves.toContain("tls, http2");
    await typeCondition(second, "hosts", "example.test, *.example.test");
    await expect(rowState(second)).resolves.toMatchObject({ summary: "2 · web · tls, http2 · sni/host example.test, *.example.test → output 2", invalid: false });
    await snapshot(page, "classify-dialog");
    await page.locator("#node-dialog-ok").click();
    await page.locator(".red-ui-tray").waitFor({ state: "detached" });
    const ports = page.locator("#red-ui-workspace-chart .red-ui-flow-port-output");
    await expect(ports.count()).resolves.toBe(3);

    // Injects of recorded first bytes into it, its outputs to named debug nodes.
    const samples = ["openssl-s_client", "curl-https", "curl-h2-prior-knowledge", "curl-http1", "ssh"];
    const payloads = samples.map((name) => ({ name, bytes: JSON.stringify([...vector(name).bytes]) }));
    const classifyId = await page.evaluate((sent) => {
      const w = window as unknown as RedWindow;
      const id = w.RED.nodes.filterNodes({ type: "classify" })[0]!.id;
      const injects = sent.map(({ name, bytes }, i) => ({
        id: `inj${i}`, type: "inject", z: "t1", name, props: [{ p: "payload" }], repeat: "", crontab: "", once: false, onceDelay: 0.1, topic: "",
        payload: bytes, payloadType: "bin", x: 160, y: 300 + i * 50, wires: [],
      }));
      const debugs = ["tls", "web", "other"].map((name, i) => ({ id: `dbg${i}`, type: "debug", z: "t1", name, active: true, complete: "classification.protocol", x: 500, y: 300 + i * 50, wires: [] }));
      w.RED.nodes.import([...injects, ...debugs]);
      // Links to a node outside an import are dropped by the import: made here instead.
      for (let i = 0; i < sent.length; i++) w.RED.nodes.addLink({ source: w.RED.nodes.node(`inj${i}`), sourcePort: 0, target: w.RED.nodes.node(id) });
      for (let port = 0; port < 3; port++) w.RED.nodes.addLink({ source: w.RED.nodes.node(id), sourcePort: port, target: w.RED.nodes.node(`dbg${port}`) });
      w.RED.nodes.dirty(true);
      w.RED.view.redraw(true);
      w.classifyDebug = [];
      w.RED.comms.subscribe("debug", (_topic, msg) => w.classifyDebug!.push(msg));
      return id;
    }, payloads);
    await page.locator("#red-ui-header-button-deploy").click();
    // The runtime's flows hold the node once the deploy went through (the button's state can
    // change before the request completes).
    let flows: Array<Record<string, unknown>> = [];
    await until(async () => {
      flows = (await (await fetch(`${url}/flows`)).json()) as Array<Record<string, unknown>>;
      return flows.some((n) => n["id"] === classifyId) && flows.some((n) => n["id"] === "dbg2");
    }, "the deployed flow", 30_000, 200);
    const deployed = flows.find((n) => n["id"] === classifyId)!;
    expect(deployed["outputs"]).toBe(3);
    expect(deployed["rules"]).toEqual([
      { name: "tls", protocols: "tls", hosts: "api.example.test" },
      { name: "web", protocols: "tls, http2", hosts: "example.test, *.example.test" },
    ]);
    const byDebug: Record<string, string[]> = { tls: [], web: [], other: [] };
    for (let i = 0; i < samples.length; i++) {
      const before = await page.evaluate(() => (window as unknown as RedWindow).classifyDebug!.length);
      // 404 until the deploy has started the inject node.
      await until(async () => (await fetch(`${url}/inject/inj${i}`, { method: "POST" })).status === 200, `inject ${samples[i]}`, 15_000, 200);
      await until(async () => (await page.evaluate(() => (window as unknown as RedWindow).classifyDebug!.length)) > before, `debug message for ${samples[i]}`, 15_000, 50);
      const msg = await page.evaluate((n) => (window as unknown as RedWindow).classifyDebug![n]!, before);
      byDebug[msg.name!]!.push(`${samples[i]}=${msg.msg}`);
    }
    // openssl sends SNI api.example.test (rule tls); curl-https SNI example.test over TLS and
    // the h2 request for host example.test go to web (tls and http2 ticked); http1 and ssh
    // were not ticked in web's protocols, so they leave by other.
    expect(byDebug).toEqual({
      tls: ["openssl-s_client=tls"],
      web: ["curl-https=tls", "curl-h2-prior-knowledge=http2"],
      other: ["curl-http1=http1", "ssh=ssh"],
    });

    // The node's status names what it counts: messages per output, by the output's label.
    await page.locator(`#red-ui-workspace-chart g[id="${classifyId}"] .red-ui-flow-node-status-label`, { hasText: "tls 1 · web 2 · other 2" }).waitFor({ timeout: 15_000 });

    // A fresh editor reads the saved rules back: one line each, the multi-select ticked as saved.
    await page.reload();
    await page.locator(`.red-ui-palette-node[data-palette-type="classify"]`).waitFor({ timeout: 60_000 });
    await page.locator(`#red-ui-workspace-chart g[id="${classifyId}"] .red-ui-flow-node`).dblclick();
    await page.locator("#node-dialog-ok").waitFor({ state: "visible" });
    await expect(rowState(rows.nth(0))).resolves.toEqual({ summary: "1 · tls · tls · sni/host api.example.test → output 1", open: false, invalid: false });
    await expect(rowState(rows.nth(1))).resolves.toEqual({ summary: "2 · web · tls, http2 · sni/host example.test, *.example.test → output 2", open: false, invalid: false });
    await rows.nth(1).locator(".traffic-rule-summary").click();
    await expect(checkedProtocols(page, rows.nth(1))).resolves.toEqual(["tls", "http2"]);
    await page.locator("#node-dialog-cancel").click();
    await page.locator(".red-ui-tray").waitFor({ state: "detached" });
    expect(editor!.pageErrors).toEqual([]);
  }, 120_000);

  it("rules saved by older versions open as they were: any case or spacing of protocols, an unknown one ticked and marked until unticked; a missing mode shows its default", async () => {
    const id = "classify-old";
    await page.evaluate((nodeId) => {
      const w = window as unknown as RedWindow;
      w.RED.nodes.import([{ id: nodeId, type: "classify", z: "t1", x: 250, y: 600, outputs: 3, rules: [{ name: "web", protocols: "HTTP1 http2" }, { name: "odd", protocols: "tls gopher", ports: "443" }], wires: [[], [], []] }]);
      w.RED.nodes.dirty(true);
      w.RED.view.redraw(true);
    }, id);
    await page.locator(`#red-ui-workspace-chart g[id="${id}"] .red-ui-flow-node`).dblclick();
    await page.locator("#node-dialog-ok").waitFor({ state: "visible" });
    // Saved before the mode existed: the dialog shows the mode the runtime applies, not a blank.
    await expect(page.locator("#node-input-enforcement").inputValue()).resolves.toBe("enforce");
    const rows = ruleRows(page);
    await expect(rowState(rows.nth(0))).resolves.toEqual({ summary: "1 · web · http1, http2 → output 1", open: false, invalid: false });
    await expect(rowState(rows.nth(1))).resolves.toEqual({ summary: "2 · odd · tls, gopher · port 443 → output 2", open: false, invalid: true });
    await expect(rows.nth(1).locator(".traffic-rule-summary-error").textContent()).resolves.toBe("Protocols: unknown protocol gopher");
    const odd = rows.nth(1);
    await odd.locator(".traffic-rule-summary").click();
    await expect(markedFields(odd)).resolves.toEqual({ protocols: "unknown protocol gopher" });
    await expect(checkedProtocols(page, odd)).resolves.toEqual(["tls", "gopher"]);
    await odd.locator(".red-ui-typedInput-option-trigger").click();
    await page.locator(".red-ui-typedInput-options:visible a[value=gopher]").click();
    await page.keyboard.press("Escape");
    await expect(markedFields(odd)).resolves.toEqual({});
    await expect(rowState(odd)).resolves.toMatchObject({ summary: "2 · odd · tls · port 443 → output 2", invalid: false });
    await page.locator("#node-dialog-ok").click();
    await page.locator(".red-ui-tray").waitFor({ state: "detached" });
    const rules = await page.evaluate((nodeId) => (window as unknown as RedWindow).RED.nodes.node(nodeId).rules, id);
    expect(rules).toEqual([
      { name: "web", protocols: "http1, http2" },
      { name: "odd", protocols: "tls", ports: "443" },
    ]);
    expect(editor!.pageErrors).toEqual([]);
  }, 60_000);
});

import type { Page } from "playwright-core";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNodeAndOpen, openEditor, snapshot, type EditorSession } from "../support/browser";
import { systemCommand } from "../support/system";

const chromiumPath = systemCommand("chromium");

/** The i18n namespace Node-RED gives the node set traffic.js of this package. */
const NS = "@traffic-policy/node-red-traffic-policy/traffic";

/** Every palette node of the package, with a word its help text (from locales/en-US/traffic.html) opens with. */
const NODES: Array<{ type: string; help: RegExp }> = [
  { type: "transparent in", help: /Accepts the TCP connections/ },
  { type: "original dst", help: /Asks the kernel where a connection/ },
  { type: "real ip", help: /real client address/ },
  { type: "ip filter", help: /Routes messages by the client address/ },
  { type: "limit", help: /Limits new connections per key/ },
  { type: "classify", help: /Recognises what a connection is/ },
  { type: "forward", help: /Decides a live connection's fate/ },
  { type: "flow source", help: /one event per TCP connection/ },
  { type: "mqtt events", help: /Publishes events to MQTT/ },
];

/** Texts of the open dialog's translated elements; an untranslated one shows its key or nothing. */
async function translatedTexts(page: Page, form: string): Promise<Array<{ key: string; text: string }>> {
  return page.locator(`${form} [data-i18n]`).evaluateAll((els) =>
    els.map((el) => {
      const key = el.getAttribute("data-i18n") ?? "";
      const text = key.startsWith("[placeholder]") ? (el.getAttribute("placeholder") ?? "") : (el.textContent ?? "");
      return { key, text: text.trim() };
    }),
  );
}

/** The text of a debug sidebar message: an Error comes encoded as `{ __enc__, type: "error", data: { message } }`. */
function debugText(msg: string): string {
  try {
    const encoded = JSON.parse(msg) as { __enc__?: boolean; data?: { message?: unknown } };
    if (encoded.__enc__ === true && typeof encoded.data?.message === "string") return encoded.data.message;
  } catch {
    // Plain text (node.error with a string).
  }
  return msg;
}

describe.skipIf(chromiumPath.skip)("editor in a real browser: message catalogue and help from locales/en-US", () => {
  let editor: EditorSession | undefined;
  let page: Page;

  beforeAll(async () => {
    editor = await openEditor(chromiumPath.path!, { paletteType: "classify" });
    page = editor.page;
  }, 120_000);

  afterAll(async () => {
    await editor?.close();
  });

  it("serves the catalogue under the node set's namespace, with the category's label and description", async () => {
    const texts = await page.evaluate((ns) => {
      const RED = (window as unknown as { RED: { _(key: string): string } }).RED;
      return { label: RED._(`${ns}:palette.label.traffic`), description: RED._(`${ns}:palette.description.traffic`) };
    }, NS);
    expect(texts.label).toBe("traffic");
    expect(texts.description).toMatch(/^Linux traffic policy/);
    await expect(page.locator("#red-ui-palette-header-traffic span").textContent()).resolves.toBe("traffic");
  });

  it("shows every palette label from the catalogue", async () => {
    for (const { type } of NODES) {
      const node = page.locator(`.red-ui-palette-node[data-palette-type="${type}"]`);
      await expect(node.getAttribute("data-palette-label"), type).resolves.toBe(type);
    }
  });

  it("translates every marked text of every dialog, config node included", async () => {
    let x = 150;
    for (const { type } of NODES) {
      await addNodeAndOpen(page, type, x, 100);
      x += 60;
      const texts = await translatedTexts(page, "#dialog-form");
      expect(texts.length, type).toBeGreaterThan(3);
      for (const { key, text } of texts) {
        expect(text, `${type}: ${key}`).not.toBe("");
        expect(text, `${type}: ${key}`).not.toContain(key.replace(/^\[[a-z]+\]/, "").replace(`${NS}:`, ""));
      }
      if (type === "mqtt events") {
        // The broker config node's dialog opens from the broker field's edit button.
        await page.locator("#node-input-btn-broker-add").click();
        await page.locator("#node-config-dialog-edit-form").waitFor();
        const broker = await translatedTexts(page, "#node-config-dialog-edit-form");
        expect(broker.length).toBeGreaterThan(3);
        for (const { key, text } of broker) expect(text, `traffic broker: ${key}`).not.toBe("");
        await expect(page.locator("#node-config-dialog-edit-form label[for='node-config-input-mode']").textContent()).resolves.toMatch(/Broker/);
        await page.locator("#node-config-dialog-cancel").click();
      }
      if (type === "forward") {
        await expect(page.locator("label[for='node-input-identity']").textContent()).resolves.toMatch(/Client identity/);
        await expect(page.locator("#node-input-identity option[value='proxy-v2']").textContent()).resolves.toMatch(/PROXY protocol v2/);
        await snapshot(page, "locales-forward-dialog");
      }
      await page.locator("#node-dialog-cancel").click();
      await page.locator(".red-ui-tray").waitFor({ state: "detached" });
    }
    expect(editor!.pageErrors).toEqual([]);
  }, 120_000);

  it("shows each node's help, read from the locale file, in the help sidebar", async () => {
    for (const { type, help } of NODES) {
      await page.evaluate((t) => {
        (window as unknown as { RED: { sidebar: { help: { show(type: string): void } } } }).RED.sidebar.help.show(t);
      }, type);
      const title = page.locator("h1.red-ui-help-title");
      await expect.poll(() => title.textContent(), { message: type, timeout: 10_000 }).toBe(type);
      await expect(page.locator("h1.red-ui-help-title + .red-ui-help").textContent(), type).resolves.toMatch(help);
      if (type === "classify") await snapshot(page, "locales-classify-help");
    }
    // The sidebar renders the markdown: the sections are headings.
    await expect(page.locator("h1.red-ui-help-title + .red-ui-help h3", { hasText: "Outputs" }).count()).resolves.toBeGreaterThan(0);
  });

  it("the runtime reports statuses and errors as text from the catalogue, not keys", async () => {
    const comms = new WebSocket(`${editor!.url.replace(/^http/, "ws")}/comms`);
    const statuses = new Map<string, string>();
    const errors: string[] = [];
    comms.on("message", (data) => {
      for (const { topic, data: d } of JSON.parse(String(data)) as Array<{ topic: string; data: Record<string, unknown> }>) {
        if (topic.startsWith("status/") && typeof d["text"] === "string") statuses.set(topic.slice(7), d["text"]);
        if (topic === "debug" && typeof d["msg"] === "string") errors.push(debugText(d["msg"]));
      }
    });
    await new Promise<void>((resolve, reject) => {
      comms.once("open", () => resolve());
      comms.once("error", reject);
    });
    comms.send(JSON.stringify({ subscribe: "status/#" }));
    comms.send(JSON.stringify({ subscribe: "debug" }));
    try {
      const flows = [
        { id: "t1", type: "tab", label: "Flow 1" },
        { id: "if1", z: "t1", type: "ip filter", property: "clientIp", propertyType: "msg", outputMode: "allow-deny", noMatch: "deny", outputs: 2, rules: [{ name: "doc", action: "allow", vt: "cidr", v: "192.0.2.0/24" }], wires: [[], []] },
        { id: "ri1", z: "t1", type: "real ip", trusted: "10.0.0.1/8", wires: [[]] },
        { id: "me1", z: "t1", type: "mqtt events", broker: "", wires: [[]] },
        { id: "fw1", z: "t1", type: "forward", action: "forward", targetType: "original", wires: [[]] },
        { id: "in1", z: "t1", type: "inject", once: true, onceDelay: 0.2, repeat: "", payload: "", payloadType: "date", wires: [["od1"]] },
        { id: "od1", z: "t1", type: "original dst", method: "auto", property: "originalDst", wires: [[]] },
      ];
      const res = await fetch(`${editor!.url}/flows`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Node-RED-Deployment-Type": "full" },
        body: JSON.stringify(flows),
      });
      expect(res.ok).toBe(true);
      const expected = { if1: "1 rule", ri1: "bad config", me1: "bad config", fw1: "0 active", od1: "error" };
      await expect.poll(() => Object.fromEntries([...statuses].filter(([id]) => id in expected)), { timeout: 15_000 }).toEqual(expected);
      await expect.poll(() => errors.join("\n"), { timeout: 10_000 }).toMatch(/no connection: msg\._session must come from a transparent in node/);
      const text = errors.join("\n");
      expect(text).toMatch(/invalid configuration: .*10\.0\.0\.1\/8/);
      expect(text).toMatch(/invalid configuration: (?:broker: )?no traffic broker selected/);
      // No message is a bare catalogue key or has an unfilled placeholder.
      for (const t of [...statuses.values(), ...errors]) {
        expect(t).not.toMatch(/^(?:[a-z-]+)\.(?:status|error)\.\w+/);
        expect(t).not.toMatch(/__\w+__/);
      }
    } finally {
      comms.close();
    }
  });
});

// Edit dialogs of forward, mqtt events and its traffic broker config node in a real browser:
// drag from the palette, fill the fields, see a bad value flagged, save, deploy, read the status.
import { connectAsync } from "mqtt";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addNodeAndOpen, openEditor, snapshot, type EditorSession } from "../support/browser";
import { freePort } from "../support/net";
import { systemCommand } from "../support/system";

const chromiumPath = systemCommand("chromium");

/** Deployed flows, as the admin API returns them. */
async function deployedFlows(url: string): Promise<Array<Record<string, unknown>>> {
  return (await (await fetch(`${url}/flows`)).json()) as Array<Record<string, unknown>>;
}

describe.skipIf(chromiumPath.skip)("editor dialogs in a real browser: forward, mqtt events and traffic broker", () => {
  let editor: EditorSession | undefined;
  let page: Page;
  let url = "";

  beforeAll(async () => {
    editor = await openEditor(chromiumPath.path!, { paletteType: "forward" });
    page = editor.page;
    url = editor.url;
  }, 120_000);

  afterAll(async () => {
    await editor?.close();
  });

  it("forward: rows follow the choices, a bad port is flagged, deploys with its status", async () => {
    await addNodeAndOpen(page, "forward", 200, 120);
    // Fixed-target fields show only for a fixed target; reject hides the forwarding rows.
    await expect(page.locator("#node-input-host").isVisible()).resolves.toBe(false);
    await page.locator("#node-input-targetType").selectOption("fixed");
    await expect(page.locator("#node-input-host").isVisible()).resolves.toBe(true);
    await page.locator("#node-input-identity").selectOption("transparent");
    await expect(page.locator("#node-input-keepClientPort").isVisible()).resolves.toBe(true);
    await page.locator("#node-input-identity").selectOption("proxy-v2");
    await expect(page.locator("#node-input-keepClientPort").isVisible()).resolves.toBe(false);
    await page.locator("#node-input-host").fill("198.51.100.20");
    await page.locator("#node-input-port").fill("70000");
    await page.locator("#node-input-port").press("Tab");
    await expect(page.locator("#node-input-port.input-error").count()).resolves.toBe(1);
    await page.locator("#node-input-mark").fill("mark");
    await page.locator("#node-input-mark").press("Tab");
    await expect(page.locator("#node-input-mark.input-error").count()).resolves.toBe(1);
    await snapshot(page, "forward-dialog-invalid");
    await page.locator("#node-input-port").fill("443");
    await page.locator("#node-input-port").press("Tab");
    await page.locator("#node-input-mark").fill("4242");
    await page.locator("#node-input-mark").press("Tab");
    await expect(page.locator("#dialog-form .input-error").count()).resolves.toBe(0);
    await page.locator("#node-input-connectTimeout").fill("5");
    await page.locator("#node-dialog-ok").click();
    await page.locator(".red-ui-tray").waitFor({ state: "detached" });
    // The label names the fixed target.
    await expect(page.locator(".red-ui-flow-node-label", { hasText: "forward → 198.51.100.20:443" }).count()).resolves.toBeGreaterThan(0);
    await page.locator("#red-ui-header-button-deploy").click();
    await page.locator(".red-ui-flow-node-status-label", { hasText: "0 active" }).waitFor({ timeout: 15_000 });
    await snapshot(page, "forward-deployed");
    const node = (await deployedFlows(url)).find((n) => n["type"] === "forward");
    expect(node).toMatchObject({ targetType: "fixed", host: "198.51.100.20", port: "443", identity: "proxy-v2", mark: "4242", connectTimeout: "5" });
    expect(editor!.pageErrors).toEqual([]);
  });

  it("mqtt events with a new embedded traffic broker: flags a bad topic and port, deploys, publishes the agent status", async () => {
    const brokerPort = await freePort();
    await addNodeAndOpen(page, "mqtt events", 450, 240);
    const topic = page.locator("#node-input-topic");
    await topic.fill("traffic/{hots}/{type}");
    await topic.press("End");
    await expect(page.locator("#traffic-topic-error").textContent()).resolves.toBe("unknown placeholder {hots}");
    await expect(page.locator("#traffic-topic-error").isVisible()).resolves.toBe(true);
    await topic.press("Tab");
    await expect(page.locator("#node-input-topic.input-error").count()).resolves.toBe(1);
    await snapshot(page, "mqtt-events-dialog-invalid");
    await topic.fill("traffic/{host}/{type}");
    await topic.press("Tab");
    await expect(page.locator("#traffic-topic-error").isVisible()).resolves.toBe(false);
    await expect(page.locator("#node-input-topic.input-error").count()).resolves.toBe(0);
    // No broker yet: the required broker field is flagged until one is made.
    await expect(page.locator("#node-input-broker.input-error").count()).resolves.toBe(1);

    // The broker config node opens from the broker field.
    await page.locator("#node-input-btn-broker-add").click();
    const form = page.locator("#node-config-dialog-edit-form");
    await form.waitFor();
    await expect(page.locator("#node-config-input-broker").isVisible()).resolves.toBe(false);
    await page.locator("#node-config-input-mode").selectOption("external");
    await expect(page.locator("#node-config-input-broker").isVisible()).resolves.toBe(true);
    await expect(page.locator("#node-config-input-embeddedPort").isVisible()).resolves.toBe(false);
    await page.locator("#node-config-input-broker").fill("http://broker.example:1883");
    await page.locator("#node-config-input-broker").press("Tab");
    await expect(page.locator("#node-config-input-broker.input-error").count()).resolves.toBe(1);
    await page.locator("#node-config-input-mode").selectOption("embedded");
    await page.locator("#node-config-input-embeddedPort").fill("99999");
    await page.locator("#node-config-input-embeddedPort").press("Tab");
    await expect(page.locator("#node-config-input-embeddedPort.input-error").count()).resolves.toBe(1);
    await snapshot(page, "traffic-broker-dialog-invalid");
    await page.locator("#node-config-input-embeddedPort").fill(String(brokerPort));
    await page.locator("#node-config-input-embeddedPort").press("Tab");
    await expect(page.locator("#node-config-input-embeddedPort.input-error").count()).resolves.toBe(0);
    await page.locator("#node-config-input-agentHost").fill("edge-1");
    await page.locator("#node-config-input-name").fill("local broker");
    await page.locator("#node-config-dialog-ok").click();
    await form.waitFor({ state: "detached" });
    // Back in the mqtt events dialog, the new broker is selected and the field is valid. The
    // editor checks the field again only after the config dialog has gone, on a later turn.
    await expect(page.locator("#node-input-broker option:checked").textContent()).resolves.toBe("local broker");
    await expect.poll(() => page.locator("#node-input-broker.input-error").count(), { timeout: 5000 }).toBe(0);
    await page.locator("#node-input-qos").selectOption("0");
    await page.locator("#node-dialog-ok").click();
    await page.locator(".red-ui-tray").waitFor({ state: "detached" });

    await page.locator("#red-ui-header-button-deploy").click();
    await page.locator(".red-ui-flow-node-status-label", { hasText: "0 sent" }).waitFor({ timeout: 20_000 });
    await snapshot(page, "mqtt-events-deployed");
    const flows = await deployedFlows(url);
    const broker = flows.find((n) => n["type"] === "traffic broker");
    expect(broker).toMatchObject({ mode: "embedded", embeddedPort: String(brokerPort), agentHost: "edge-1", name: "local broker" });
    expect(flows.find((n) => n["type"] === "mqtt events")).toMatchObject({ broker: broker!["id"], topic: "traffic/{host}/{type}", qos: "0" });

    // The deployed broker really runs, and the broker node announced this agent on it.
    const client = await connectAsync(`mqtt://127.0.0.1:${brokerPort}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000 });
    try {
      const status = new Promise<Record<string, unknown>>((resolve) => {
        client.on("message", (_topic, payload) => resolve(JSON.parse(payload.toString()) as Record<string, unknown>));
      });
      await client.subscribeAsync("traffic/edge-1/status");
      expect(await status).toMatchObject({ type: "agent-status", status: "online", host: "edge-1" });
    } finally {
      await client.endAsync();
    }
    expect(editor!.pageErrors).toEqual([]);
  }, 60_000);
});

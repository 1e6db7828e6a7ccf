// The "traffic" sidebar tab in a real browser, with live traffic through a deployed flow:
// transparent in (PROXY protocol, so each connection has an original destination) →
// classify → forward to an upstream on loopback that answers and holds the connection open;
// a flow source watching the listener's port. Rows must show the right facts, the filter
// must narrow them, updates must come at most twice a second, and a click must reveal the
// owning node in its flow.
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, snapshot } from "../support/browser";
import { freePort } from "../support/net";
import { ensureBuilt } from "../support/netns";
import { systemCommand } from "../support/system";

const { prepareUserDir, startNodeRed, stopNodeRed } = require("../../scripts/node-red-env.js");

const chromiumPath = systemCommand("chromium");
const REPLY = 1000;

/** The PROXY v1 line a client sends first: the original destination the listener reports. */
const proxyLine = (i: number): string => `PROXY TCP4 203.0.113.${10 + i} 198.51.100.20 ${40000 + i} 443\r\n`;
const request = "GET / HTTP/1.1\r\nHost: sidebar.example\r\n\r\n";

describe.skipIf(chromiumPath.skip)("traffic sidebar in a real browser", () => {
  let dir = "";
  let red: { child: ChildProcess; url: string } | undefined;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let page: Page;
  let upstream: net.Server | undefined;
  const clients: net.Socket[] = [];
  const held: net.Socket[] = [];
  let listenPort = 0;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    ensureBuilt();
    upstream = net.createServer((c) => {
      held.push(c);
      c.on("error", () => undefined);
      c.once("data", () => c.write(Buffer.alloc(REPLY, 0x62)));
    });
    await new Promise<void>((r) => upstream!.listen(0, "127.0.0.1", r));
    const upstreamPort = (upstream.address() as net.AddressInfo).port;
    listenPort = await freePort();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-sidebar-"));
    const port = await freePort();
    prepareUserDir(dir, {
      port,
      flows: [
        { id: "t1", type: "tab", label: "Flow 1" },
        { id: "t2", type: "tab", label: "Gateway" },
        { id: "tin", z: "t2", type: "transparent in", name: "gateway in", x: 150, y: 100, port: listenPort, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 64, proxyProtocol: "required", proxyFrom: "127.0.0.1", unclaimedTimeout: 30, unclaimedAction: "close", wires: [["cls"]] },
        { id: "cls", z: "t2", type: "classify", x: 350, y: 100, input: "auto", property: "payload", maxBytes: 16384, timeoutMs: 2000, serverFirstMs: 1000, rules: [{ name: "web", protocols: "http1" }], outputs: 2, wires: [["fw"], ["fw"]] },
        { id: "fw", z: "t2", type: "forward", name: "to upstream", x: 550, y: 100, action: "forward", targetType: "fixed", host: "127.0.0.1", port: upstreamPort, identity: "none", connectTimeout: 5, pump: "auto", wires: [[]] },
        { id: "fs", z: "t2", type: "flow source", name: "watch", x: 150, y: 200, mode: "auto", eventOpen: true, eventClose: true, eventState: false, ports: String(listenPort), cidrs: "", side: "any", delivery: "event", wires: [[]] },
      ],
    });
    red = await startNodeRed(dir, { port });
    browser = await launchChromium(chromiumPath.path!);
    page = await browser.browser.newPage({ viewport: { width: 1600, height: 1000 } });
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    await page.goto(`${red!.url}/`);
    await page.locator('.red-ui-palette-node[data-palette-type="forward"]').waitFor({ timeout: 60_000 });

    // Three clients: each sends its PROXY line and an HTTP request, then stays connected.
    for (let i = 0; i < 3; i++) {
      const s = net.connect({ port: listenPort, host: "127.0.0.1" });
      await new Promise<void>((r) => s.once("connect", () => r()));
      s.on("error", () => undefined);
      s.write(proxyLine(i) + request);
      clients.push(s);
    }
  }, 180_000);

  afterAll(async () => {
    for (const s of [...clients, ...held]) s.destroy();
    await browser?.close();
    if (red) await stopNodeRed(red.child);
    await new Promise((r) => (upstream === undefined ? r(undefined) : upstream.close(r)));
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const rows = (): ReturnType<Page["locator"]> => page.locator(".traffic-sidebar-connections tbody tr");

  it("shows each live connection with its client, original destination, protocol, owner, bytes and age", async () => {
    // The tab's own button, as in the sidebar's tab strip or its menu (View → traffic).
    // Asked again until it shows: on a loaded machine the editor may still be finishing its
    // start and select its own tab after this one was shown.
    await expect
      .poll(
        async () => {
          await page.evaluate(() => (window as unknown as { RED: { sidebar: { show(id: string): void } } }).RED.sidebar.show("traffic-policy"));
          return page.locator(".traffic-sidebar-capabilities tr").first().isVisible();
        },
        { timeout: 15_000, interval: 250 },
      )
      .toBe(true);
    await expect(page.locator("#red-ui-tab-traffic-policy").count()).resolves.toBe(1);
    // The bytes each way are final once the upstream's answer went through.
    await page.waitForFunction((n) => Array.from(document.querySelectorAll(".traffic-sidebar-connections tbody tr .traffic-down")).filter((td) => td.textContent === "1000 B").length === n, 3, { timeout: 20_000 });
    await snapshot(page, "traffic-sidebar-live");
    const facts = await rows().evaluateAll((trs) =>
      trs.map((tr) => Object.fromEntries(Array.from(tr.querySelectorAll("td")).map((td) => [td.className.replace("traffic-", ""), td.textContent]))),
    );
    const ports = clients.map((s) => s.localPort).sort();
    expect(facts.map((f) => Number(f.client!.split(":")[1])).sort()).toEqual(ports);
    for (const f of facts) {
      expect(f.client).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(f.destination).toBe("198.51.100.20:443");
      expect(f.protocol).toBe("http1 sidebar.example");
      expect(f.node).toBe("to upstream");
      expect(f.up).toBe(`${Buffer.byteLength(request)} B`);
      expect(f.down).toBe(`${REPLY} B`);
      expect(f.age).toMatch(/^\d+ s$/);
    }
    await expect(page.locator(".traffic-sidebar-shown").textContent()).resolves.toBe("3 shown of 3 live");
    // Counters per node: the listener accepted three, the forward node holds three.
    const counters = page.locator('.traffic-sidebar-node[data-node="tin"]');
    await expect(counters.textContent()).resolves.toMatch(/accepted 3/);
    await expect(page.locator('.traffic-sidebar-node[data-node="fw"]').textContent()).resolves.toMatch(/live 3/);
    // The schemas are linked, and served.
    const href = await page.locator(".traffic-sidebar-schema", { hasText: "forward-summary" }).getAttribute("href");
    const schema = await page.evaluate(async (h) => (await fetch(h!)).json(), href);
    expect((schema as { $id: string }).$id).toMatch(/forward-summary\.json$/);
  });

  it("filters the rows", async () => {
    const port = String(clients[1]!.localPort);
    await page.locator(".traffic-sidebar-filter").fill(port);
    await expect(rows().count()).resolves.toBe(1);
    await expect(rows().first().locator(".traffic-client").textContent()).resolves.toBe(`127.0.0.1:${port}`);
    await expect(page.locator(".traffic-sidebar-shown").textContent()).resolves.toBe("1 shown of 3 live");
    await page.locator(".traffic-sidebar-filter").fill("no-such-host.example");
    await expect(rows().count()).resolves.toBe(0);
    await page.locator(".traffic-sidebar-filter").fill("sidebar.example");
    await expect(rows().count()).resolves.toBe(3);
    await page.locator(".traffic-sidebar-filter").fill("");
  });

  it("updates at most twice a second", async () => {
    const counted = await page.evaluate(async () => {
      const RED = (window as unknown as { RED: { comms: { subscribe(t: string, f: () => void): void; unsubscribe(t: string, f: () => void): void } } }).RED;
      const view = document.querySelector(".traffic-sidebar")!;
      let messages = 0;
      const onMessage = (): void => {
        messages++;
      };
      RED.comms.subscribe("traffic-policy/live", onMessage);
      const rendersBefore = Number(view.getAttribute("data-updates"));
      await new Promise((r) => setTimeout(r, 4000));
      RED.comms.unsubscribe("traffic-policy/live", onMessage);
      return { messages, renders: Number(view.getAttribute("data-updates")) - rendersBefore };
    });
    // Live while the tab is open (a snapshot every 500 ms), never more than two a second.
    expect(counted.messages).toBeGreaterThanOrEqual(4);
    expect(counted.messages).toBeLessThanOrEqual(9);
    expect(counted.renders).toBeLessThanOrEqual(9);
  });

  it("lists the top talkers of the running flow source once connections close", async () => {
    clients.pop()!.destroy();
    await page.locator(".traffic-sidebar-talkers tr", { hasText: "127.0.0.1" }).first().waitFor({ timeout: 20_000 });
    await page.waitForFunction(() => document.querySelectorAll(".traffic-sidebar-connections tbody tr").length === 2, undefined, { timeout: 10_000 });
  });

  it("reveals the owning node in its flow when a row is clicked", async () => {
    const active = (): Promise<string> => page.evaluate(() => (window as unknown as { RED: { workspaces: { active(): string } } }).RED.workspaces.active());
    await expect(active()).resolves.toBe("t1");
    await rows().first().click();
    await expect.poll(active, { timeout: 5000 }).toBe("t2");
    await expect
      .poll(() => page.evaluate(() => (window as unknown as { RED: { nodes: { node(id: string): { highlighted?: boolean } } } }).RED.nodes.node("fw").highlighted === true), { timeout: 5000 })
      .toBe(true);
    await snapshot(page, "traffic-sidebar-revealed");
    expect(pageErrors).toEqual([]);
  });
});

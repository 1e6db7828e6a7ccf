import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll } from "vitest";
import { freePort } from "./net";

/** Where screenshots of editor tests go (kept as test artifacts). */
export const ARTIFACTS = path.resolve(__dirname, "..", "..", "test-artifacts");

/**
 * Launches Debian's chromium headless, with a fresh profile (playwright makes one). The flags keep it off the network: this machine
 * allows only loopback, and background fetches would fail noisily.
 */
export async function launchChromium(executablePath: string): Promise<{ browser: Browser; close(): Promise<void> }> {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    browser,
    async close() {
      await browser.close();
    },
  };
}

/** Saves a screenshot under test-artifacts/. */
export async function snapshot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

/** Drags a palette node onto the workspace at (x, y), then opens its edit dialog. */
export async function addNodeAndOpen(page: Page, type: string, x: number, y: number): Promise<void> {
  const nodes = page.locator("#red-ui-workspace-chart .red-ui-flow-node-group");
  const before = await nodes.count();
  // No dialog may be open or closing: the drop would land under its tray. Nor may a deploy
  // still be in progress: its shades cover the palette and the workspace, and a drop on
  // them adds nothing (the status of a deployed node can show before the deploy returns).
  await page.locator(".red-ui-tray").waitFor({ state: "detached" });
  await page.locator("#red-ui-editor-shade").waitFor({ state: "hidden" });
  await page.locator("#red-ui-palette-shade").waitFor({ state: "hidden" });
  const item = page.locator(`.red-ui-palette-node[data-palette-type="${type}"]`);
  await item.scrollIntoViewIfNeeded();
  const box = (await item.boundingBox())!;
  const chart = (await page.locator("#red-ui-workspace-chart").boundingBox())!;
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(chart.x + x, chart.y + y, { steps: 12 });
  await page.mouse.up();
  await page.waitForFunction(
    ([sel, n]) => document.querySelectorAll(sel as string).length > (n as number),
    ["#red-ui-workspace-chart .red-ui-flow-node-group", before] as const,
  );
  await nodes.nth(before).dblclick();
  await page.locator("#node-dialog-ok").waitFor({ state: "visible" });
}

/** A Node-RED editor open in headless chromium, on a fresh user dir. */
export interface EditorSession {
  readonly page: Page;
  /** Node-RED's base URL (http://127.0.0.1:<port>). */
  readonly url: string;
  /** Uncaught errors of the editor page. */
  readonly pageErrors: string[];
  close(): Promise<void>;
}

/**
 * Starts Node-RED with an empty flow (under `wrap`, e.g. setpriv, when given), opens its
 * editor in chromium and waits until the palette shows `paletteType`.
 */
export async function openEditor(
  chromiumPath: string,
  { paletteType, wrap = [] }: { paletteType: string; wrap?: string[] },
): Promise<EditorSession> {
  const { prepareUserDir, startNodeRed, stopNodeRed } = require("../../scripts/node-red-env.js");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-editor-"));
  const port = await freePort();
  prepareUserDir(dir, { port, flows: [{ id: "t1", type: "tab", label: "Flow 1" }] });
  let red: { child: import("node:child_process").ChildProcess; url: string } | undefined;
  let browser: { browser: Browser; close(): Promise<void> } | undefined;
  const close = async (): Promise<void> => {
    if (browser) await browser.close();
    if (red) await stopNodeRed(red.child);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    red = await startNodeRed(dir, { port, wrap });
    browser = await launchChromium(chromiumPath);
    const page = await browser.browser.newPage({ viewport: { width: 1400, height: 900 } });
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    await page.goto(`${red!.url}/`);
    await page.locator(`.red-ui-palette-node[data-palette-type="${paletteType}"]`).waitFor({ timeout: 60_000 });
    return { page, url: red!.url, pageErrors, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * One editor for the enclosing describe block: opened before its first test, closed after
 * its last. Read `page` and `session` inside tests, once the editor is open.
 */
export function editorPerSuite(chromiumPath: string, paletteType: string): { readonly page: Page; readonly session: EditorSession } {
  let session: EditorSession | undefined;
  beforeAll(async () => {
    session = await openEditor(chromiumPath, { paletteType });
  }, 120_000);
  afterAll(async () => {
    await session?.close();
  });
  return {
    get session(): EditorSession {
      if (session === undefined) throw new Error("the editor is not open yet");
      return session;
    },
    get page(): Page {
      return this.session.page;
    },
  };
}

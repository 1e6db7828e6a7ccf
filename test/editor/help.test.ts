import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { editorPerSuite, snapshot } from "../support/browser";
import { systemCommand } from "../support/system";

const chromiumPath = systemCommand("chromium");
const NODES_DIR = path.resolve(__dirname, "..", "..", "nodes");

/** One documented message property, as its author wrote it. */
interface Entry {
  name: string;
  type: string;
  description: string;
}

/** What a reader sees of a piece of help markdown: code spans, emphasis and `<code>` tags dropped, entities decoded. */
function plain(markdown: string): string {
  return markdown
    .replace(/<\/?code>/g, "")
    .replace(/&#(\d+);/g, (_m, code: string) => String.fromCharCode(Number(code)))
    .replace(/`([^`]*)`/g, "$1")
    .replace(/\*\*([^*]+)\*\*/g, "$1")
    .replace(/\*([^*]+)\*/g, "$1")
    .replace(/\s+/g, " ")
    .trim();
}

/**
 * The property entries of a help file, read the way its author meant them rather than the
 * way the editor parses them: an entry starts with `: name (type) : ` and runs on over
 * indented continuation lines, and its description is everything after the first ` : `.
 */
function documentedEntries(source: string): Entry[] {
  const entries: Entry[] = [];
  let current: string[] | null = null;
  const finish = (): void => {
    if (current === null) return;
    const text = current.join(" ");
    const m = /^:\s*([^(]+?)\s*\(([^)]+)\)\s*:\s(.*)$/s.exec(text);
    if (m === null) throw new Error(`not a property entry: ${text}`);
    entries.push({ name: plain(m[1]!), type: plain(m[2]!), description: plain(m[3]!) });
    current = null;
  };
  for (const line of source.split("\n")) {
    if (line.startsWith(":")) {
      finish();
      current = [line];
    } else if (current !== null && /^\s+\S/.test(line)) {
      current.push(line.trim());
    } else {
      finish();
    }
  }
  finish();
  return entries;
}

/** Every node's help file: nodes/<name>/locales/en-US/<name>.html, keyed by the node type it documents. */
function helpFiles(): Array<{ type: string; file: string; entries: Entry[] }> {
  const out: Array<{ type: string; file: string; entries: Entry[] }> = [];
  for (const name of fs.readdirSync(NODES_DIR).sort()) {
    const file = path.join(NODES_DIR, name, "locales", "en-US", `${name}.html`);
    if (!fs.existsSync(file)) continue;
    const source = fs.readFileSync(file, "utf8");
    const type = /data-help-name="([^"]+)"/.exec(source)?.[1];
    if (type === undefined) throw new Error(`${file} has no data-help-name`);
    out.push({ type, file: path.relative(NODES_DIR, file), entries: documentedEntries(source) });
  }
  return out;
}

describe.skipIf(chromiumPath.skip)("help in the editor's sidebar, in a real browser", () => {
  const editor = editorPerSuite(chromiumPath.path!, "classify");
  const files = helpFiles();

  it("documents message properties on the node help pages", () => {
    // A parser that found nothing would make the test below pass on any page.
    expect(files.length).toBeGreaterThanOrEqual(9);
    expect(files.reduce((n, f) => n + f.entries.length, 0)).toBeGreaterThanOrEqual(30);
  });

  it.each(files.filter((f) => f.entries.length > 0).map((f) => [f.type, f] as const))(
    "%s: every documented property renders as one entry with its name, type and whole description",
    async (type, { file, entries }) => {
      const page = editor.page;
      await page.evaluate((t) => {
        (window as unknown as { RED: { sidebar: { help: { show(type: string): void } } } }).RED.sidebar.help.show(t);
      }, type);
      await expect.poll(() => page.locator("h1.red-ui-help-title").textContent(), { message: type, timeout: 10_000 }).toBe(type);
      const rendered = await page.locator("h1.red-ui-help-title + .red-ui-help dl.message-properties dt").evaluateAll((dts) =>
        dts.map((dt) => {
          const typeEl = dt.querySelector(".property-type");
          const clone = dt.cloneNode(true) as HTMLElement;
          clone.querySelector(".property-type")?.remove();
          const dd = dt.nextElementSibling;
          return {
            name: (clone.textContent ?? "").replace(/\s+/g, " ").trim(),
            type: (typeEl?.textContent ?? "").replace(/\s+/g, " ").trim(),
            description: dd !== null && dd.tagName === "DD" ? (dd.textContent ?? "").replace(/\s+/g, " ").trim() : "",
          };
        }),
      );
      if (type === "forward") await snapshot(page, "help-forward");
      expect(rendered, file).toEqual(entries);
    },
  );
});

import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type { NodeAPI } from "node-red";
import { describe, expect, it } from "vitest";
import { catalogueText, messages } from "../../nodes/common/messages";

const ROOT = path.resolve(__dirname, "..", "..");
const NODES = path.join(ROOT, "nodes");
/** The namespace Node-RED gives the node set traffic.js; editor code may spell it out. */
const NS = "@traffic-policy/node-red-traffic-policy/traffic:";

type Catalogue = { [key: string]: string | Catalogue };

const nodeDirs = fs.readdirSync(NODES).filter((d) => fs.statSync(path.join(NODES, d)).isDirectory());

function read(file: string): string {
  return fs.readFileSync(file, "utf8");
}

/** The build's expansion of a dialog's row tags into the markup (and keys) the editor gets. */
const { expandDialogRows } = createRequire(__filename)("../../scripts/build.js") as { expandDialogRows(html: string, node: string): string };

/** Every leaf key of a catalogue, dotted. */
function keysOf(c: Catalogue, prefix = ""): string[] {
  return Object.entries(c).flatMap(([k, v]) => (typeof v === "string" ? [prefix + k] : keysOf(v, `${prefix}${k}.`)));
}

/** What the build bundles: the nodes' own catalogue files, merged. */
function sourceCatalogue(): Catalogue {
  const merged: Catalogue = {};
  const merge = (into: Catalogue, from: Catalogue): void => {
    for (const [k, v] of Object.entries(from)) {
      if (typeof v === "string") into[k] = v;
      else merge((into[k] ??= {}) as Catalogue, v);
    }
  };
  for (const dir of nodeDirs) {
    const file = path.join(NODES, dir, "locales", "en-US", `${dir}.json`);
    if (fs.existsSync(file)) merge(merged, JSON.parse(read(file)) as Catalogue);
  }
  return merged;
}

/** A catalogue key written as a string, e.g. a table of keys by error code: "<node>.<group>.<name>". */
const keyString = new RegExp(`"((?:${nodeDirs.join("|")})\\.[\\w-]+\\.[\\w.-]+)"`, "g");

/** Editor scripts served from resources/ (the traffic sidebar) use the same catalogue. */
const RESOURCES = path.join(ROOT, "resources");

/** Keys the editor files use: data-i18n attributes, `_("…")` calls and key strings in the node definitions and editor scripts. */
function editorKeys(): Array<{ file: string; key: string }> {
  const out: Array<{ file: string; key: string }> = [];
  const files = [
    ...nodeDirs.map((dir) => path.join(NODES, dir, `${dir}.html`)),
    ...fs.readdirSync(RESOURCES).filter((f) => f.endsWith(".js")).map((f) => path.join(RESOURCES, f)),
  ];
  for (const file of files) {
    if (!fs.existsSync(file)) continue;
    const html = file.startsWith(NODES) ? expandDialogRows(read(file), path.basename(path.dirname(file))) : read(file);
    for (const m of html.matchAll(/data-i18n="([^"]+)"/g)) {
      for (const part of m[1]!.split(";")) out.push({ file, key: part.replace(/^\[[a-z]+\]/, "") });
    }
    for (const m of html.matchAll(/\b_\(\s*"([^"]+)"/g)) out.push({ file, key: m[1]!.replace(NS, "") });
    for (const m of html.matchAll(/categoryDescription:\s*"([^"]+)"/g)) out.push({ file, key: m[1]!.replace(NS, "") });
    for (const m of html.matchAll(keyString)) out.push({ file, key: m[1]! });
    // resources/dialog.js: say("required") looks up the file's NS prefix + "required".
    const prefix = new RegExp(`var NS = "${NS}([\\w.]*)";`).exec(html)?.[1];
    if (prefix !== undefined) for (const m of html.matchAll(/\bsay\(\s*"([^"]+)"/g)) out.push({ file, key: prefix + m[1]! });
  }
  return out;
}

/** Keys the runtime uses: `_("…")` calls and key strings (such as a status table by error code). */
function runtimeKeys(): Array<{ file: string; key: string }> {
  const out: Array<{ file: string; key: string }> = [];
  for (const dir of nodeDirs) {
    for (const name of fs.readdirSync(path.join(NODES, dir)).filter((f) => f.endsWith(".ts"))) {
      const file = path.join(NODES, dir, name);
      const src = read(file);
      for (const m of src.matchAll(/\b_\(\s*"([^"]+)"/g)) out.push({ file, key: m[1]! });
      for (const m of src.matchAll(keyString)) out.push({ file, key: m[1]! });
    }
  }
  return out;
}

describe("message catalogue (locales/en-US/traffic.json)", () => {
  const catalogue = sourceCatalogue();

  it("the built catalogue is what the nodes' catalogue files say", () => {
    const built = path.join(ROOT, "locales", "en-US", "traffic.json");
    expect(fs.existsSync(built), "locales/en-US/traffic.json is built by npm run build").toBe(true);
    expect(JSON.parse(read(built))).toEqual(catalogue);
  });

  it("has every key the editor uses", () => {
    const used = editorKeys();
    expect(used.length).toBeGreaterThan(150);
    const missing = used.filter(({ key }) => catalogueText(catalogue, key) === undefined).map(({ file, key }) => `${path.relative(ROOT, file)}: ${key}`);
    expect(missing).toEqual([]);
  });

  it("has every key the runtime uses", () => {
    const used = runtimeKeys();
    // Every node reports status and errors through the catalogue.
    const dirsUsing = new Set(used.map(({ key }) => key.split(".")[0]));
    for (const dir of nodeDirs.filter((d) => d !== "common")) expect(dirsUsing.has(dir), dir).toBe(true);
    const missing = used.filter(({ key }) => catalogueText(catalogue, key) === undefined).map(({ file, key }) => `${path.relative(ROOT, file)}: ${key}`);
    expect(missing).toEqual([]);
  });

  it("gives every log line and status text of the nodes from the catalogue, none as a literal", () => {
    const literals: string[] = [];
    for (const dir of nodeDirs) {
      for (const name of fs.readdirSync(path.join(NODES, dir)).filter((f) => f.endsWith(".ts"))) {
        const src = read(path.join(NODES, dir, name));
        // A literal's own words, with `${…}` parts (catalogue texts, counts, separators) taken out.
        const words = (line: string): boolean => {
          const quote = line.search(/[`"']/);
          let out = "";
          let depth = 0;
          for (let i = quote + 1; i < line.length && !(depth === 0 && line[i] === line[quote]); i++) {
            if (depth === 0 && line[i] === "$" && line[i + 1] === "{") (depth = 1), i++;
            else if (depth > 0 && line[i] === "{") depth++;
            else if (depth > 0 && line[i] === "}") depth--;
            else if (depth === 0) out += line[i];
          }
          return /[A-Za-z]{2}/.test(out);
        };
        for (const m of src.matchAll(/\b(?:node|this)\.(?:log|warn|error)\(\s*[`"'][^\n]*|\btext:\s*[`"'][^\n]*/g)) if (words(m[0])) literals.push(`${dir}/${name}: ${m[0]}`);
      }
    }
    expect(literals).toEqual([]);
  });

  it("has no key nobody uses (the category label is looked up by Node-RED itself)", () => {
    const used = new Set([...editorKeys(), ...runtimeKeys()].map(({ key }) => key));
    const unused = keysOf(catalogue).filter((k) => !used.has(k) && k !== "palette.label.traffic");
    expect(unused).toEqual([]);
  });

  it("keeps status texts short enough for the editor (under 20 characters with 4-character values, as counts are shown)", () => {
    for (const key of keysOf(catalogue).filter((k) => /\.status\./.test(k))) {
      const text = catalogueText(catalogue, key)!;
      expect(text.replace(/__\w+__/g, "1234").length, key).toBeLessThan(20);
    }
  });

  it("has help for every node type in the locale file, none left in the dialog files", () => {
    const help = read(path.join(ROOT, "locales", "en-US", "traffic.html"));
    for (const dir of nodeDirs) {
      const file = path.join(NODES, dir, `${dir}.html`);
      if (!fs.existsSync(file)) continue;
      const html = read(file);
      expect(html, file).not.toMatch(/data-help-name=/);
      for (const m of html.matchAll(/data-template-name="([^"]+)"/g)) {
        const block = new RegExp(`<script type="text/markdown" data-help-name="${m[1]}">([\\s\\S]*?)</script>`).exec(help);
        expect(block, m[1]).not.toBeNull();
        expect(block![1]!, m[1]).toMatch(/### Details/);
      }
    }
  });
});

describe("runtime messages", () => {
  const stubRed = (translate: (key: string) => string): NodeAPI => ({ _: translate }) as unknown as NodeAPI;

  it("use Node-RED's translation when the runtime has the catalogue", () => {
    const _ = messages(stubRed((key) => (key === "forward.status.active" ? "aktiv" : key)));
    expect(_("forward.status.active", { count: 2 })).toBe("aktiv");
  });

  it("fall back to the English catalogue, with values filled in, where the runtime answers with the key", () => {
    const _ = messages(stubRed((key) => key));
    expect(_("forward.status.active", { count: 3 })).toBe("3 active");
    expect(_("traffic-broker.log.embeddedFailed", { host: "127.0.0.1", port: 1883, reason: "EADDRINUSE" })).toBe(
      "embedded broker on 127.0.0.1:1883 did not start: EADDRINUSE",
    );
    expect(_("common.status.noCapNetAdmin")).toBe("no CAP_NET_ADMIN");
  });
});

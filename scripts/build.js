#!/usr/bin/env node
// Builds everything Node-RED loads: compiled CommonJS in dist/, traffic.html
// (every node's editor file, nodes/<name>/<name>.html, in one file beside traffic.js),
// locales/<lang>/traffic.{json,html} (every node's message catalogue and help text,
// nodes/<name>/locales/<lang>/<name>.{json,html}, in the files Node-RED looks up for the
// node set traffic.js), and the native addons when their sources changed
// (scripts/build-native.js).
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { buildNative } = require("./build-native");

const root = path.resolve(__dirname, "..");

function step(title, fn) {
  const started = Date.now();
  fn();
  process.stdout.write(`build: ${title} (${Date.now() - started} ms)\n`);
}

function compileTypeScript() {
  const tsc = require.resolve("typescript/bin/tsc", { paths: [root] });
  fs.rmSync(path.join(root, "dist"), { recursive: true, force: true });
  execFileSync(process.execPath, [tsc, "-p", path.join(root, "tsconfig.build.json")], {
    cwd: root,
    stdio: "inherit",
  });
}

function editorFiles() {
  const nodesDir = path.join(root, "nodes");
  return fs
    .readdirSync(nodesDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => path.join(nodesDir, entry.name, `${entry.name}.html`))
    .filter((file) => fs.existsSync(file))
    // common.html loads the shared dialog code the other dialogs call as they register.
    .sort((a, b) => Number(path.basename(b) === "common.html") - Number(path.basename(a) === "common.html") || a.localeCompare(b));
}

/** Attributes of a row tag: name="value", or a bare name (value ""). */
function rowAttributes(text) {
  const attrs = {};
  for (const m of text.matchAll(/([\w-]+)(?:="([^"]*)")?/g)) attrs[m[1]] = m[2] ?? "";
  return attrs;
}

/**
 * The dialogs' plain form rows, written once. In a node's .html template a line
 *   <traffic-select prop="mode" icon="random" options="redirect tproxy plain" class="traffic-x">
 *   <traffic-text prop="port" icon="plug" width="80px" placeholder after class="traffic-x">
 * becomes the row Node-RED's editor fills by id (node-input-<prop>): a label, then a select
 * (70% wide) or a text input, with their texts from the node's catalogue by key:
 * <node>.label.<prop>, <node>.option.<prop>.<value>, <node>.placeholder.<prop> (with
 * `placeholder`), <node>.text.<prop>After (with `after`). Rows of another shape stay markup.
 */
function expandDialogRows(html, node) {
  return html.replace(/^( *)<traffic-(select|text)\b([^>]*)>\n/gm, (_line, indent, kind, attrText) => {
    const a = rowAttributes(attrText);
    if (!a.prop) throw new Error(`nodes/${node}: <traffic-${kind}> without prop`);
    const id = `node-input-${a.prop}`;
    const icon = a.icon ? `<i class="fa fa-${a.icon}"></i> ` : "";
    const lines = [
      `<div class="form-row${a.class ? ` ${a.class}` : ""}">`,
      `  <label for="${id}">${icon}<span data-i18n="${node}.label.${a.prop}"></span></label>`,
    ];
    if (kind === "select") {
      lines.push(`  <select id="${id}" style="width:70%">`);
      for (const value of (a.options ?? "").split(/\s+/).filter((v) => v !== "")) {
        lines.push(`    <option value="${value}" data-i18n="${node}.option.${a.prop}.${value}"></option>`);
      }
      lines.push("  </select>");
    } else {
      const width = a.width ? ` style="width:${a.width}"` : "";
      const placeholder = a.placeholder !== undefined ? ` data-i18n="[placeholder]${node}.placeholder.${a.prop}"` : "";
      const after = a.after !== undefined ? ` <span data-i18n="${node}.text.${a.prop}After"></span>` : "";
      lines.push(`  <input type="text" id="${id}"${width}${placeholder}>${after}`);
    }
    lines.push("</div>");
    return lines.map((l) => `${indent}${l}\n`).join("");
  });
}

/** A node's editor file as Node-RED gets it: defaults filled in, rows expanded. */
function editorHtml(file, defaults) {
  const node = path.basename(path.dirname(file));
  const html = expandDialogRows(fs.readFileSync(file, "utf8").replace(/\bTRAFFIC_DEFAULTS\b/g, defaults), node);
  // A row tag the expansion did not take (misspelt, or not alone on its line) would reach the editor as an unknown element.
  const left = /<traffic-[\w-]+/.exec(html);
  if (left !== null) throw new Error(`nodes/${node}/${path.basename(file)}: ${left[0]} is not a row the build expands`);
  return html;
}

function bundleEditorHtml() {
  // The dialogs take their field defaults from the table the runtime applies (compiled above).
  const defaults = JSON.stringify(require(path.join(root, "dist", "nodes", "common", "defaults.js")).NODE_DEFAULTS);
  const parts = editorFiles().map((file) => {
    const rel = path.relative(root, file);
    const html = editorHtml(file, defaults);
    // Node-RED reads help from the dialog file first: one left there would hide the
    // locale file's help in every language.
    if (/data-help-name=/.test(html)) throw new Error(`${rel}: help text belongs in nodes/<name>/locales/<lang>/<name>.html`);
    return `<!-- ${rel} -->\n${html.trim()}\n`;
  });
  const banner = "<!-- Generated by scripts/build.js from nodes/*/*.html; edit those files. -->\n";
  fs.writeFileSync(path.join(root, "traffic.html"), banner + parts.join("\n"));
}

/** Copies `from` into `into`; two files giving the same key is a build error. */
function mergeCatalogue(into, from, file, prefix = "") {
  for (const [key, value] of Object.entries(from)) {
    const name = prefix === "" ? key : `${prefix}.${key}`;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      if (into[key] === undefined) into[key] = {};
      else if (typeof into[key] !== "object") throw new Error(`${file}: ${name} is also a message elsewhere`);
      mergeCatalogue(into[key], value, file, name);
    } else if (typeof value !== "string") {
      throw new Error(`${file}: ${name} is not a string`);
    } else if (into[key] !== undefined) {
      throw new Error(`${file}: ${name} is defined twice`);
    } else {
      into[key] = value;
    }
  }
}

/** Per language, the nodes' catalogue and help files: { "en-US": { json: [...], html: [...] } }. */
function localeSources() {
  const nodesDir = path.join(root, "nodes");
  const byLang = {};
  for (const name of fs.readdirSync(nodesDir).sort()) {
    const dir = path.join(nodesDir, name, "locales");
    if (!fs.existsSync(dir)) continue;
    for (const lang of fs.readdirSync(dir).sort()) {
      const entry = (byLang[lang] ??= { json: [], html: [] });
      for (const kind of ["json", "html"]) {
        const file = path.join(dir, lang, `${name}.${kind}`);
        if (fs.existsSync(file)) entry[kind].push(file);
      }
    }
  }
  return byLang;
}

function bundleLocales() {
  const out = path.join(root, "locales");
  fs.rmSync(out, { recursive: true, force: true });
  for (const [lang, files] of Object.entries(localeSources())) {
    const catalogue = {};
    for (const file of files.json) mergeCatalogue(catalogue, JSON.parse(fs.readFileSync(file, "utf8")), path.relative(root, file));
    const help = files.html.map((file) => `<!-- ${path.relative(root, file)} -->\n${fs.readFileSync(file, "utf8").trim()}\n`);
    fs.mkdirSync(path.join(out, lang), { recursive: true });
    fs.writeFileSync(path.join(out, lang, "traffic.json"), JSON.stringify(catalogue, null, 2) + "\n");
    fs.writeFileSync(path.join(out, lang, "traffic.html"), help.join("\n"));
  }
}

function generateSchemas() {
  require("./schemas").writeSchemas();
}

function main() {
  // An installed tarball already carries dist/ and has no TypeScript: nothing to do.
  const hasSources = fs.existsSync(path.join(root, "tsconfig.build.json"));
  let hasCompiler = true;
  try {
    require.resolve("typescript/bin/tsc", { paths: [root] });
  } catch {
    hasCompiler = false;
  }
  if (!hasSources || !hasCompiler) {
    process.stdout.write("build: no TypeScript sources or compiler here, using the shipped dist/\n");
    return;
  }
  step("native addons", () => buildNative());
  step("typescript", compileTypeScript);
  step("editor html", bundleEditorHtml);
  step("locales", bundleLocales);
  // Event JSON Schemas come from src/events/types.ts; the generator is a dev dependency.
  let hasSchemaGenerator = true;
  try {
    require.resolve("typescript-json-schema", { paths: [root] });
  } catch {
    hasSchemaGenerator = false;
  }
  if (hasSchemaGenerator) step("json schemas", generateSchemas);
}

module.exports = { main, expandDialogRows };

if (require.main === module) main();

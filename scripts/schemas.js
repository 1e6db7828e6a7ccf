#!/usr/bin/env node
// Generates schemas/<type>.json (and schemas/event.json, any event) from the event
// interfaces in src/events/types.ts with typescript-json-schema. The build writes them;
// `--check` and the schema test compare instead, so stale committed schemas fail CI.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const typesFile = path.join(root, "src", "events", "types.ts");
const outDir = path.join(root, "schemas");
const ID_BASE = "https://traffic-policy.github.io/node-red-traffic-policy/schemas/";

/** Reads EVENT_INTERFACES from the TypeScript source so the list lives in one place. */
function eventInterfaces() {
  const text = fs.readFileSync(typesFile, "utf8");
  const block = /EVENT_INTERFACES[^{]*\{([^}]*)\}/.exec(text);
  if (!block) throw new Error("EVENT_INTERFACES not found in src/events/types.ts");
  const out = {};
  for (const m of block[1].matchAll(/"?([a-z-]+)"?\s*:\s*"([A-Za-z]+)"/g)) out[m[1]] = m[2];
  return out;
}

/** Returns { "<file>.json": text } for every schema, without writing anything. */
function generateSchemas() {
  const TJS = require("typescript-json-schema");
  const program = TJS.getProgramFromFiles([typesFile], { strict: true, skipLibCheck: true, types: ["node"] }, root);
  const generator = TJS.buildGenerator(program, {
    required: true,
    noExtraProps: true,
    strictNullChecks: true,
    titles: false,
    ref: true,
    aliasRef: false,
    topRef: false,
    ignoreErrors: false,
  });
  if (generator === null) throw new Error("typescript-json-schema could not compile src/events/types.ts");
  const files = {};
  const write = (name, symbol) => {
    const { $schema, ...schema } = generator.getSchemaForSymbol(symbol);
    const withId = { $schema: $schema ?? "http://json-schema.org/draft-07/schema#", $id: `${ID_BASE}${name}.json`, ...schema };
    files[`${name}.json`] = `${JSON.stringify(withId, null, 2)}\n`;
  };
  for (const [type, symbol] of Object.entries(eventInterfaces())) write(type, symbol);
  write("event", "TrafficEvent");
  return files;
}

/** Names of schema files that differ from what the sources generate (missing, stale or extra). */
function staleSchemas(files = generateSchemas()) {
  const stale = [];
  for (const [name, text] of Object.entries(files)) {
    const file = path.join(outDir, name);
    if (!fs.existsSync(file) || fs.readFileSync(file, "utf8") !== text) stale.push(name);
  }
  if (fs.existsSync(outDir)) {
    for (const name of fs.readdirSync(outDir)) if (name.endsWith(".json") && !(name in files)) stale.push(name);
  }
  return stale.sort();
}

function writeSchemas() {
  const files = generateSchemas();
  fs.mkdirSync(outDir, { recursive: true });
  for (const name of fs.readdirSync(outDir)) if (name.endsWith(".json") && !(name in files)) fs.rmSync(path.join(outDir, name));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(outDir, name), text);
  return Object.keys(files).length;
}

module.exports = { generateSchemas, staleSchemas, writeSchemas };

if (require.main === module) {
  if (process.argv.includes("--check")) {
    const stale = staleSchemas();
    if (stale.length > 0) {
      console.error(`schemas/ is stale (${stale.join(", ")}): run npm run build and commit schemas/`);
      process.exit(1);
    }
    console.log("schemas/ is up to date");
  } else {
    console.log(`wrote ${writeSchemas()} schemas to schemas/`);
  }
}

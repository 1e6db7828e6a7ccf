#!/usr/bin/env node
// Builds the C++ addon (binding.gyp → build/Release/traffic_native.node) with node-gyp.
// `npm install` runs it. A failed build does not fail the install: the nodes that need
// the addon then say what is missing (src/native/index.ts), the others keep working.
"use strict";
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const ADDON = path.join(root, "build", "Release", "traffic_native.node");
const SOURCES = [path.join(root, "binding.gyp"), ...listSources(path.join(root, "native"))];

function listSources(dir) {
  try {
    return fs
      .readdirSync(dir)
      .filter((f) => /\.(cc|h)$/.test(f))
      .map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

/** node-gyp as npm provides it to lifecycle scripts, else a local or npm-bundled copy. */
function nodeGypScript() {
  if (process.env.npm_config_node_gyp && fs.existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  const candidates = [
    () => require.resolve("node-gyp/bin/node-gyp.js", { paths: [root] }),
    () => path.join(path.dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  ];
  for (const candidate of candidates) {
    try {
      const file = candidate();
      if (fs.existsSync(file)) return file;
    } catch {
      // next
    }
  }
  return null;
}

/**
 * Node's headers: node-gyp downloads them unless told where they are. When this Node's
 * own headers are installed (Debian's nodejs puts them in /usr/include/node), use them so
 * an offline machine can build.
 */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), "..");
  const versionHeader = path.join(prefix, "include", "node", "node_version.h");
  try {
    const text = fs.readFileSync(versionHeader, "utf8");
    const v = (name) => (text.match(new RegExp(`#define ${name} (\\d+)`)) || [])[1];
    if (`v${v("NODE_MAJOR_VERSION")}.${v("NODE_MINOR_VERSION")}.${v("NODE_PATCH_VERSION")}` === process.version) {
      return [`--nodedir=${prefix}`];
    }
  } catch {
    // no local headers: node-gyp fetches them
  }
  return [];
}

/** True when the addon exists and is newer than every source. */
function upToDate() {
  try {
    const built = fs.statSync(ADDON).mtimeMs;
    return SOURCES.every((file) => fs.statSync(file).mtimeMs <= built);
  } catch {
    return false;
  }
}

/** Builds the addon; returns true on success, prints what to do otherwise. */
function buildNative({ force = false } = {}) {
  if (process.platform !== "linux") {
    process.stdout.write(`build: native addon skipped: it is Linux-only (this is ${process.platform})\n`);
    return false;
  }
  if (!force && upToDate()) return true;
  const gyp = nodeGypScript();
  if (gyp === null) {
    process.stdout.write("build: native addon NOT built: node-gyp not found (install npm or `npm i -g node-gyp`)\n");
    return false;
  }
  const result = spawnSync(process.execPath, [gyp, "rebuild", ...nodedirArgs()], { cwd: root, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  if (result.status === 0 && fs.existsSync(ADDON)) return true;
  const output = `${result.stdout || ""}${result.stderr || ""}`;
  process.stdout.write(output.split("\n").slice(-30).join("\n"));
  process.stdout.write(
    "\nbuild: native addon NOT built. The transparent in / original dst nodes need it; the other nodes work.\n" +
      "  It needs a C++ compiler, make and python3 (Debian: apt-get install g++ make python3),\n" +
      "  and Node's headers (downloaded by node-gyp, or --nodedir). Then run: npm rebuild\n",
  );
  return false;
}

module.exports = { buildNative, ADDON };

if (require.main === module) {
  buildNative({ force: process.argv.includes("--force") });
  // Never fail the install: see the note at the top.
  process.exit(0);
}

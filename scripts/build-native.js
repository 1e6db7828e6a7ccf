#!/usr/bin/env node
// Builds the C++ addons of binding.gyp with node-gyp: traffic_native.node (transparent
// sockets) and flow.node (the flow source). `npm install` runs it with --install: then,
// when the package's prebuilds (scripts/prebuild.js) fit this system, nothing is compiled;
// otherwise it says that none fits and compiles (`npm rebuild --build-from-source`
// compiles in any case). A failed build does not
// fail the install: the nodes that need an addon then say what is missing
// (src/native/index.ts, src/flow/native.ts), the others keep working. Without
// clang/bpftool the flow addon still builds, without its BPF program (sock_diag only).
"use strict";
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const ADDONS = ["traffic_native.node", "flow.node"].map((f) => path.join(root, "build", "Release", f));

function listSources(dir) {
  let out = [];
  let entries = [];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const file = path.join(dir, e.name);
    if (e.isDirectory()) out = out.concat(listSources(file));
    else if (/\.(cc|h|c|js)$/.test(e.name)) out.push(file);
  }
  return out;
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

/** Node's own headers when installed (Debian puts them in /usr/include/node): builds offline. */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), "..");
  try {
    const text = fs.readFileSync(path.join(prefix, "include", "node", "node_version.h"), "utf8");
    const v = (name) => (text.match(new RegExp(`#define ${name} (\\d+)`)) || [])[1];
    if (`v${v("NODE_MAJOR_VERSION")}.${v("NODE_MINOR_VERSION")}.${v("NODE_PATCH_VERSION")}` === process.version) return [`--nodedir=${prefix}`];
  } catch {
    // node-gyp fetches the headers
  }
  return [];
}

function upToDate() {
  try {
    const built = Math.min(...ADDONS.map((f) => fs.statSync(f).mtimeMs));
    const sources = [path.join(root, "binding.gyp"), ...listSources(path.join(root, "native"))];
    return sources.every((file) => fs.statSync(file).mtimeMs <= built);
  } catch {
    return false;
  }
}

/** Builds the addons; returns true on success, prints what to do otherwise. */
function buildNative({ force = false } = {}) {
  if (process.platform !== "linux") {
    process.stdout.write(`build: native addons skipped: Linux-only (this is ${process.platform})\n`);
    return false;
  }
  if (!force && upToDate()) return true;
  const gyp = nodeGypScript();
  if (gyp === null) {
    process.stdout.write("build: native addons NOT built: node-gyp not found (install npm or `npm i -g node-gyp`)\n");
    return false;
  }
  const result = spawnSync(process.execPath, [gyp, "rebuild", ...nodedirArgs()], { cwd: root, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  const output = `${result.stdout || ""}${result.stderr || ""}`;
  for (const line of output.split("\n")) if (line.startsWith("flow-bpf:")) process.stdout.write(`build: ${line}\n`);
  if (result.status === 0 && ADDONS.every((f) => fs.existsSync(f))) return true;
  process.stdout.write(output.split("\n").slice(-30).join("\n"));
  process.stdout.write(
    "\nbuild: native addons NOT built. It needs a C++ compiler, make and python3 (Debian: apt-get install g++ make python3);\n" +
      "  eBPF capture also clang, llvm, libbpf-dev, bpftool, pkg-config. Then run: npm rebuild\n",
  );
  return false;
}

/**
 * The prebuilt addons that fit this system, found by the package's own loader
 * (dist/src/native/addon-dir.js, node-gyp-build's matching), or why there are none.
 */
function fittingPrebuilds() {
  let loader;
  try {
    loader = require(path.join(root, "dist", "src", "native", "addon-dir.js"));
  } catch {
    return { files: null, target: `${process.platform}-${process.arch}`, why: "the package is not built (no dist/)" };
  }
  // A checkout whose dist/ predates the prebuild loader: compile, as without dist/.
  if (typeof loader.findPrebuild !== "function" || typeof loader.prebuildTarget !== "function") {
    return { files: null, target: `${process.platform}-${process.arch}`, why: "dist/ is older than the sources (npm run build)" };
  }
  const files = ADDONS.map((f) => loader.findPrebuild(root, path.basename(f)));
  return { files: files.every((f) => f !== null) ? files : null, target: loader.prebuildTarget(), why: "" };
}

/** The install step: the prebuilds when they fit (and no build from source is asked for), else a compile. */
function install() {
  const fromSource = ["true", "1"].includes(String(process.env.npm_config_build_from_source));
  const found = fittingPrebuilds();
  if (!fromSource && found.files !== null) {
    process.stdout.write(`build: using the prebuilt addons for ${found.target} (${found.files.map((f) => path.relative(root, f)).join(", ")}): nothing to compile\n`);
    return true;
  }
  const why = fromSource ? "--build-from-source was asked for" : `no prebuilt addon fits ${found.target}${found.why ? `: ${found.why}` : ""}`;
  process.stdout.write(`build: ${why}; compiling the native addons with node-gyp (needs g++, make, python3)\n`);
  return buildNative({ force: fromSource });
}

module.exports = { buildNative, ADDONS, listSources, nodeGypScript, nodedirArgs };

if (require.main === module) {
  if (process.argv.includes("--install")) install();
  else buildNative({ force: process.argv.includes("--force") });
  process.exit(0);
}

#!/usr/bin/env node
// Builds both addons of binding.gyp with AddressSanitizer and UndefinedBehaviorSanitizer
// into build-sanitized/build/Release, leaving the normal build/ alone. node-gyp writes
// into <dir>/build of the directory it runs in, so the build runs in a copy of
// binding.gyp and native/ under build-sanitized/; the sanitizer flags come in through
// CFLAGS/CXXFLAGS/LDFLAGS, which the generated Makefiles add to every compile and link
// (the BPF object is compiled by native/flow/build-bpf.js with its own flags).
// Load the result with TRAFFIC_NATIVE_DIR=build-sanitized/build/Release and the sanitizer
// runtime preloaded: scripts/test-sanitize.js does both.
"use strict";
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { listSources, nodeGypScript, nodedirArgs } = require("./build-native");

const root = path.resolve(__dirname, "..");
const stage = path.join(root, "build-sanitized");
const outDir = path.join(stage, "build", "Release");
const ADDONS = ["traffic_native.node", "flow.node"].map((f) => path.join(outDir, f));
// -fno-sanitize-recover: undefined behaviour aborts like a memory error, it is never just a
// line on stderr that a passing run could hide.
const SANITIZE = "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g";

function upToDate() {
  try {
    const built = Math.min(...ADDONS.map((f) => fs.statSync(f).mtimeMs));
    const sources = [path.join(root, "binding.gyp"), __filename, ...listSources(path.join(root, "native"))];
    return sources.every((file) => fs.statSync(file).mtimeMs <= built);
  } catch {
    return false;
  }
}

/** Builds the sanitized addons unless up to date; returns their directory, throws with the build output on failure. */
function buildSanitized({ force = false } = {}) {
  if (!force && upToDate()) return outDir;
  const gyp = nodeGypScript();
  if (gyp === null) throw new Error("node-gyp not found (install npm or `npm i -g node-gyp`)");
  fs.mkdirSync(stage, { recursive: true });
  fs.rmSync(path.join(stage, "native"), { recursive: true, force: true });
  fs.cpSync(path.join(root, "native"), path.join(stage, "native"), { recursive: true });
  fs.copyFileSync(path.join(root, "binding.gyp"), path.join(stage, "binding.gyp"));
  const env = {
    ...process.env,
    CFLAGS: `${process.env.CFLAGS || ""} ${SANITIZE}`.trim(),
    CXXFLAGS: `${process.env.CXXFLAGS || ""} ${SANITIZE}`.trim(),
    LDFLAGS: `${process.env.LDFLAGS || ""} -fsanitize=address,undefined`.trim(),
  };
  const result = spawnSync(process.execPath, [gyp, "rebuild", ...nodedirArgs()], { cwd: stage, env, encoding: "utf8" });
  if (result.status !== 0 || !ADDONS.every((f) => fs.existsSync(f))) {
    throw new Error(`sanitized build failed:\n${`${result.stdout || ""}${result.stderr || ""}`.split("\n").slice(-40).join("\n")}`);
  }
  return outDir;
}

module.exports = { buildSanitized, SANITIZED_DIR: outDir };

if (require.main === module) {
  try {
    process.stdout.write(`build: sanitized addons in ${buildSanitized({ force: process.argv.includes("--force") })}\n`);
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
}

#!/usr/bin/env node
// npm pack / npm publish hooks. `prepack`: builds dist/, makes the prebuilds
// (scripts/prebuild.js) unless they are there and newer than the native sources, and
// writes the package.json that ships: its only script is `install`
// (scripts/build-native.js, shipped), the development scripts need files that are not
// in the package. The original is kept in package.json.pack-orig until `postpack` puts it
// back (a failed pack leaves it there: run `node scripts/pack.js postpack`).
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { TARGETS, current } = require("./prebuild");

const root = path.resolve(__dirname, "..");
const manifest = path.join(root, "package.json");
const saved = path.join(root, "package.json.pack-orig");

function prepack() {
  execFileSync(process.execPath, [path.join(root, "scripts", "build.js")], { cwd: root, stdio: "inherit", timeout: 10 * 60 * 1000 });
  if (!Object.keys(TARGETS).every(current)) execFileSync(process.execPath, [path.join(root, "scripts", "prebuild.js")], { cwd: root, stdio: "inherit", timeout: 20 * 60 * 1000 });
  const text = fs.readFileSync(manifest, "utf8");
  if (!fs.existsSync(saved)) fs.writeFileSync(saved, text);
  const pkg = JSON.parse(text);
  pkg.scripts = { install: pkg.scripts.install };
  delete pkg.devDependencies;
  fs.writeFileSync(manifest, `${JSON.stringify(pkg, null, 2)}\n`);
}

function postpack() {
  if (fs.existsSync(saved)) fs.renameSync(saved, manifest);
}

const step = process.argv[2];
if (step === "prepack") prepack();
else if (step === "postpack") postpack();
else {
  process.stderr.write("usage: node scripts/pack.js prepack|postpack\n");
  process.exit(2);
}

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const ROOT = path.resolve(__dirname, "..", "..");

/**
 * prebuilds/linux-<arch>/, made by scripts/prebuild.js (`npm run prebuild`) unless current.
 * It runs one build at a time, so test files calling this together wait for each other.
 */
export function ensurePrebuilt(arch: "x64" | "arm64"): string {
  execFileSync(process.execPath, [path.join(ROOT, "scripts", "prebuild.js"), arch], { cwd: ROOT, stdio: "pipe", timeout: 15 * 60 * 1000 });
  return path.join(ROOT, "prebuilds", `linux-${arch}`);
}

/**
 * A package root in a new temporary directory, as the addon loaders see an installed
 * package: binding.gyp and the compiled loaders (dist/src), no compiled addon; with
 * `prebuilt`, that prebuilds/linux-<arch> directory and node_modules (node-gyp-build
 * resolves from the package, as when installed). The caller removes it.
 */
export function loaderPackage(prebuilt?: { arch: string; from: string }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-loader-"));
  fs.writeFileSync(path.join(dir, "binding.gyp"), "{}");
  fs.writeFileSync(path.join(dir, "package.json"), "{}");
  for (const file of ["native/index.js", "native/addon-dir.js", "flow/native.js", "errors.js"]) {
    fs.mkdirSync(path.dirname(path.join(dir, "dist", "src", file)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, "dist", "src", file), path.join(dir, "dist", "src", file));
  }
  if (prebuilt) {
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"), "dir");
    fs.cpSync(prebuilt.from, path.join(dir, "prebuilds", `linux-${prebuilt.arch}`), { recursive: true });
  }
  return dir;
}

/**
 * A node -e script that loads both addons through the loaders of the package at `dir` and
 * prints JSON: `fields` (an object literal's body, with `a` the native addon and `flow` the
 * flow addon) and `maps`, the prebuilt files mapped into the process, sorted.
 */
export function prebuildLoadScript(dir: string, fields: string): string {
  return `const n=require(${JSON.stringify(path.join(dir, "dist", "src", "native", "index.js"))});
const f=require(${JSON.stringify(path.join(dir, "dist", "src", "flow", "native.js"))});
const a=n.loadNative();const flow=f.loadFlowAddon();
const maps=require("fs").readFileSync("/proc/self/maps","utf8");
process.stdout.write(JSON.stringify({${fields},maps:maps.split("\\n").filter((l)=>l.includes("prebuilds")).map((l)=>l.slice(l.indexOf("/"))).filter((v,i,all)=>all.indexOf(v)===i).sort()}))`;
}

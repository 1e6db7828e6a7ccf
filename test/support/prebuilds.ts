import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const ROOT = path.resolve(__dirname, "..", "..");
const FILES = ["traffic_native.napi.glibc.node", "flow.napi.glibc.node", "flow.bpf.o", "flow.skel.h"];

/** prebuilds/linux-<arch>/, made by `npm run prebuild` (scripts/prebuild.js) when missing. */
export function ensurePrebuilt(arch: "x64" | "arm64"): string {
  const dir = path.join(ROOT, "prebuilds", `linux-${arch}`);
  if (!FILES.every((f) => fs.existsSync(path.join(dir, f)))) {
    execFileSync(process.execPath, [path.join(ROOT, "scripts", "prebuild.js"), arch], { cwd: ROOT, stdio: "pipe", timeout: 10 * 60 * 1000 });
  }
  return dir;
}

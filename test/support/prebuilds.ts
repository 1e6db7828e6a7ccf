import { execFileSync } from "node:child_process";
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

import path from "node:path";

/**
 * The directory both addon loaders (src/native/index.ts, src/flow/native.ts) load from:
 * `TRAFFIC_NATIVE_DIR` when set (a relative path is taken from the package root), else the
 * package's own build/Release. The variable exists for the sanitizer build
 * (scripts/build-sanitized.js writes build-sanitized/build/Release): the same code and
 * tests then run against the instrumented addons without touching the normal build.
 */
export function nativeAddonDir(root: string): string {
  const override = process.env["TRAFFIC_NATIVE_DIR"];
  if (override !== undefined && override !== "") return path.resolve(root, override);
  return path.join(root, "build", "Release");
}

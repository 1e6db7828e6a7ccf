import fs from "node:fs";
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

interface Tags {
  readonly file: string;
}

/** The parts of node-gyp-build that pick a prebuild: its tuple and tag matching. */
interface NodeGypBuild {
  parseTuple(name: string): unknown;
  matchTuple(platform: string, arch: string): (tuple: unknown) => boolean;
  compareTuples(a: unknown, b: unknown): number;
  parseTags(file: string): Tags | undefined;
  matchTags(runtime: string, abi: string): (tags: Tags | undefined) => boolean;
  compareTags(runtime: string): (a: Tags, b: Tags) => number;
}

/** What this process needs of a prebuild, as node-gyp-build matches it. */
export function prebuildTarget(): string {
  const libc = process.env["LIBC"] ?? (fs.existsSync("/etc/alpine-release") ? "musl" : "glibc");
  return `${process.platform}-${process.env["npm_config_arch"] ?? process.arch} (${libc})`;
}

function readdir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * The prebuilt `<name>.node` in the package's prebuilds/<platform>-<arch>/ that fits this
 * process (made by scripts/prebuild.js with prebuildify: `<name>.napi.glibc.node`), or
 * null. node-gyp-build's own matching picks the directory and the file; its loader takes
 * the first .node of a directory, and this package has two addons side by side.
 */
export function findPrebuild(root: string, name: string): string | null {
  let gyp: NodeGypBuild;
  try {
    gyp = require("node-gyp-build") as NodeGypBuild;
  } catch {
    return null;
  }
  const base = path.join(root, "prebuilds");
  const arch = process.env["npm_config_arch"] ?? process.arch;
  const tuple = readdir(base)
    .map((d) => gyp.parseTuple(d))
    .filter(gyp.matchTuple(process.platform, arch))
    .sort(gyp.compareTuples)[0] as { name: string } | undefined;
  if (tuple === undefined) return null;
  const dir = path.join(base, tuple.name);
  const stem = path.basename(name, ".node");
  const winner = readdir(dir)
    .filter((f) => f.split(".")[0] === stem)
    .map((f) => gyp.parseTags(f))
    .filter((t): t is Tags => gyp.matchTags("node", process.versions.modules)(t))
    .sort(gyp.compareTags("node"))[0];
  return winner === undefined ? null : path.join(dir, winner.file);
}

/**
 * The addon file to load: from `TRAFFIC_NATIVE_DIR` when set; else the package's own
 * build (compiled at install when no prebuild fitted, or by a developer); else the
 * prebuild for this platform. The path returned may not exist: the loader says why.
 */
export function addonFile(root: string, name: string): { readonly file: string; readonly prebuilt: boolean } {
  const built = path.join(nativeAddonDir(root), name);
  const override = process.env["TRAFFIC_NATIVE_DIR"];
  if ((override !== undefined && override !== "") || fs.existsSync(built)) return { file: built, prebuilt: false };
  const prebuild = findPrebuild(root, name);
  return prebuild === null ? { file: built, prebuilt: false } : { file: prebuild, prebuilt: true };
}

/**
 * Programs built from source on first use (the load generator, the flow floor's
 * BPF object and loader), cached in the temp directory under a hash of their inputs.
 */
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT } from "./root";

/** A source file of the checkout (`test/rigs/loadgen.c`), found from source or from dist/. */
export function checkoutSource(relative: string): string {
  const places = [path.join(ROOT, relative)];
  const found = places.find((p) => fs.existsSync(p));
  if (found === undefined) throw new Error(`${relative} not found (looked in ${places.join(", ")})`);
  return found;
}

/**
 * The path `<tmpdir>/traffic-policy-<name>-<hash of inputs>`, built by `build` when it is
 * not there yet. `build` writes to a private path (a file or a directory) that is then
 * renamed into place, so two runs never use half-written output.
 */
export function cachedBuild(name: string, inputs: ReadonlyArray<string | Buffer>, build: (privatePath: string) => void): string {
  const hash = crypto.createHash("sha256");
  for (const input of inputs) hash.update(input);
  const out = path.join(os.tmpdir(), `traffic-policy-${name}-${hash.digest("hex").slice(0, 16)}`);
  if (fs.existsSync(out)) return out;
  const tmp = `${out}.${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  build(tmp);
  try {
    fs.renameSync(tmp, out);
  } catch (err) {
    // Another run put its copy in place first (a directory cannot be renamed over it).
    if (!fs.existsSync(out)) throw err;
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

/**
 * A one-file C program of the checkout (`bench/rrgen.c`) compiled with `-O2 -Wall -Wextra`
 * and `flags`, cached under the name of its file; throws with the compiler's output when
 * it fails.
 */
export function cachedCProgram(relative: string, flags: readonly string[] = [], cc = "cc"): string {
  const source = checkoutSource(relative);
  return cachedBuild(path.basename(relative, ".c"), [fs.readFileSync(source), ...flags], (out) => {
    const r = spawnSync(cc, ["-O2", "-Wall", "-Wextra", ...flags, "-o", out, source], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${cc} ${source}: ${r.error?.message ?? r.stderr}`);
  });
}

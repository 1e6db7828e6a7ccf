import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

/**
 * The package's own package.json, found by walking up from this file: the same code runs
 * from src/ (tests) and from dist/src/ (installed), at different depths.
 */
function findPackageJson(): { name: string; version: string } {
  let dir = __dirname;
  for (;;) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "@traffic-policy/node-red-traffic-policy") return { name: pkg.name, version: pkg.version ?? "0.0.0" };
    }
    const parent = dirname(dir);
    if (parent === dir) return { name: "@traffic-policy/node-red-traffic-policy", version: "0.0.0" };
    dir = parent;
  }
}

/** Name and version of this package. */
export const PACKAGE = findPackageJson();

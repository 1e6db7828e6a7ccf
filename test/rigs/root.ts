import fs from "node:fs";
import path from "node:path";

/**
 * The checkout's root: the nearest directory above this module with a package.json, so the
 * rigs find it both from source (test/rigs, run by vitest) and compiled (dist/test/rigs,
 * run by the bench).
 */
export const ROOT = ((): string => {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "package.json"))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${__dirname}`);
  }
})();

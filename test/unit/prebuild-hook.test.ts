// npm runs a script named "prebuild" before "build": `npm run build` must not make the
// prebuilds, `npm run prebuild` must. Real npm runs in a scratch package whose scripts
// call scripts/prebuild.js.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const PREBUILD = path.resolve(__dirname, "..", "..", "scripts", "prebuild.js");
const dirs: string[] = [];

function scratch(scripts: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-hook-"));
  dirs.push(dir);
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "hook-check", version: "1.0.0", private: true, scripts }));
  return dir;
}

function npmRun(dir: string, script: string): { status: number | null; out: string } {
  const r = spawnSync("npm", ["run", "--silent", script], { cwd: dir, encoding: "utf8", timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("npm's prebuild pre-hook", () => {
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it("tells the pre-hook of `npm run build` from `npm run prebuild`", () => {
    const dir = scratch({ prebuild: "node hook.js", build: `node -e "process.stdout.write('build;')"` });
    fs.writeFileSync(path.join(dir, "hook.js"), `process.stdout.write("hook=" + require(${JSON.stringify(PREBUILD)}).preHookOfBuild() + ";");\n`);
    expect(npmRun(dir, "build")).toEqual({ status: 0, out: "hook=true;build;" });
    expect(npmRun(dir, "prebuild")).toEqual({ status: 0, out: "hook=false;" });
  });

  it("scripts/prebuild.js does nothing as the pre-hook of `npm run build`", () => {
    const dir = scratch({ prebuild: `node ${JSON.stringify(PREBUILD)}`, build: `node -e "process.stdout.write('build;')"` });
    const r = npmRun(dir, "build");
    expect(r.status, r.out).toBe(0);
    expect(r.out).toBe("prebuild: not run as the pre-hook of `npm run build`; `npm run prebuild` makes the prebuilds\nbuild;");
  });
});

// The addon loader names what is missing: run against copies of the compiled loader in
// package layouts this test builds (no addon, a broken addon, no build tools on PATH).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../support/netns";

const ROOT = path.resolve(__dirname, "..", "..");
const dirs: string[] = [];

/** A package root with binding.gyp and the compiled loader, optionally with an addon file. */
function fakePackage(addon: Buffer | null): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-loader-"));
  dirs.push(dir);
  fs.writeFileSync(path.join(dir, "binding.gyp"), "{}");
  fs.mkdirSync(path.join(dir, "dist", "src", "native"), { recursive: true });
  fs.copyFileSync(path.join(ROOT, "dist", "src", "native", "index.js"), path.join(dir, "dist", "src", "native", "index.js"));
  fs.copyFileSync(path.join(ROOT, "dist", "src", "errors.js"), path.join(dir, "dist", "src", "errors.js"));
  if (addon !== null) {
    fs.mkdirSync(path.join(dir, "build", "Release"), { recursive: true });
    fs.writeFileSync(path.join(dir, "build", "Release", "traffic_native.node"), addon);
  }
  return dir;
}

function availability(dir: string, env: NodeJS.ProcessEnv = process.env): { available: boolean; reason?: string } {
  const script = `const n=require(${JSON.stringify(path.join(dir, "dist", "src", "native", "index.js"))});
const a=n.nativeAvailability();let code;try{n.loadNative()}catch(e){code=e.code}
process.stdout.write(JSON.stringify({...a,code}))`;
  return JSON.parse(execFileSync(process.execPath, ["-e", script], { env, encoding: "utf8" })) as never;
}

describe("native addon loader", () => {
  beforeAll(() => ensureBuilt());
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it("loads the built addon", () => {
    expect(availability(fakePackage(fs.readFileSync(path.join(ROOT, "build", "Release", "traffic_native.node"))))).toMatchObject({ available: true });
  });

  it("says the build was not run, and how to run it", () => {
    const dir = fakePackage(null);
    const a = availability(dir);
    expect(a).toMatchObject({ available: false, code: "ERR_NATIVE_UNAVAILABLE" });
    expect(a.reason).toContain("was not built");
    expect(a.reason).toContain(`npm rebuild\` in ${dir}`);
  });

  it("names missing build tools", () => {
    const emptyBin = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-nobin-"));
    dirs.push(emptyBin);
    const a = availability(fakePackage(null), { ...process.env, PATH: emptyBin });
    expect(a.reason).toMatch(/missing build tools: c\+\+, make, python3/);
  });

  it("reports an addon that does not load", () => {
    const a = availability(fakePackage(Buffer.from("not an ELF file")));
    expect(a).toMatchObject({ available: false, code: "ERR_NATIVE_UNAVAILABLE" });
    expect(a.reason).toMatch(/failed to load/);
  });
});

// The addon loader names what is missing: run against copies of the compiled loader in
// package layouts this test builds (no addon, a broken addon, no build tools on PATH).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../support/netns";
import { ensurePrebuilt, loaderPackage, prebuildLoadScript } from "../support/prebuilds";

const ROOT = path.resolve(__dirname, "..", "..");
const dirs: string[] = [];

/** A package root with binding.gyp and the compiled loader, optionally with an addon file. */
function fakePackage(addon: Buffer | null): string {
  const dir = loaderPackage();
  dirs.push(dir);
  if (addon !== null) {
    fs.mkdirSync(path.join(dir, "build", "Release"), { recursive: true });
    fs.writeFileSync(path.join(dir, "build", "Release", "traffic_native.node"), addon);
  }
  return dir;
}

/** This process's environment without TRAFFIC_NATIVE_DIR (the sanitizer run sets it). */
function plainEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env["TRAFFIC_NATIVE_DIR"];
  return env;
}

function availability(dir: string, env: NodeJS.ProcessEnv = plainEnv()): { available: boolean; reason?: string } {
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
    const a = availability(fakePackage(null), { ...plainEnv(), PATH: emptyBin });
    expect(a.reason).toMatch(/missing build tools: c\+\+, make, python3/);
  });

  it("reports an addon that does not load", () => {
    const a = availability(fakePackage(Buffer.from("not an ELF file")));
    expect(a).toMatchObject({ available: false, code: "ERR_NATIVE_UNAVAILABLE" });
    expect(a.reason).toMatch(/failed to load/);
  });

  it("loads both addons from TRAFFIC_NATIVE_DIR, relative to the package root or absolute", () => {
    const dir = fakePackage(null);
    const alt = path.join(dir, "alt");
    fs.mkdirSync(alt);
    fs.copyFileSync(path.join(ROOT, "build", "Release", "traffic_native.node"), path.join(alt, "traffic_native.node"));
    fs.copyFileSync(path.join(ROOT, "build", "Release", "flow.node"), path.join(alt, "flow.node"));
    const script = `const n=require(${JSON.stringify(path.join(dir, "dist", "src", "native", "index.js"))});
const f=require(${JSON.stringify(path.join(dir, "dist", "src", "flow", "native.js"))});
n.loadNative();const ok=typeof f.loadFlowAddon().clocks==="function";
const maps=require("fs").readFileSync("/proc/self/maps","utf8");
process.stdout.write(JSON.stringify({ok,native:maps.includes(${JSON.stringify(path.join(alt, "traffic_native.node"))}),flow:maps.includes(${JSON.stringify(path.join(alt, "flow.node"))})}))`;
    for (const value of ["alt", alt]) {
      const out = JSON.parse(execFileSync(process.execPath, ["-e", script], { env: { ...plainEnv(), TRAFFIC_NATIVE_DIR: value }, encoding: "utf8" })) as unknown;
      expect(out).toEqual({ ok: true, native: true, flow: true });
    }
  });

  it("names the TRAFFIC_NATIVE_DIR file that is missing", () => {
    const dir = fakePackage(fs.readFileSync(path.join(ROOT, "build", "Release", "traffic_native.node")));
    const a = availability(dir, { ...plainEnv(), TRAFFIC_NATIVE_DIR: "/nonexistent-addon-dir" });
    expect(a).toMatchObject({ available: false, code: "ERR_NATIVE_UNAVAILABLE" });
    expect(a.reason).toContain("/nonexistent-addon-dir/traffic_native.node is missing");
  });

  it("loads both prebuilt addons (prebuildify's names, node-gyp-build's matching) when nothing was compiled", () => {
    const prebuilt = ensurePrebuilt("x64");
    const dir = loaderPackage({ arch: "x64", from: prebuilt });
    dirs.push(dir);
    const script = prebuildLoadScript(dir, "abi:a.abiVersion,ebpf:flow.ebpfBuilt,libbpf:flow.probe().libbpf");
    const out = JSON.parse(execFileSync(process.execPath, ["-e", script], { env: plainEnv(), encoding: "utf8" })) as { abi: number; ebpf: boolean; libbpf: boolean; maps: string[] };
    expect(out.abi).toBeGreaterThan(0);
    expect(out.ebpf).toBe(true);
    expect(out.libbpf).toBe(true);
    expect(out.maps).toEqual([path.join(dir, "prebuilds", "linux-x64", "flow.napi.glibc.node"), path.join(dir, "prebuilds", "linux-x64", "traffic_native.napi.glibc.node")]);
    // libbpf is inside the addon: no libbpf.so is loaded or needed.
    expect(execFileSync("readelf", ["-d", path.join(dir, "prebuilds", "linux-x64", "flow.napi.glibc.node")], { encoding: "utf8" })).not.toMatch(/libbpf/);
  }, 600_000);

  it("names the prebuilt addon that does not load, and how to compile instead", () => {
    const dir = fakePackage(null);
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"), "dir");
    fs.mkdirSync(path.join(dir, "prebuilds", `linux-${process.arch}`), { recursive: true });
    fs.writeFileSync(path.join(dir, "prebuilds", `linux-${process.arch}`, "traffic_native.napi.glibc.node"), "not an ELF file");
    const a = availability(dir);
    expect(a).toMatchObject({ available: false, code: "ERR_NATIVE_UNAVAILABLE" });
    expect(a.reason).toContain("the prebuilt native addon");
    expect(a.reason).toContain(`npm rebuild --build-from-source\` in ${dir}`);
  });

  it("says no prebuild fits this platform when there is none for it", () => {
    const dir = fakePackage(null);
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"), "dir");
    fs.mkdirSync(path.join(dir, "prebuilds", "linux-s390x"), { recursive: true });
    fs.writeFileSync(path.join(dir, "prebuilds", "linux-s390x", "traffic_native.napi.glibc.node"), "");
    const a = availability(dir);
    expect(a.reason).toContain(`no prebuilt addon fits linux-${process.arch} (glibc)`);
  });

  it("the sanitizer run really loads the addon from TRAFFIC_NATIVE_DIR", async () => {
    const dir = process.env["TRAFFIC_NATIVE_DIR"];
    if (dir === undefined) return; // only meaningful inside npm run test:sanitize
    const { loadNative } = await import("../../src/native/index");
    const { loadFlowAddon } = await import("../../src/flow/native");
    loadNative();
    loadFlowAddon();
    const maps = fs.readFileSync("/proc/self/maps", "utf8");
    expect(maps).toContain(path.resolve(ROOT, dir, "traffic_native.node"));
    expect(maps).toContain(path.resolve(ROOT, dir, "flow.node"));
    expect(maps).toMatch(/libasan\.so/);
  });
});

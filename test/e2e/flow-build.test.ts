import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { ensurePrebuilt } from "../support/prebuilds";
import { IN_CI } from "../support/system";

const root = path.resolve(__dirname, "..", "..");
const nodeGyp = path.join(path.dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js");
const dirs: string[] = [];

/** Builds the flow addon from a copy of the package's native sources with `env` changes. */
function buildCopy(env: Record<string, string>, prebuilds?: string): { dir: string; output: string; status: number | null } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-flow-build-"));
  dirs.push(dir);
  if (prebuilds !== undefined) fs.cpSync(prebuilds, path.join(dir, "prebuilds", path.basename(prebuilds)), { recursive: true });
  fs.copyFileSync(path.join(root, "binding.gyp"), path.join(dir, "binding.gyp"));
  fs.cpSync(path.join(root, "native"), path.join(dir, "native"), { recursive: true });
  fs.symlinkSync(path.join(root, "node_modules"), path.join(dir, "node_modules"), "dir");
  const r = spawnSync(process.execPath, [nodeGyp, "rebuild", `--nodedir=${path.resolve(path.dirname(process.execPath), "..")}`], {
    cwd: dir,
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 10 * 60 * 1000,
  });
  return { dir, output: `${r.stdout}${r.stderr}`, status: r.status };
}

/** Loads a built addon in a fresh process and reports what it offers. */
function inspect(dir: string): { ebpfBuilt: boolean; probe: Record<string, unknown>; startError: { code?: string; message: string }; dumpOk: boolean } {
  const script = `
    const a = require(${JSON.stringify(path.join(dir, "build", "Release", "flow.node"))});
    let startError = null;
    try { const c = new a.BpfCapture(); c.start({ events: 3, sides: 0, ports: [], cidrs: [], ringBytes: 4096, ownerFromIo: true }, () => {}); c.stop(); }
    catch (e) { startError = { code: e.code, message: e.message }; }
    const dumpOk = Buffer.isBuffer(a.diagDump(2, 1 << 10));
    process.stdout.write(JSON.stringify({ ebpfBuilt: a.ebpfBuilt, probe: a.probe(), startError, dumpOk }));`;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Why the addon cannot be built here, or null: node-gyp comes with this Node's npm. */
const cannotBuild = !fs.existsSync(nodeGyp)
  ? `node-gyp is not at ${nodeGyp} (this Node has no bundled npm)`
  : !fs.existsSync(path.join(root, "node_modules", "node-addon-api"))
    ? "node-addon-api is not installed"
    : null;
if (cannotBuild !== null && IN_CI) throw new Error(`${cannotBuild}, and under CI=true nothing may skip`);

describe("flow addon build without the BPF toolchain", () => {
  beforeEach((ctx) => ctx.skip(cannotBuild !== null, cannotBuild ?? ""));
  it("without clang: builds, loads, says why eBPF is missing, and sock_diag works", () => {
    const b = buildCopy({ FLOW_BPF_CLANG: "/nonexistent/clang" });
    expect(b.status, b.output).toBe(0);
    expect(b.output).toMatch(/flow-bpf: eBPF capture not built: missing clang/);
    const r = inspect(b.dir);
    expect(r.ebpfBuilt).toBe(false);
    expect(r.probe["skeleton"]).toBe(false);
    expect(String(r.probe["skeletonReason"])).toMatch(/apt-get install clang/);
    expect(r.startError.code).toBe("ENOTSUP");
    expect(r.dumpOk).toBe(true);
  }, 180_000);

  it("without clang and bpftool: compiles the shipped CO-RE object's skeleton in, eBPF works", () => {
    const b = buildCopy({ FLOW_BPF_CLANG: "/nonexistent/clang", FLOW_BPF_BPFTOOL: "/nonexistent/bpftool" }, ensurePrebuilt("x64"));
    expect(b.status, b.output).toBe(0);
    expect(b.output).toMatch(/flow-bpf: eBPF capture built from the shipped BPF object \(prebuilds\/linux-x64\/flow\.skel\.h; no clang, bpftool here\)/);
    const r = inspect(b.dir);
    expect(r.ebpfBuilt).toBe(true);
    expect(r.probe["skeleton"]).toBe(true);
    expect(r.startError).toBeNull();
    expect(r.dumpOk).toBe(true);
  }, 600_000);

  it("without libbpf: builds and loads without any eBPF code, sock_diag works", () => {
    const b = buildCopy({ PKG_CONFIG_LIBDIR: "/nonexistent", PKG_CONFIG_PATH: "" });
    expect(b.status, b.output).toBe(0);
    const r = inspect(b.dir);
    expect(r.ebpfBuilt).toBe(false);
    expect(r.probe["libbpf"]).toBe(false);
    expect(r.startError.message).toMatch(/libbpf was not found at build time/);
    expect(r.dumpOk).toBe(true);
    // Not linked against libbpf at all: the runtime needs no libbpf then.
    const ldd = spawnSync("ldd", [path.join(b.dir, "build", "Release", "flow.node")], { encoding: "utf8" });
    expect(ldd.stdout).not.toMatch(/libbpf/);
  }, 180_000);
});

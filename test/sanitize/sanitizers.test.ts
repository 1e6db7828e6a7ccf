// The sanitizer check itself. First it must be able to fail: a tiny addon with a heap
// overflow and an undefined shift, built here with the same flags as the sanitized build,
// must make the runner report each bug. Then the real thing: the native suites against the
// ASan/UBSan build of both addons (npm run test:sanitize) end green with zero reports.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { afterAll, describe, expect, it } from "vitest";
import { IS_ROOT, systemCommand } from "../support/system";

const require_ = createRequire(__filename);
const ROOT = path.resolve(__dirname, "..", "..");

interface Report {
  readonly sanitizer: string;
  readonly kind: string;
  readonly line: string;
}
interface Run {
  readonly status: number | null;
  readonly signal: string | null;
  readonly output: string;
  readonly reports: readonly Report[];
}
interface Summary extends Run {
  readonly ok: boolean;
  readonly files: number;
  readonly passed: number;
  readonly failed: number;
  readonly failedTests: readonly string[];
  readonly skipped: number;
  readonly logs: string;
  readonly seconds: number;
  readonly buildSeconds: number;
}
const runner = require_("../../scripts/test-sanitize.js") as {
  NATIVE_SUITES: readonly string[];
  findReports(text: string): Report[];
  runSanitized(command: string, args: readonly string[], options?: { cwd?: string }): Promise<Run & { foreignReports: Report[] }>;
  testSanitized(options?: { echo?: boolean }): Promise<Summary>;
};

const gxx = systemCommand("g++");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-sanitize-test-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Plain Node-API C: two functions with one bug each, their inputs from JS so the compiler
// cannot see the bug at build time.
const BUGGY_ADDON = `
#include <node_api.h>
#include <stdlib.h>
static int arg(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value v; int32_t n = 0;
  napi_get_cb_info(env, info, &argc, &v, NULL, NULL);
  napi_get_value_int32(env, v, &n);
  return n;
}
static napi_value overflow(napi_env env, napi_callback_info info) {
  int n = arg(env, info);
  volatile char* p = (volatile char*)malloc(8);
  p[n] = 1; /* n = 8: one byte past the block */
  free((void*)p);
  return NULL;
}
static napi_value shift(napi_env env, napi_callback_info info) {
  int n = arg(env, info);
  napi_value out;
  napi_create_int32(env, 1 << n, &out); /* n = 40: shift past the width of int */
  return out;
}
NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "overflow", NAPI_AUTO_LENGTH, overflow, NULL, &f);
  napi_set_named_property(env, exports, "overflow", f);
  napi_create_function(env, "shift", NAPI_AUTO_LENGTH, shift, NULL, &f);
  napi_set_named_property(env, exports, "shift", f);
  return exports;
}
`;

function nodeIncludeDir(): string {
  const dir = path.join(path.dirname(process.execPath), "..", "include", "node");
  if (fs.existsSync(path.join(dir, "node_api.h"))) return dir;
  // node-gyp's header cache, filled by the addon build.
  const cache = path.join(os.homedir(), ".cache", "node-gyp", process.versions.node, "include", "node");
  if (fs.existsSync(path.join(cache, "node_api.h"))) return cache;
  throw new Error("node_api.h not found: Node's headers are needed (Debian: they come with nodejs; or run npm rebuild once)");
}

describe.skipIf(gxx.skip)("sanitizer runner", () => {
  it("finds ASan and UBSan reports in text, and nothing in clean output", () => {
    expect(runner.findReports("==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1")).toMatchObject([{ sanitizer: "AddressSanitizer", kind: "heap-use-after-free" }]);
    expect(runner.findReports("x.cc:3:5: runtime error: signed integer overflow")).toMatchObject([{ sanitizer: "UndefinedBehaviorSanitizer", kind: "signed integer overflow" }]);
    expect(runner.findReports(" ✓ test/unit/native.test.ts (12 tests)\nall good")).toEqual([]);
  });

  it("reports a deliberate heap overflow and a deliberate undefined shift, each in its own run", async () => {
    const source = path.join(tmp, "buggy.c");
    const addon = path.join(tmp, "buggy.node");
    fs.writeFileSync(source, BUGGY_ADDON);
    // The flags of scripts/build-sanitized.js, less UBSan's object-size check: that check
    // sees this overflow too and would stop the process first, and the point here is that
    // the ASan runtime itself is live.
    execFileSync(gxx.path!, ["-shared", "-fPIC", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize=object-size", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined", "-I", nodeIncludeDir(), source, "-o", addon]);
    const call = (fn: string, n: number): Promise<Run> =>
      runner.runSanitized(process.execPath, ["-e", `require(${JSON.stringify(addon)}).${fn}(${n}); console.log("survived")`], { cwd: tmp });

    // The same addon with in-range inputs is clean: the reports below come from the bugs.
    const clean = await call("overflow", 7);
    expect(clean.reports).toEqual([]);
    expect(clean.output).toContain("survived");
    expect((await call("shift", 3)).reports).toEqual([]);

    const overflow = await call("overflow", 8);
    expect(overflow.reports.map((r) => r.kind)).toContain("heap-buffer-overflow");
    expect(overflow.output).not.toContain("survived");
    expect(overflow.status === 0 && overflow.signal === null).toBe(false);

    const shift = await call("shift", 40);
    expect(shift.reports.some((r) => r.sanitizer === "UndefinedBehaviorSanitizer" && /shift exponent 40/.test(r.kind))).toBe(true);
    expect(shift.output).not.toContain("survived");
    expect(shift.status === 0 && shift.signal === null).toBe(false);
  }, 120_000);

  it("a report from another program the suites run (the runtime is inherited by ip, nft, …) is shown as foreign and not counted", async () => {
    // Not instrumented itself: the preloaded runtime intercepts its strncpy, as it did for
    // iproute2's `ip route` in a kernel suite.
    const source = path.join(tmp, "overlap.c");
    const program = path.join(tmp, "overlap-tool");
    fs.writeFileSync(source, '#include <string.h>\n#include <stdio.h>\nint main(int c, char** v) { char b[32] = "0123456789"; strncpy(b, b + (c > 5 ? 1 : 0), 10); puts(b); return 0; }\n');
    execFileSync(gxx.path!, ["-x", "c", "-O0", source, "-o", program]);
    const viaNode = await runner.runSanitized(process.execPath, ["-e", `require("node:child_process").spawnSync(${JSON.stringify(program)}, { stdio: "inherit" })`], { cwd: tmp });
    expect(viaNode.foreignReports.map((r) => r.kind)).toContain("strncpy-param-overlap");
    expect(viaNode.reports).toEqual([]);
  }, 60_000);

  it("lists every kernel suite and the native unit suites", () => {
    expect(runner.NATIVE_SUITES).toContain("test/kernel/");
    for (const file of runner.NATIVE_SUITES.filter((s) => s.endsWith(".ts"))) expect(fs.existsSync(path.join(ROOT, file)), file).toBe(true);
  });

  // The suites need root for namespaces and BPF; without it most of them would skip and
  // the run would prove little, so it is not run (a CI run is root).
  it.skipIf(!IS_ROOT && process.env["CI"] !== "true")(
    "the native suites against the ASan/UBSan build: green, zero sanitizer reports",
    async () => {
      const r = await runner.testSanitized({ echo: false });
      const summary = `${r.files} files, ${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped, ${r.reports.length} reports, ${r.seconds.toFixed(0)} s`;
      console.log(`sanitized native suites: ${summary}`);
      expect(r.reports, r.logs.slice(0, 4000)).toEqual([]);
      expect(r.failedTests, r.output.slice(-4000)).toEqual([]);
      expect(r.failed).toBe(0);
      expect(r.passed).toBeGreaterThan(0);
      expect(r.status).toBe(0);
    },
    900_000,
  );
});

#!/usr/bin/env node
// Runs every test. First it checks the system programs the suites need: as root on
// Debian/Ubuntu it installs missing packages with apt-get; otherwise it prints the exact
// install line and those suites skip, loudly. Under CI=true a missing program is a failure,
// and so is any skipped test. Type-checks the sources and the tests before running them, and
// lints them (biome.jsonc); a lint finding fails the run and counts as one failure.
// Ends with one line: "N passed, N failed" (", N skipped" when any skipped).
"use strict";
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { SYSTEM_DEPS, findCommand } = require("./system-deps");

const root = path.resolve(__dirname, "..");
const ci = process.env.CI === "true" || process.env.CI === "1";

function missingDeps() {
  return SYSTEM_DEPS.filter((dep) => findCommand(dep.command) === null);
}

function canApt() {
  return process.getuid?.() === 0 && fs.existsSync("/etc/debian_version") && findCommand("apt-get") !== null;
}

function ensureSystemDeps() {
  let missing = missingDeps();
  if (missing.length === 0) return [];
  const pkgs = [...new Set(missing.map((d) => d.pkg))];
  if (canApt()) {
    console.log(`test: installing Debian packages: ${pkgs.join(" ")}`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    // Multiarch packages (libbpf-dev:arm64, …) need their architecture known to dpkg.
    for (const arch of new Set(pkgs.filter((p) => p.includes(":")).map((p) => p.split(":")[1]))) spawnSync("dpkg", ["--add-architecture", arch], { stdio: "inherit" });
    spawnSync("apt-get", ["update", "-q"], { stdio: "inherit", env });
    spawnSync("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...pkgs], { stdio: "inherit", env });
    missing = missingDeps();
    if (missing.length === 0) return [];
  }
  const line = `sudo apt-get install -y ${[...new Set(missing.map((d) => d.pkg))].join(" ")}`;
  console.log("test: MISSING system programs:");
  for (const dep of missing) console.log(`  - ${dep.command} (Debian package ${dep.pkg}), for ${dep.usedBy}`);
  console.log(`test: install them with:\n  ${line}`);
  if (ci) {
    console.log("test: CI=true, so a missing program is a failure, not a skip.");
  } else {
    console.log("test: the suites that need them will SKIP.");
  }
  return missing;
}

function run(cmd, args, opts = {}) {
  const result = spawnSync(cmd, args, { cwd: root, stdio: "inherit", ...opts });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

/**
 * The skipped tests and their reasons, from skip-reporter.mjs. When that report is missing
 * while vitest counted skips, the count still stands: one unnamed entry per skip.
 */
function readSkips(file, counted) {
  let skips = [];
  try {
    skips = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    skips = [];
  }
  while (skips.length < counted) skips.push({ file: "?", name: "?", reason: "the skip report is missing" });
  return skips;
}

function main() {
  if (process.getuid?.() !== 0) {
    // The kernel suites (namespaces, nft, TPROXY, eBPF) and the sanitized run need root.
    if (ci) {
      console.log("test: CI=true needs root: the kernel suites cannot run otherwise, and nothing may skip.");
      console.log("0 passed, 1 failed");
      process.exit(1);
    }
    console.log("test: not root: the kernel suites and the sanitized native run will SKIP (run as root for all).");
  }
  const missing = ensureSystemDeps();
  if (ci && missing.length > 0) {
    console.log(`0 passed, ${missing.length} failed`);
    process.exit(1);
  }
  if (run(process.execPath, [path.join(root, "scripts", "build.js")]) !== 0) {
    console.log("0 passed, 1 failed");
    process.exit(1);
  }
  // The build compiles src and nodes only; tests that no longer type-check would still run.
  const tsc = require.resolve("typescript/bin/tsc", { paths: [root] });
  if (run(process.execPath, [tsc, "-p", path.join(root, "tsconfig.json"), "--noEmit"]) !== 0) {
    console.log("test: the type check (tsc -p tsconfig.json --noEmit, tests included) failed.");
    console.log("0 passed, 1 failed");
    process.exit(1);
  }
  // Lint findings do not stop the suites: they add one failure to the count at the end.
  const biome = require.resolve("@biomejs/biome/bin/biome", { paths: [root] });
  const lintFailed = run(process.execPath, [biome, "lint", "--error-on-warnings", root]) !== 0 ? 1 : 0;
  if (lintFailed) console.log("test: the lint (npm run lint: biome lint, rules in biome.jsonc) failed; its findings are above.");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-test-"));
  const report = path.join(dir, "vitest.json");
  const skipReport = path.join(dir, "skipped.json");
  const vitest = path.join(path.dirname(require.resolve("vitest/package.json", { paths: [root] })), "vitest.mjs");
  const args = [
    vitest,
    "run",
    "--reporter=default",
    "--reporter=json",
    `--reporter=${path.join(root, "scripts", "skip-reporter.mjs")}`,
    `--outputFile.json=${report}`,
    ...process.argv.slice(2),
  ];
  const status = run(process.execPath, args, {
    env: { ...process.env, TRAFFIC_MISSING_COMMANDS: missing.map((d) => d.command).join(","), TRAFFIC_SKIP_REPORT: skipReport },
  });
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  try {
    const json = JSON.parse(fs.readFileSync(report, "utf8"));
    passed = json.numPassedTests;
    failed = json.numFailedTests;
    skipped = json.numPendingTests + json.numTodoTests;
    // A file that fails to load has no tests to count: count it as a failure.
    for (const file of json.testResults ?? []) {
      if (file.status === "failed" && (file.assertionResults ?? []).length === 0) failed++;
    }
  } catch {
    failed = Math.max(failed, 1);
  }
  const skips = readSkips(skipReport, skipped);
  fs.rmSync(dir, { recursive: true, force: true });
  if (status !== 0 && failed === 0) failed = 1;
  failed += lintFailed;
  if (skips.length > 0) {
    console.log(`test: ${skips.length} skipped${ci ? " (CI=true: a skipped test fails the run)" : ""}:`);
    for (const s of skips) console.log(`  - ${s.file}: ${s.name} (${s.reason || "skipIf without a note: see the SKIP lines above"})`);
  }
  const failedRun = status !== 0 || failed > 0 || (ci && skipped > 0);
  if (lintFailed) console.log("test: the lint failed (see above).");
  if (ci && skipped > 0) failed += skipped;
  console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`);
  process.exit(failedRun ? 1 : 0);
}

try {
  main();
} catch (err) {
  console.error(err);
  console.log("0 passed, 1 failed");
  process.exit(1);
}

#!/usr/bin/env node
// `npm run test:sanitize`: builds the addons with AddressSanitizer and
// UndefinedBehaviorSanitizer (scripts/build-sanitized.js) and runs the suites that exercise
// native code against them, in a child Node process with the compiler's sanitizer runtime
// preloaded (Node itself is not instrumented, so the runtime must come first in the
// process). Passes only when vitest is green AND no sanitizer report was written.
//
// ASAN_OPTIONS: detect_leaks=0 because Node does not free its heap, isolates and
// handles at exit (by design, exit is faster than teardown), so LeakSanitizer would
// report Node's own allocations on every run and bury anything of ours; descriptor leaks
// of the addons are checked by the suites themselves. abort_on_error/halt_on_error make the
// first error end the process, so a report can never scroll by in a passing run.
// Reports go to files (log_path) as well as being looked for on stdout/stderr, because
// vitest workers are child processes whose stderr vitest may swallow. The preloaded runtime
// is inherited by every program the suites start (ip, nft, haproxy, …): the file names carry
// the program (log_exe_name), and only reports of node processes — the ones running the
// addons — count; the others are listed as foreign.
"use strict";
const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const root = path.resolve(__dirname, "..");

/**
 * The suites that run native code. Every file under test/kernel joins on its own; unit and
 * node suites are named here (vitest takes each entry as a path filter).
 */
const NATIVE_SUITES = [
  "test/kernel/",
  "test/unit/native.test.ts",
  "test/unit/native-args.test.ts",
  "test/unit/native-loader.test.ts",
  "test/unit/classify-fingerprint.test.ts",
  "test/fuzz/classify.fuzz.test.ts",
  "test/unit/listener.test.ts",
  "test/unit/handover.test.ts",
  "test/unit/connection-table.test.ts",
  "test/unit/flow-decode.test.ts",
  "test/nodes/transparent-in.test.ts",
  "test/nodes/flow-source.test.ts",
  "test/unit/forward.test.ts",
  "test/nodes/forward.test.ts",
];

/** The sanitizer runtime libraries of the compiler node-gyp uses (CXX, else g++). */
function sanitizerRuntime() {
  const cxx = process.env.CXX || "g++";
  const lib = (name) => {
    const file = execFileSync(cxx, [`-print-file-name=${name}`], { encoding: "utf8" }).trim();
    // Without the library the compiler echoes the bare name back.
    if (!path.isAbsolute(file) || !fs.existsSync(file)) throw new Error(`${cxx} has no ${name} (Debian: apt-get install g++, which brings libasan and libubsan)`);
    return fs.realpathSync(file);
  };
  return [lib("libasan.so"), lib("libubsan.so")];
}

/** The environment for a process that loads sanitized code; reports land in logDir. */
function sanitizerEnv(logDir, base = process.env) {
  return {
    ...base,
    LD_PRELOAD: [...sanitizerRuntime(), ...(base.LD_PRELOAD ? [base.LD_PRELOAD] : [])].join(" "),
    ASAN_OPTIONS: `detect_leaks=0:halt_on_error=1:abort_on_error=1:print_summary=1:log_exe_name=1:log_path=${path.join(logDir, "asan")}`,
    UBSAN_OPTIONS: `print_stacktrace=1:halt_on_error=1:print_summary=1:log_exe_name=1:log_path=${path.join(logDir, "ubsan")}`,
  };
}

/** Sanitizer reports in a text: one entry per report, with the kind ("heap-buffer-overflow", "runtime error: shift exponent …"). */
function findReports(text) {
  const reports = [];
  for (const line of text.split("\n")) {
    const asan = line.match(/ERROR: (AddressSanitizer|LeakSanitizer): ([\w-]+)/);
    if (asan) reports.push({ sanitizer: asan[1], kind: asan[2], line: line.trim() });
    const ub = line.match(/runtime error: (.*)$/);
    if (ub) reports.push({ sanitizer: "UndefinedBehaviorSanitizer", kind: ub[1].trim(), line: line.trim() });
  }
  return reports;
}

/**
 * Runs a command with the sanitizer runtime preloaded; resolves with its exit, its output
 * and every sanitizer report it (or a child of it) wrote.
 */
function runSanitized(command, args, { cwd = root, env = process.env, echo = false } = {}) {
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-sanitize-"));
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: sanitizerEnv(logDir, env), stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const collect = (stream, to) => stream.on("data", (chunk) => {
      output += chunk;
      if (echo) to.write(chunk);
    });
    collect(child.stdout, process.stdout);
    collect(child.stderr, process.stderr);
    child.on("error", reject);
    child.on("close", (status, signal) => {
      let logs = "";
      let foreignLogs = "";
      for (const file of fs.readdirSync(logDir)) {
        // <asan|ubsan>.<program>.<pid>
        const program = file.split(".").slice(1, -1).join(".");
        const text = `${fs.readFileSync(path.join(logDir, file), "utf8")}\n`;
        if (program === "" || program === "node") logs += text;
        else foreignLogs += `[${program}]\n${text}`;
      }
      fs.rmSync(logDir, { recursive: true, force: true });
      resolve({ status, signal, output, logs, foreignLogs, reports: findReports(`${output}\n${logs}`), foreignReports: findReports(foreignLogs), seconds: (Date.now() - started) / 1000 });
    });
  });
}

/** Builds the sanitized addons and runs the native suites against them; returns a summary. */
async function testSanitized({ echo = true, extraArgs = [] } = {}) {
  const { buildSanitized } = require("./build-sanitized");
  const built = Date.now();
  const dir = buildSanitized();
  const buildSeconds = (Date.now() - built) / 1000;
  const reportDir = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-sanitize-json-"));
  const report = path.join(reportDir, "vitest.json");
  const vitest = path.join(path.dirname(require.resolve("vitest/package.json", { paths: [root] })), "vitest.mjs");
  const args = [vitest, "run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...NATIVE_SUITES, ...extraArgs];
  const run = await runSanitized(process.execPath, args, { env: { ...process.env, TRAFFIC_NATIVE_DIR: dir }, echo });
  let counts = { files: 0, passed: 0, failed: 0, skipped: 0 };
  const failedTests = [];
  try {
    const json = JSON.parse(fs.readFileSync(report, "utf8"));
    counts = { files: (json.testResults || []).length, passed: json.numPassedTests, failed: json.numFailedTests, skipped: json.numPendingTests + json.numTodoTests };
    for (const file of json.testResults || []) {
      for (const t of file.assertionResults || []) if (t.status === "failed") failedTests.push(`${path.relative(root, file.name)} > ${t.fullName}`);
    }
  } catch {
    counts.failed = Math.max(1, counts.failed);
  }
  fs.rmSync(reportDir, { recursive: true, force: true });
  const ok = run.status === 0 && counts.failed === 0 && counts.passed > 0 && run.reports.length === 0;
  return { ok, dir, buildSeconds, ...counts, failedTests, status: run.status, signal: run.signal, output: run.output, reports: run.reports, logs: run.logs, foreignReports: run.foreignReports, seconds: run.seconds };
}

module.exports = { NATIVE_SUITES, sanitizerRuntime, sanitizerEnv, findReports, runSanitized, testSanitized };

if (require.main === module) {
  testSanitized({ extraArgs: process.argv.slice(2) })
    .then((r) => {
      if (r.logs.trim() !== "") process.stdout.write(`\nsanitizer logs:\n${r.logs}\n`);
      process.stdout.write(
        `sanitize: ${r.files} files, ${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped; ` +
          `${r.reports.length} sanitizer reports; build ${r.buildSeconds.toFixed(1)} s, run ${r.seconds.toFixed(1)} s\n`,
      );
      for (const rep of r.reports) process.stdout.write(`  ${rep.sanitizer}: ${rep.line}\n`);
      // Programs the suites run, not our code: shown, not counted.
      for (const rep of r.foreignReports) process.stdout.write(`  foreign (another program, not counted): ${rep.sanitizer}: ${rep.line}\n`);
      for (const name of r.failedTests) process.stdout.write(`  failed: ${name}\n`);
      process.exit(r.ok ? 0 : 1);
    })
    .catch((err) => {
      process.stderr.write(`${err.stack || err}\n`);
      process.exit(1);
    });
}

// The system programs the test suites use, and the Debian packages that provide them.
// Shared by scripts/test.js (install or report) and test/support/system.ts (skip or fail).
"use strict";
const fs = require("node:fs");
const path = require("node:path");

/**
 * `command` is looked up on PATH; an absolute path (a header, a library) is checked as a file.
 * @type {{ command: string, pkg: string, usedBy: string }[]}
 */
const SYSTEM_DEPS = [
  { command: "haproxy", pkg: "haproxy", usedBy: "end-to-end real-IP tests behind HAProxy" },
  { command: "chromium", pkg: "chromium", usedBy: "editor tests in a real browser" },
  // The flow addon's BPF program is compiled at build (native/flow/build-bpf.js).
  { command: "clang", pkg: "clang", usedBy: "building the eBPF flow program" },
  { command: "llvm-strip", pkg: "llvm", usedBy: "stripping the eBPF flow program" },
  { command: "bpftool", pkg: "bpftool", usedBy: "vmlinux.h and the libbpf skeleton of the flow program" },
  { command: "pkg-config", pkg: "pkg-config", usedBy: "finding libbpf when building the flow addon" },
  { command: "/usr/include/bpf/libbpf.h", pkg: "libbpf-dev", usedBy: "the flow addon (libbpf loader)" },
  { command: "setpriv", pkg: "util-linux", usedBy: "flow source tests without privilege" },
  { command: "ip", pkg: "iproute2", usedBy: "flow source tests in a second network namespace" },
  { command: "tcplife", pkg: "libbpf-tools", usedBy: "comparing the flow source with tcplife" },
];

const SEARCH_PATH = (process.env.PATH || "").split(":").concat(["/usr/sbin", "/sbin", "/usr/local/sbin"]);

/** Absolute path of `command`, or null when it is not installed. */
function findCommand(command) {
  if (path.isAbsolute(command)) return fs.existsSync(command) ? command : null;
  for (const dir of SEARCH_PATH) {
    if (!dir) continue;
    const file = path.join(dir, command);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

module.exports = { SYSTEM_DEPS, findCommand };

if (require.main === module && process.argv.includes("--packages")) {
  process.stdout.write(`${[...new Set(SYSTEM_DEPS.map((d) => d.pkg))].join(" ")}\n`);
}

// The system programs the test suites use, and the Debian packages that provide them.
// Shared by scripts/test.js (install or report) and test/support/system.ts (skip or fail).
"use strict";
const fs = require("node:fs");
const path = require("node:path");

/** @type {{ command: string, pkg: string, usedBy: string }[]} */
const SYSTEM_DEPS = [
  { command: "haproxy", pkg: "haproxy", usedBy: "end-to-end real-IP tests behind HAProxy" },
  { command: "mosquitto", pkg: "mosquitto", usedBy: "MQTT event tests against a real broker" },
  { command: "mosquitto_sub", pkg: "mosquitto-clients", usedBy: "MQTT event tests with a command-line subscriber" },
  { command: "mosquitto_passwd", pkg: "mosquitto", usedBy: "MQTT broker credential tests" },
  { command: "openssl", pkg: "openssl", usedBy: "MQTT over TLS tests (a CA made per run)" },
];

const SEARCH_PATH = (process.env.PATH || "").split(":").concat(["/usr/sbin", "/sbin", "/usr/local/sbin"]);

/** Absolute path of `command`, or null when it is not installed. */
function findCommand(command) {
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

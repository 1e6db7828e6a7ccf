// The system programs the test suites use, and the Debian packages that provide them.
// Shared by scripts/test.js (install or report) and test/support/system.ts (skip or fail).
"use strict";
const fs = require("node:fs");
const path = require("node:path");

/** @type {{ command: string, pkg: string, usedBy: string }[]} */
const SYSTEM_DEPS = [
  { command: "chromium", pkg: "chromium", usedBy: "editor tests in a real browser" },
  { command: "haproxy", pkg: "haproxy", usedBy: "end-to-end real-IP tests behind HAProxy, the listener benchmark" },
  { command: "g++", pkg: "g++", usedBy: "building the native addon (npm install runs node-gyp)" },
  { command: "make", pkg: "make", usedBy: "building the native addon (npm install runs node-gyp)" },
  { command: "ip", pkg: "iproute2", usedBy: "kernel tests: network namespaces, veth, ip rule/route for TPROXY" },
  { command: "nft", pkg: "nftables", usedBy: "kernel tests: REDIRECT/TPROXY rules, managed listener rules" },
  { command: "setpriv", pkg: "util-linux", usedBy: "kernel tests: a listener without CAP_NET_ADMIN" },
];

// The forward tests and benchmark: HAProxy (above) as a PROXY v2 backend and the
// splice anchor, and these as the other anchors.
SYSTEM_DEPS.push(
  { command: "iperf3", pkg: "iperf3", usedBy: "forward benchmark: one-stream throughput" },
  { command: "socat", pkg: "socat", usedBy: "forward benchmark: socat as a throughput anchor" },
);

const SEARCH_PATH = (process.env.PATH || "").split(":").concat(["/usr/sbin", "/sbin", "/usr/local/sbin"]);

// Real clients whose first bytes the classify tests sniff live (test/e2e/classify-clients.test.ts);
// the browser among them is chromium, listed above for the editor tests.
SYSTEM_DEPS.push(
  { command: "curl", pkg: "curl", usedBy: "classify: HTTP/1, HTTP/2, gRPC, TLS, SOCKS, PROXY and server-first clients" },
  { command: "openssl", pkg: "openssl", usedBy: "classify: TLS ClientHello (s_client)" },
  { command: "mosquitto_pub", pkg: "mosquitto-clients", usedBy: "classify: MQTT CONNECT" },
  { command: "redis-cli", pkg: "redis-tools", usedBy: "classify: Redis RESP" },
  { command: "psql", pkg: "postgresql-client", usedBy: "classify: PostgreSQL startup and SSLRequest" },
  { command: "ssh", pkg: "openssh-client", usedBy: "classify: SSH banner" },
  { command: "kcat", pkg: "kcat", usedBy: "classify: Kafka request header" },
  { command: "dig", pkg: "bind9-dnsutils", usedBy: "classify: DNS over TCP" },
);

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

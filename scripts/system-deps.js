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
  // Build: the native addons (npm install runs node-gyp) and the eBPF flow program.
  { command: "g++", pkg: "g++", usedBy: "building the native addons (npm install runs node-gyp)" },
  { command: "make", pkg: "make", usedBy: "building the native addons (npm install runs node-gyp)" },
  { command: "clang", pkg: "clang", usedBy: "building the eBPF flow program" },
  { command: "llvm-strip", pkg: "llvm", usedBy: "stripping the eBPF flow program" },
  { command: "bpftool", pkg: "bpftool", usedBy: "vmlinux.h and the libbpf skeleton of the flow program" },
  { command: "pkg-config", pkg: "pkg-config", usedBy: "finding libbpf when building the flow addon" },
  { command: "/usr/include/bpf/libbpf.h", pkg: "libbpf-dev", usedBy: "the flow addon (libbpf loader)" },
  // The prebuilds (npm run prebuild; npm pack makes them, test/e2e/pack-install.test.ts packs):
  // arm64 cross-compiled against the arm64 multiarch libraries (.ci/run adds the architecture).
  { command: "aarch64-linux-gnu-g++", pkg: "g++-aarch64-linux-gnu", usedBy: "the linux-arm64 prebuilds (npm run prebuild)" },
  { command: "/usr/lib/aarch64-linux-gnu/pkgconfig/libbpf.pc", pkg: "libbpf-dev:arm64", usedBy: "the linux-arm64 prebuilds: libbpf's pkg-config entry for the target" },
  { command: "/usr/lib/aarch64-linux-gnu/libelf.so", pkg: "libelf-dev:arm64", usedBy: "the linux-arm64 prebuilds: libelf for the flow addon" },
  { command: "/usr/lib/aarch64-linux-gnu/libz.so", pkg: "zlib1g-dev:arm64", usedBy: "the linux-arm64 prebuilds: zlib for the flow addon" },
  // The arm64 prebuilds under Node's arm64 binary (test/compat/arm64-qemu.test.ts): qemu-user,
  // and the arm64 loader, libc and libstdc++ of one glibc build (multiarch, not the cross toolchain's).
  { command: "qemu-aarch64", pkg: "qemu-user", usedBy: "running Node's arm64 binary with the linux-arm64 prebuilds" },
  { command: "/lib/ld-linux-aarch64.so.1", pkg: "libc6:arm64", usedBy: "Node's arm64 binary under qemu-aarch64: the arm64 loader and libc" },
  { command: "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", pkg: "libstdc++6:arm64", usedBy: "Node's arm64 binary under qemu-aarch64: libstdc++" },
  // Kernel suites: namespaces, rules, dropped privileges, the tcplife anchor.
  { command: "ip", pkg: "iproute2", usedBy: "kernel tests: network namespaces, veth, ip rule/route for TPROXY" },
  { command: "nft", pkg: "nftables", usedBy: "kernel tests: REDIRECT/TPROXY rules, managed listener rules" },
  { command: "setpriv", pkg: "util-linux", usedBy: "kernel tests: listeners and flow sources without privilege; the load rig's parent-death signal" },
  { command: "nsenter", pkg: "util-linux", usedBy: "least-privilege test: Node-RED in a test namespace without ip netns exec's /sys remount" },
  { command: "prlimit", pkg: "util-linux", usedBy: "load tests: Node-RED and the load client with a raised fd limit" },
  { command: "ss", pkg: "iproute2", usedBy: "load and redeploy tests: listening ports left behind" },
  { command: "tcplife", pkg: "libbpf-tools", usedBy: "comparing the flow source with tcplife" },
  { command: "cc", pkg: "gcc", usedBy: "the native connection-rate generator (test/rigs/loadgen.c) of the flow load test and benchmark" },
  // Real peers: proxies, the browser for the editor, and clients whose first bytes classify sniffs.
  { command: "haproxy", pkg: "haproxy", usedBy: "end-to-end real-IP tests behind HAProxy, the listener benchmark" },
  { command: "chromium", pkg: "chromium", usedBy: "editor tests in a real browser; the QUIC client of the end-to-end UDP test" },
  { command: "promtool", pkg: "prometheus", usedBy: "metrics tests: promtool check metrics lints the exposition" },
  { command: "mosquitto", pkg: "mosquitto", usedBy: "MQTT event tests against a real broker" },
  { command: "mosquitto_passwd", pkg: "mosquitto", usedBy: "MQTT broker credential tests" },
  { command: "mosquitto_sub", pkg: "mosquitto-clients", usedBy: "MQTT event tests with a command-line subscriber" },
  { command: "iperf3", pkg: "iperf3", usedBy: "forward benchmark: one-stream throughput" },
  { command: "socat", pkg: "socat", usedBy: "forward benchmark: socat as a throughput anchor" },
  { command: "curl", pkg: "curl", usedBy: "classify: HTTP/1, HTTP/2, gRPC, TLS, SOCKS, PROXY and server-first clients" },
  { command: "openssl", pkg: "openssl", usedBy: "classify: TLS ClientHello (s_client); MQTT over TLS tests (a CA made per run)" },
  { command: "mosquitto_pub", pkg: "mosquitto-clients", usedBy: "classify: MQTT CONNECT" },
  { command: "redis-cli", pkg: "redis-tools", usedBy: "classify: Redis RESP" },
  { command: "psql", pkg: "postgresql-client", usedBy: "classify: PostgreSQL startup and SSLRequest" },
  { command: "ssh", pkg: "openssh-client", usedBy: "classify: SSH banner" },
  { command: "kcat", pkg: "kcat", usedBy: "classify: Kafka request header" },
  { command: "dig", pkg: "bind9-dnsutils", usedBy: "classify: DNS over TCP; UDP: DNS queries through a TPROXY gateway" },
  { command: "tshark", pkg: "tshark", usedBy: "classify: JA3 and the ClientHello fields of the recorded clients, an independent parser to check the fingerprints against" },
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

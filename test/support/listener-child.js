// A transparent listener in a child process, so a test can run it inside a network
// namespace (`ip netns exec gw node listener-child.js …`) or without a capability
// (setpriv). Uses the built package (dist/). Talks NDJSON: one event per stdout line;
// the line "close" on stdin closes the listener, reports open fds and exits.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const readline = require("node:readline");

const root = path.resolve(__dirname, "..", "..");
const config = JSON.parse(process.argv[2] || "{}");
const out = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const fdCount = () => fs.readdirSync("/proc/self/fd").length;

function encodeInfo(info) {
  return { ...info, firstBytes: info.firstBytes ? Buffer.from(info.firstBytes).toString("base64") : undefined };
}

async function main() {
  const lib = require(path.join(root, "dist", "src", "listener", "index.js"));
  // libuv opens one spare descriptor (/dev/null, for EMFILE recovery) at the first listen
  // of the process and keeps it: listen once before counting.
  await new Promise((resolve) => {
    const warm = require("node:net").createServer().listen(0, "127.0.0.1", () => warm.close(resolve));
  });
  const fdsBefore = fdCount();
  const listener = new lib.TransparentListener(config, "child");
  listener.on("connection", (info) => {
    out({ event: "connection", info: encodeInfo(info) });
    const claimed = lib.connectionTable().claim(info.id, "child");
    if (claimed === undefined) return;
    // Answer with what the listener saw, so the client side can check it too.
    claimed.socket.end(`${JSON.stringify({ id: info.id, replay: claimed.replay.toString("base64") })}\n`);
    claimed.socket.resume();
  });
  listener.on("rejected", (reason, detail) => out({ event: "rejected", reason, detail }));
  try {
    const address = await listener.start();
    out({ event: "listening", address, fds: fdsBefore });
  } catch (err) {
    out({ event: "error", code: err.code, message: err.message });
    process.exit(0);
  }
  readline.createInterface({ input: process.stdin }).on("line", async (line) => {
    if (line.trim() !== "close") return;
    await listener.close();
    // Give libuv a turn to close the descriptors of ended connections.
    await new Promise((r) => setTimeout(r, 100));
    out({ event: "closed", fds: fdCount(), fdsBefore });
    process.exit(0);
  });
}

main().catch((err) => {
  out({ event: "fatal", message: String(err && err.stack) });
  process.exit(1);
});

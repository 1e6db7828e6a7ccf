// A transparent listener whose every connection goes to forwardConnection, in a child
// process so a test can run it inside a network namespace. Uses the built package
// (dist/). argv[2]: { listener, forward }. NDJSON out: listening, summary, error.
"use strict";
const path = require("node:path");

const root = path.resolve(__dirname, "..", "..");
const config = JSON.parse(process.argv[2] || "{}");
const out = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

async function main() {
  const lib = require(path.join(root, "dist", "src", "index.js"));
  const listener = new lib.TransparentListener(config.listener, "forward-child");
  listener.on("connection", (info) => {
    out({ event: "connection", info: { ...info, firstBytes: undefined } });
    const claimed = lib.connectionTable().claim(info.id, "forward-child");
    if (claimed === undefined) return;
    lib.forwardConnection(claimed, config.forward).done.then((summary) => out({ event: "summary", summary }));
  });
  try {
    out({ event: "listening", address: await listener.start() });
  } catch (err) {
    out({ event: "error", code: err.code, message: err.message });
    process.exit(0);
  }
}

main().catch((err) => {
  out({ event: "fatal", message: String(err && err.stack) });
  process.exit(1);
});

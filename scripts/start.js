#!/usr/bin/env node
// `npm start`: Node-RED on http://127.0.0.1:1880 with this package and the demo flow,
// user dir in ./.node-red (ignored by git). PORT and HOST override the address;
// KEEP_FLOWS=1 keeps flows you edited instead of writing the demo again;
// TRAFFIC_USER_DIR puts the user dir elsewhere.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { prepareUserDir, startNodeRed, stopNodeRed, root, pkg } = require("./node-red-env");
const { demoFlows } = require("./demo-flow");

async function main() {
  if (!fs.existsSync(path.join(root, "dist", "nodes", "index.js")) || !fs.existsSync(path.join(root, "traffic.html"))) {
    require("./build");
  }
  const port = Number(process.env.PORT || 1880);
  const host = process.env.HOST || "127.0.0.1";
  const userDir = process.env.TRAFFIC_USER_DIR || path.join(root, ".node-red");
  prepareUserDir(userDir, { port, host, flows: demoFlows(), overwriteFlows: process.env.KEEP_FLOWS !== "1" });

  const { capabilityReport, formatCapabilityReport } = require(path.join(root, "dist", "src", "doctor.js"));
  console.log(`${pkg.name} ${pkg.version}`);
  console.log(`Node-RED user dir: ${userDir}`);
  console.log("Privileged features on this machine:");
  console.log(formatCapabilityReport(capabilityReport()));

  const red = startNodeRed(userDir, { port, host, timeoutMs: 120000 });
  let child = null;
  const stop = async () => {
    if (child) await stopNodeRed(child);
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  // Echo Node-RED's own log while it starts and runs.
  const started = await red;
  child = started.child;
  process.stdout.write(started.log());
  child.stdout.on("data", (c) => process.stdout.write(c));
  child.stderr.on("data", (c) => process.stderr.write(c));
  child.on("exit", (code) => process.exit(code ?? 1));
  console.log("");
  console.log(`Editor:  ${started.url}/`);
  console.log(`Demo:    curl ${started.url}/whoami`);
  console.log(`         curl -H 'X-Forwarded-For: 203.0.113.7' ${started.url}/whoami   (denied: 403)`);
  console.log("MQTT:    mosquitto_sub -h 127.0.0.1 -t 'traffic/#' -v   (the embedded broker on 127.0.0.1:1883)");
  console.log("Stop with Ctrl-C.");
}

main().catch((err) => {
  console.error(err.message || err);
  process.exit(1);
});

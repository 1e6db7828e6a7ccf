#!/usr/bin/env node
// `npm start`: Node-RED on http://127.0.0.1:1880 with this package and the demo flow,
// user dir in ./.node-red (ignored by git). PORT and HOST override the address;
// KEEP_FLOWS=1 keeps flows you edited instead of writing the demo again;
// TRAFFIC_USER_DIR puts the user dir elsewhere; TRAFFIC_MQTT_PORT is the port the demo's
// main embedded MQTT broker tries first (1883).
"use strict";
const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const { prepareUserDir, startNodeRed, stopNodeRed, root, pkg } = require("./node-red-env");
const { demoFlows } = require("./demo-flow");

/** Resolves to the port bound on host: `port`, or one the system picks (0). Rejects when taken. */
function bind(host, port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen({ host, port, exclusive: true }, () => {
      const bound = server.address().port;
      server.close(() => resolve(bound));
    });
  });
}

/**
 * Gives each embedded broker of the demo a port it can listen on: its own when free, else
 * one the system picks (many Node-RED machines already run a broker on 1883). Rewrites the
 * flows and returns what each broker got, for the start-up text.
 */
async function placeEmbeddedBrokers(flows) {
  const preferred = Number(process.env.TRAFFIC_MQTT_PORT || 1883);
  const placed = [];
  for (const node of flows) {
    if (node.type !== "traffic broker" || node.mode !== "embedded") continue;
    const host = node.embeddedHost || "127.0.0.1";
    const wanted = Number(node.embeddedPort) === 1883 ? preferred : Number(node.embeddedPort);
    const port = await bind(host, wanted).catch(() => bind(host, 0));
    node.embeddedPort = port;
    node.url = "";
    placed.push({ name: node.name || "embedded broker", host, port, wanted });
  }
  return placed;
}

async function main() {
  if (!fs.existsSync(path.join(root, "dist", "nodes", "index.js")) || !fs.existsSync(path.join(root, "traffic.html"))) {
    require("./build").main();
  }
  const port = Number(process.env.PORT || 1880);
  const host = process.env.HOST || "127.0.0.1";
  const userDir = process.env.TRAFFIC_USER_DIR || path.join(root, ".node-red");
  const flows = demoFlows();
  const brokers = await placeEmbeddedBrokers(flows);
  const overwriteFlows = process.env.KEEP_FLOWS !== "1" || !fs.existsSync(path.join(userDir, "flows.json"));
  prepareUserDir(userDir, { port, host, flows, overwriteFlows });

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
  // With flows kept from an earlier run, the brokers are wherever those flows put them.
  for (const b of overwriteFlows ? brokers : []) {
    const moved = b.port === b.wanted ? "" : `; ${b.wanted} was in use`;
    console.log(`MQTT:    mosquitto_sub -h ${b.host} -p ${b.port} -t 'traffic/#' -v   (${b.name}, embedded, on ${b.host}:${b.port}${moved})`);
  }
  console.log("Stop with Ctrl-C.");
}

main().catch((err) => {
  console.error(err.message || err);
  process.exit(1);
});

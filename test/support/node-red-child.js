// A Node-RED runtime (node-red-node-test-helper) in a child process, so a test can run
// this package's nodes inside a network namespace or without a capability. Loads the
// built nodes (dist/). argv[2] is the flow; every message reaching a `helper` node, and
// every status, error and warning of the other nodes, is one JSON line on stdout.
// "close" on stdin stops the flow (running the nodes' close handlers) and exits; "memory"
// answers with the process's memory (after a full GC when run with --expose-gc) and fds;
// "deploy <flow JSON>" is a full deploy of that flow (every node stopped with removed =
// false when it stays, and started again), answered with "deployed" once the flows run.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const readline = require("node:readline");

const root = path.resolve(__dirname, "..", "..");
const out = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const fdCount = () => fs.readdirSync("/proc/self/fd").length;

async function main() {
  const helper = require("node-red-node-test-helper");
  helper.init(require.resolve("node-red", { paths: [root] }));
  const register = require(path.join(root, "dist", "nodes", "index.js")).default;
  const flow = JSON.parse(process.argv[2]);
  await new Promise((resolve) => {
    const warm = require("node:net").createServer().listen(0, "127.0.0.1", () => warm.close(resolve));
  });
  const fdsBefore = fdCount();
  // Wrap the node methods before the flow starts: a listener reports start-up failures
  // before load() returns.
  const proto = helper._NodePrototype;
  const wrap = (method, toEvent) => {
    const original = proto[method];
    proto[method] = function (...args) {
      out({ id: this.id, ...toEvent(args[0]) });
      return original.apply(this, args);
    };
  };
  wrap("status", (status) => ({ event: "status", status }));
  wrap("error", (e) => ({ event: "error", message: e && e.message ? e.message : String(e), code: e && e.code }));
  wrap("warn", (w) => ({ event: "warn", message: String(w) }));
  await helper.load(register, flow);
  const watchHelpers = (nodes) => {
    for (const n of nodes) {
      const node = helper.getNode(n.id);
      if (node && n.type === "helper") node.on("input", (msg) => out({ event: "message", at: n.id, msg }));
    }
  };
  watchHelpers(flow);
  out({ event: "loaded", fds: fdsBefore });
  readline.createInterface({ input: process.stdin }).on("line", async (line) => {
    if (line.startsWith("deploy ")) {
      const next = JSON.parse(line.slice("deploy ".length));
      // The runtime starts the new flows after setFlows resolves: wait for its event.
      const started = new Promise((resolve) => helper._events.once("flows:started", resolve));
      await helper._redNodes.setFlows(next, {}, "full");
      await started;
      watchHelpers(next);
      out({ event: "deployed" });
      return;
    }
    if (line.trim() === "memory") {
      // With --expose-gc: memory after a full collection, so a test compares what is held, not what V8 has not swept yet.
      // The test helper's sinon spies keep every call to send/status/…: drop that record first.
      helper._sandbox.resetHistory();
      if (typeof global.gc === "function") global.gc();
      const m = process.memoryUsage();
      out({ event: "memory", rss: m.rss, heapUsed: m.heapUsed, external: m.external, fds: fdCount() });
      return;
    }
    if (line.trim() !== "close") return;
    await helper.unload();
    await new Promise((r) => setTimeout(r, 100));
    out({ event: "closed", fds: fdCount(), fdsBefore });
    process.exit(0);
  });
}

main().catch((err) => {
  out({ event: "fatal", message: String(err && err.stack) });
  process.exit(1);
});

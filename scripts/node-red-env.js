// Prepares a Node-RED user directory that loads this package from the checkout, and
// starts Node-RED on it. Used by `npm start` (the demo) and by the end-to-end tests.
"use strict";
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const pkg = require(path.join(root, "package.json"));

/**
 * Writes settings.js (loopback only, telemetry and tours off), links this package into
 * the user dir's node_modules so Node-RED loads it as an installed module, and writes
 * flows.json when `flows` is given.
 */
function prepareUserDir(userDir, { port, host = "127.0.0.1", flows, overwriteFlows = true, logLevel = "info", settings: extra = {} }) {
  fs.mkdirSync(userDir, { recursive: true });
  const settings = {
    uiHost: host,
    uiPort: port,
    flowFile: "flows.json",
    credentialSecret: false,
    telemetry: { enabled: false },
    editorTheme: { tours: false, projects: { enabled: false } },
    diagnostics: { enabled: false },
    logging: { console: { level: logLevel, metrics: false, audit: false } },
    externalModules: { autoInstall: false, palette: { allowInstall: false }, modules: { allowInstall: false } },
    ...extra,
  };
  fs.writeFileSync(path.join(userDir, "settings.js"), `module.exports = ${JSON.stringify(settings, null, 2)};\n`);
  fs.writeFileSync(
    path.join(userDir, "package.json"),
    JSON.stringify({ name: "traffic-policy-user-dir", private: true, dependencies: { [pkg.name]: `file:${root}` } }, null, 2),
  );
  const linkDir = path.join(userDir, "node_modules", ...pkg.name.split("/"));
  fs.mkdirSync(path.dirname(linkDir), { recursive: true });
  try {
    const current = fs.readlinkSync(linkDir);
    if (path.resolve(path.dirname(linkDir), current) !== root) fs.rmSync(linkDir, { recursive: true, force: true });
  } catch {
    fs.rmSync(linkDir, { recursive: true, force: true });
  }
  if (!fs.existsSync(linkDir)) fs.symlinkSync(root, linkDir, "dir");
  const flowFile = path.join(userDir, "flows.json");
  if (flows !== undefined && (overwriteFlows || !fs.existsSync(flowFile))) {
    fs.writeFileSync(flowFile, JSON.stringify(flows, null, 2));
  }
}

/**
 * Starts Node-RED on a prepared user dir; resolves once flows have started. `node` and
 * `redScript` run another Node.js binary or Node-RED release (the compatibility suite);
 * `wrap` is a command line to run it under (setpriv, to drop capabilities).
 */
function startNodeRed(
  userDir,
  { port, host = "127.0.0.1", stdio = "pipe", timeoutMs = 60000, env = process.env, node = process.execPath, redScript, wrap = [] } = {},
) {
  const red = redScript || require.resolve("node-red/red.js", { paths: [root] });
  // `wrap` runs Node-RED under another program first, e.g. setpriv dropping capabilities.
  const argv = [...wrap, node, red, "--userDir", userDir, "--port", String(port)];
  const child = spawn(argv[0], argv.slice(1), {
    cwd: userDir,
    env,
    stdio: ["ignore", stdio, stdio],
  });
  let log = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      reject(new Error(`Node-RED did not start within ${timeoutMs} ms:\n${log}`));
    }, timeoutMs);
    const onData = (chunk) => {
      log += chunk.toString();
      if (log.includes("Started flows")) {
        clearTimeout(timer);
        resolve({ child, url: `http://${host}:${port}`, log: () => log });
      }
    };
    if (child.stdout) child.stdout.on("data", onData);
    if (child.stderr) child.stderr.on("data", (c) => (log += c.toString()));
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`Node-RED exited with code ${code}:\n${log}`));
    });
  });
}

/** Ends a child process by its pid (SIGTERM, then SIGKILL after `timeoutMs`); resolves when it has exited. */
function stopProcess(child, timeoutMs = 15000) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/** Stops a Node-RED started by startNodeRed. */
const stopNodeRed = stopProcess;

module.exports = { prepareUserDir, startNodeRed, stopNodeRed, stopProcess, root, pkg };

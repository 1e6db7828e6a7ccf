// The demo flow: every example flow of the package, each on its own tab.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const examplesDir = path.resolve(__dirname, "..", "examples");

/** Example files, relative to examples/ (sub-folders are Import menu sub-menus). */
function exampleFiles(dir = examplesDir, prefix = "") {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.isDirectory()) out.push(...exampleFiles(path.join(dir, entry.name), `${prefix}${entry.name}/`));
    else if (entry.name.endsWith(".json")) out.push(`${prefix}${entry.name}`);
  }
  return out;
}

/** Builds a full flow: one tab per example, with the example's own tab label. */
function demoFlows() {
  const flows = [];
  for (const file of exampleFiles()) {
    const nodes = JSON.parse(fs.readFileSync(path.join(examplesDir, file), "utf8"));
    const tabId = `demo-${file.replace(/[^a-z0-9]+/gi, "-")}`;
    const own = nodes.find((node) => node.type === "tab");
    flows.push({ id: tabId, type: "tab", label: own?.label || file.replace(/\.json$/, ""), disabled: false, info: own?.info || "" });
    for (const node of nodes) {
      if (node.type === "tab") continue;
      flows.push(node.z === undefined || node.z === "" || isConfigNode(node) ? { ...node, z: isConfigNode(node) ? undefined : tabId } : { ...node, z: tabId });
    }
  }
  return flows;
}

function isConfigNode(node) {
  return node.x === undefined && node.y === undefined && !Array.isArray(node.wires);
}

module.exports = { demoFlows, exampleFiles };

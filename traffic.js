// Node-RED entry point. It sits at the package root so that Node-RED finds the
// top-level icons/ folder; the node implementations are compiled into dist/.
"use strict";
module.exports = require("./dist/nodes/index.js").default;

#!/usr/bin/env node
// The package's command line: `traffic-policy flows` (NDJSON connection events) and
// `traffic-policy doctor` (what capture works here). The code is compiled into dist/.
"use strict";
require("../dist/src/cli.js")
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });

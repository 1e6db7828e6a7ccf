#!/usr/bin/env node
// Prints the linker arguments for libbpf, read by binding.gyp. FLOW_LIBBPF_STATIC names a
// libbpf.a built with -fPIC (scripts/prebuild.js builds one from Debian's libbpf source
// for each target; Debian's own libbpf.a is not position-independent): it is linked into
// the addon with its symbols kept private, so the addon runs on a target with no
// libbpf.so, or another version of it, and cannot clash with a libbpf some other module
// loaded. libelf and zlib stay shared (libelf1, zlib1g: stable sonames). Without it, the
// shared libbpf pkg-config names.
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");

function linkArgs() {
  const archive = process.env.FLOW_LIBBPF_STATIC;
  if (archive) {
    if (!fs.existsSync(archive)) throw new Error(`FLOW_LIBBPF_STATIC: ${archive} does not exist`);
    return ["-Wl,--exclude-libs,ALL", archive, "-lelf", "-lz"];
  }
  try {
    return execFileSync("pkg-config", ["--libs", "libbpf"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

process.stdout.write(`${linkArgs().join(" ")}\n`);

#!/usr/bin/env node
// `npm run prebuild`: the N-API prebuilds the package ships, for linux-x64 and linux-arm64
// (glibc), made with prebuildify in prebuilds/linux-<arch>/:
//   traffic_native.napi.glibc.node, flow.napi.glibc.node  the addons (src/native/addon-dir.ts loads them)
//   flow.bpf.o, flow.skel.h                                 the CO-RE BPF object and its skeleton
// arm64 is cross-compiled with Debian's g++-aarch64-linux-gnu against the arm64 multiarch
// libelf/zlib (libelf-dev:arm64, zlib1g-dev:arm64). libbpf is linked statically: Debian's
// libbpf.a is not position-independent, so libbpf is built with -fPIC for each target from
// Debian's own libbpf source (apt-get source, with a private source list and package
// lists under build/prebuild, the system's apt setup untouched). The builds run in a copy
// of binding.gyp and native/ under build/prebuild/stage, so the normal build/Release stays.
// One run at a time (a lock directory): a run that waited skips the targets that are then
// current (newer than binding.gyp and native/; --force rebuilds), and each target's
// directory is replaced in one rename, so a reader never sees half of it. npm also runs
// the "prebuild" script as the pre-hook of `npm run build`: then it does nothing.
"use strict";
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { listSources, nodeGypScript, nodedirArgs } = require("./build-native");

const root = path.resolve(__dirname, "..");
const work = path.join(root, "build", "prebuild");
const stage = path.join(work, "stage");
const TIMEOUT = 15 * 60 * 1000;
const lock = path.join(root, "build", "prebuild.lock");
const PREBUILT = ["traffic_native.napi.glibc.node", "flow.napi.glibc.node", "flow.bpf.o", "flow.skel.h"];

/** Whether prebuilds/linux-<arch> has every file, each newer than the native sources. */
function current(arch) {
  try {
    const sources = Math.max(...[path.join(root, "binding.gyp"), ...listSources(path.join(root, "native"))].map((f) => fs.statSync(f).mtimeMs));
    return PREBUILT.every((f) => fs.statSync(path.join(root, "prebuilds", `linux-${arch}`, f)).mtimeMs >= sources);
  } catch {
    return false;
  }
}

async function withLock(fn) {
  fs.mkdirSync(path.dirname(lock), { recursive: true });
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch (err) {
      if (err.code !== "EEXIST") throw err;
      // A lock older than a whole run is left from a killed run.
      if (Date.now() - fs.statSync(lock).mtimeMs > TIMEOUT) fs.rmSync(lock, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`${lock} is held by another run`);
      else await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

const TARGETS = {
  x64: { tools: "", pkgconfig: "/usr/lib/x86_64-linux-gnu/pkgconfig" },
  arm64: { tools: "aarch64-linux-gnu-", pkgconfig: "/usr/lib/aarch64-linux-gnu/pkgconfig" },
};

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: TIMEOUT, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.error ? r.error.message : `exit ${r.status}`}):\n${`${r.stdout || ""}${r.stderr || ""}`.split("\n").slice(-30).join("\n")}`);
  return r.stdout;
}

/** Debian's libbpf source (the version of the installed libbpf-dev), unpacked once. */
function libbpfSource() {
  // One line per installed architecture of libbpf-dev (amd64, arm64): the same version.
  // dpkg-query's own field syntax, not a JS template.
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a dpkg-query format string
  const version = run("dpkg-query", ["-W", "-f=${source:Upstream-Version}\n", "libbpf-dev"]).split("\n")[0];
  const dir = path.join(work, `libbpf-${version}`);
  if (fs.existsSync(path.join(dir, "src", "Makefile"))) return dir;
  const apt = path.join(work, "apt");
  fs.mkdirSync(path.join(apt, "lists", "partial"), { recursive: true });
  const codename = fs.readFileSync("/etc/os-release", "utf8").match(/^VERSION_CODENAME=(\S+)/m)?.[1] ?? "bookworm";
  fs.writeFileSync(path.join(apt, "sources.list"), `deb-src http://deb.debian.org/debian ${codename} main\n`);
  const opts = ["-q", "-o", `Dir::Etc::SourceList=${path.join(apt, "sources.list")}`, "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", `Dir::State::Lists=${path.join(apt, "lists")}`];
  run("apt-get", [...opts, "update"]);
  run("apt-get", [...opts, "source", "--download-only", "libbpf"], { cwd: apt });
  const tarball = fs.readdirSync(apt).find((f) => /^libbpf_.*\.orig\.tar\.gz$/.test(f));
  if (!tarball) throw new Error("apt-get source libbpf gave no .orig.tar.gz");
  run("tar", ["xzf", path.join(apt, tarball), "-C", work]);
  if (!fs.existsSync(path.join(dir, "src", "Makefile"))) throw new Error(`${tarball} is not libbpf ${version} (the installed libbpf-dev)`);
  return dir;
}

/** libbpf.a built with -fPIC for `arch`. */
function libbpfArchive(source, arch) {
  const obj = path.join(work, `libbpf-${arch}`);
  const archive = path.join(obj, "libbpf.a");
  if (fs.existsSync(archive)) return archive;
  fs.mkdirSync(obj, { recursive: true });
  const t = TARGETS[arch].tools;
  run("make", ["-j2", "BUILD_STATIC_ONLY=1", `OBJDIR=${obj}`, `CC=${t}gcc`, `AR=${t}ar`, "EXTRA_CFLAGS=-fPIC -O2"], { cwd: path.join(source, "src") });
  return archive;
}

function prebuildify(opts) {
  return new Promise((resolve, reject) => require("prebuildify")(opts, (err) => (err ? reject(err) : resolve())));
}

async function buildTarget(arch, archive) {
  const t = TARGETS[arch];
  const final = path.join(root, "prebuilds", `linux-${arch}`);
  const out = path.join(root, "prebuilds", `.linux-${arch}.new`);
  fs.rmSync(out, { recursive: true, force: true });
  fs.rmSync(path.join(stage, "build"), { recursive: true, force: true });
  const nodedir = nodedirArgs()[0]?.slice("--nodedir=".length);
  const env = {
    ...process.env,
    FLOW_LIBBPF_STATIC: archive,
    PKG_CONFIG_LIBDIR: `${t.pkgconfig}:/usr/share/pkgconfig`,
    ...(nodedir ? { npm_config_nodedir: nodedir } : {}),
    ...(t.tools ? { CC: `${t.tools}gcc`, CXX: `${t.tools}g++`, LINK: `${t.tools}g++`, AR: `${t.tools}ar` } : {}),
  };
  // prebuildify names the first .node of build/Release "<name>.napi.glibc.node" and leaves
  // the other: that one is named here, both are stripped.
  const saved = process.env;
  process.env = env;
  try {
    await prebuildify({
      cwd: stage,
      out: path.join(work, "out"),
      arch,
      napi: true,
      targets: [{ runtime: "node", target: process.versions.node }],
      strip: true,
      stripBin: `${t.tools}strip`,
      tagLibc: true,
      libc: "glibc",
      name: "addon.napi",
      nodeGyp: nodeGypScript(),
      quiet: true,
    });
  } finally {
    process.env = saved;
  }
  const release = path.join(stage, "build", "Release");
  const left = ["traffic_native", "flow"].filter((a) => fs.existsSync(path.join(release, `${a}.node`)));
  if (left.length !== 1) throw new Error(`expected one addon left in ${release}, found ${left.join(", ") || "none"}`);
  const taken = left[0] === "flow" ? "traffic_native" : "flow";
  fs.mkdirSync(out, { recursive: true });
  fs.renameSync(path.join(work, "out", "prebuilds", `linux-${arch}`, "addon.napi.glibc.node"), path.join(out, `${taken}.napi.glibc.node`));
  fs.copyFileSync(path.join(release, `${left[0]}.node`), path.join(out, `${left[0]}.napi.glibc.node`));
  run(`${t.tools}strip`, ["--strip-all", path.join(out, `${left[0]}.napi.glibc.node`)]);
  const bpf = path.join(release, "obj", "gen", "flow-bpf");
  if (!fs.readFileSync(path.join(bpf, "flow_skel_gen.h"), "utf8").includes("FLOW_SKEL_AVAILABLE 1")) {
    throw new Error(`the BPF program was not built for ${arch}: ${fs.readFileSync(path.join(bpf, "flow_skel_gen.h"), "utf8")}`);
  }
  for (const f of ["flow.bpf.o", "flow.skel.h"]) fs.copyFileSync(path.join(bpf, f), path.join(out, f));
  fs.rmSync(final, { recursive: true, force: true });
  fs.renameSync(out, final);
  return final;
}

/**
 * The npm command line this script runs under, as words without options ("run", "build"),
 * or [] when not run by npm. npm names its process after the command ("npm run build"); an
 * npm that does not has its arguments after npm_execpath.
 */
function npmCommand() {
  const execpath = process.env.npm_execpath;
  if (!execpath) return [];
  let pid = process.ppid;
  for (let depth = 0; depth < 4 && pid > 1; depth++) {
    let argv;
    try {
      argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    } catch {
      return [];
    }
    const words = /^npm /.test(argv[0] ?? "") ? argv[0].split(" ").slice(1) : argv.includes(execpath) ? argv.slice(argv.indexOf(execpath) + 1) : null;
    if (words) return words.filter((w) => !w.startsWith("-"));
    // One process up: /proc/<pid>/stat has the parent's pid after "(name) state".
    pid = Number(fs.readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "").split(" ")[1]);
  }
  return [];
}

/**
 * Whether npm runs this script as the pre-hook of `npm run build` (npm runs "prebuild"
 * before "build" and gives both the same environment, npm_lifecycle_event=prebuild): the
 * prebuilds are made by `npm run prebuild` (or npm pack) only, not by every build of dist/.
 */
function preHookOfBuild() {
  if (process.env.npm_lifecycle_event !== "prebuild") return false;
  const [command, script] = npmCommand();
  return ["run", "run-script", "rum", "urn"].includes(command) && script === "build";
}

async function main() {
  if (preHookOfBuild()) {
    process.stdout.write("prebuild: not run as the pre-hook of `npm run build`; `npm run prebuild` makes the prebuilds\n");
    return;
  }
  await withLock(prebuild);
}

async function prebuild() {
  const arches = process.argv.slice(2).filter((a) => !a.startsWith("-"));
  const wanted = arches.length > 0 ? arches : Object.keys(TARGETS);
  for (const arch of wanted) if (!TARGETS[arch]) throw new Error(`unknown target ${arch} (known: ${Object.keys(TARGETS).join(", ")})`);
  const todo = wanted.filter((arch) => process.argv.includes("--force") || !current(arch));
  if (todo.length === 0) {
    process.stdout.write(`prebuild: ${wanted.map((a) => `prebuilds/linux-${a}`).join(", ")} newer than the native sources, nothing to do (--force rebuilds)\n`);
    return;
  }
  fs.mkdirSync(stage, { recursive: true });
  fs.rmSync(path.join(stage, "native"), { recursive: true, force: true });
  fs.cpSync(path.join(root, "native"), path.join(stage, "native"), { recursive: true });
  fs.copyFileSync(path.join(root, "binding.gyp"), path.join(stage, "binding.gyp"));
  fs.writeFileSync(path.join(stage, "package.json"), "{}\n");
  if (!fs.existsSync(path.join(stage, "node_modules"))) fs.symlinkSync(path.join(root, "node_modules"), path.join(stage, "node_modules"), "dir");
  const source = libbpfSource();
  for (const arch of todo) {
    const out = await buildTarget(arch, libbpfArchive(source, arch));
    const files = fs.readdirSync(out).map((f) => `${f} (${fs.statSync(path.join(out, f)).size} bytes)`);
    process.stdout.write(`prebuild: ${path.relative(root, out)}: ${files.join(", ")}\n`);
  }
}

module.exports = { TARGETS, current, preHookOfBuild };

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`prebuild: ${err.message}\n`);
    process.exit(1);
  });
}

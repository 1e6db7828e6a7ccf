// The packed package installs and runs with no compiler: `npm pack`, then an install into
// a fresh Node-RED user dir in a mount namespace where g++, cc, c++, gcc, make, clang and
// python3 are a script that logs its call and fails. Then Node-RED 4.1 loads every node
// type from that install, and the installed addons (the linux-x64 prebuilds) run a
// listener, a splice pump and the eBPF flow source.
import { execFileSync, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/net";

const { startNodeRed, stopNodeRed, root } = require("../../scripts/node-red-env.js");

const PKG = "@traffic-policy/node-red-traffic-policy";
const COMPILERS = ["g++", "c++", "gcc", "cc", "make", "clang", "python3"];

describe("the packed package, installed with no compiler", () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-pack-"));
  const userDir = path.join(work, "user");
  const trapLog = path.join(work, "compilers-run.log");
  let installOutput = "";
  let port = 0;
  let red: { child: ChildProcess; log(): string } | undefined;
  let tarball = "";

  beforeAll(async () => {
    // prepack builds dist/ and the prebuilds when they are missing or stale.
    const packed = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", work], { cwd: root, encoding: "utf8", timeout: 15 * 60 * 1000, stdio: ["ignore", "pipe", "pipe"] }).replace(/^[^[]*/s, "")) as Array<{ filename: string }>;
    tarball = path.join(work, packed[0]!.filename);
    const trap = path.join(work, "no-compiler.sh");
    fs.writeFileSync(trap, `#!/bin/sh\necho "$0 $*" >> ${trapLog}\nexit 1\n`, { mode: 0o755 });
    fs.mkdirSync(userDir);
    fs.writeFileSync(path.join(userDir, "package.json"), JSON.stringify({ name: "user-dir", private: true }));
    const hide = COMPILERS.map((c) => `p=$(command -v ${c}) && mount --bind ${trap} "$(readlink -f "$p")"`).join("; ");
    const r = spawnSync("unshare", ["-m", "--propagation", "private", "sh", "-c", `${hide}; cd ${userDir} && npm install --no-audit --no-fund --foreground-scripts ${tarball}`], {
      encoding: "utf8",
      timeout: 5 * 60 * 1000,
    });
    installOutput = `${r.stdout}${r.stderr}`;
    if (r.status !== 0) throw new Error(`install failed:\n${installOutput}`);
    port = await freePort();
    fs.writeFileSync(
      path.join(userDir, "settings.js"),
      `module.exports = ${JSON.stringify({ uiHost: "127.0.0.1", uiPort: port, flowFile: "flows.json", credentialSecret: false, telemetry: { enabled: false }, diagnostics: { enabled: false } })};\n`,
    );
    red = await startNodeRed(userDir, { port, timeoutMs: 90_000 });
  }, 25 * 60 * 1000);

  afterAll(async () => {
    if (red) await stopNodeRed(red.child);
    fs.rmSync(work, { recursive: true, force: true });
  });

  it("installs the prebuilt addons and runs no compiler", () => {
    expect(installOutput).toContain("build: using the prebuilt addons for linux-x64 (glibc)");
    expect(fs.existsSync(trapLog) ? fs.readFileSync(trapLog, "utf8") : "").toBe("");
    const installed = path.join(userDir, "node_modules", ...PKG.split("/"));
    expect(fs.existsSync(path.join(installed, "build"))).toBe(false);
    const manifest = JSON.parse(fs.readFileSync(path.join(installed, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(manifest.scripts).toEqual({ install: "node scripts/build-native.js --install" });
    const maps = execFileSync("find", [path.join(installed, "dist"), "-name", "*.map"], { encoding: "utf8" });
    expect(maps).toBe("");
  });

  it("Node-RED 4.1 loads every node type of the installed package", async () => {
    expect(red!.log()).toMatch(/Node-RED version: v4\.1\./);
    const sets = (await (await fetch(`http://127.0.0.1:${port}/nodes`, { headers: { Accept: "application/json" } })).json()) as Array<{ module: string; types: string[]; err?: string }>;
    const ours = sets.filter((s) => s.module === PKG);
    expect(ours.length).toBeGreaterThan(0);
    expect(ours.map((s) => s.err ?? null)).toEqual(ours.map(() => null));
    expect(ours.flatMap((s) => s.types)).toEqual(expect.arrayContaining(["real ip", "ip filter", "transparent in", "forward", "flow source"]));
  });

  it("the installed addons run a listener, a splice pump and the eBPF flow source", () => {
    const installed = path.join(userDir, "node_modules", ...PKG.split("/"));
    const script = `
const net = require("net");
const n = require(${JSON.stringify(path.join(installed, "dist", "src", "native", "index.js"))});
const f = require(${JSON.stringify(path.join(installed, "dist", "src", "flow", "native.js"))});
const a = n.loadNative();
const echo = net.createServer((s) => s.pipe(s)).listen(0, "127.0.0.1", () => {
  const fd = n.createListenerFd({ address: "127.0.0.1", port: 0 });
  const server = net.createServer({ pauseOnConnect: true }, (sock) => {
    const pump = new a.SplicePump(n.socketFd(sock), { address: "127.0.0.1", port: echo.address().port }, 65536, Buffer.alloc(0), () => {});
    sock.on("close", () => pump.stop());
  }).listen({ fd }, () => {
    const c = net.connect(server.address().port, "127.0.0.1", () => c.write("through the pump"));
    c.once("data", (d) => {
      const flow = f.loadFlowAddon();
      const cap = new flow.BpfCapture();
      const started = cap.start({ events: 3, sides: 0, ports: [], cidrs: [], ringBytes: 65536, ownerFromIo: true }, () => {});
      cap.stop();
      const maps = require("fs").readFileSync("/proc/self/maps", "utf8");
      process.stdout.write(JSON.stringify({ echoed: d.toString(), ebpf: flow.ebpfBuilt, programs: Object.values(started.programs).filter(Boolean).length,
        prebuilt: maps.split("\\n").filter((l) => /prebuilds\\/linux-x64\\/\\w+\\.napi\\.glibc\\.node$/.test(l)).map((l) => l.replace(/^.* /, "")).filter((v, i, all) => all.indexOf(v) === i).sort() }));
      process.exit(0);
    });
  });
});`;
    const out = JSON.parse(execFileSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 60_000, env: { ...process.env, TRAFFIC_NATIVE_DIR: "" } })) as {
      echoed: string;
      ebpf: boolean;
      programs: number;
      prebuilt: string[];
    };
    expect(out.echoed).toBe("through the pump");
    expect(out.ebpf).toBe(true);
    expect(out.programs).toBeGreaterThan(0);
    expect(out.prebuilt).toEqual(["flow", "traffic_native"].map((a) => path.join(installed, "prebuilds", "linux-x64", `${a}.napi.glibc.node`)));
  }, 120_000);
  // docker/Dockerfile's steps, run here without Docker (no registry is reachable for the
  // Node-RED image): its RUN lines with the image's paths mapped to a scratch root. The
  // package install runs as an unprivileged user, as under `USER node-red`; the setcap step
  // runs on a copy of node, which then gives an unprivileged user exactly the three
  // capabilities and with them a transparent listener, which plain node is refused.
  it("docker/Dockerfile's steps install the tarball and give node exactly NET_ADMIN, BPF and PERFMON", () => {
    const steps = dockerfileSteps(fs.readFileSync(path.join(root, "docker", "Dockerfile"), "utf8"));
    const runs = steps.filter((s) => s.op === "RUN").map((s) => s.arg);
    expect(runs).toHaveLength(3);
    expect(steps.filter((s) => s.op === "COPY").map((s) => s.arg)).toEqual([expect.stringMatching(/ \/tmp\/traffic-policy\.tgz$/)]);
    // 1. Debian packages: resolved by apt (simulated: the host is not the image).
    const packages = /apt-get install -y --no-install-recommends ([^&]+)&&/.exec(runs[0]!)?.[1]?.trim().split(/\s+/) ?? [];
    expect(packages).toEqual(expect.arrayContaining(["libelf1", "nftables", "libcap2-bin"]));
    const apt = spawnSync("apt-get", ["install", "-s", "-y", "--no-install-recommends", ...packages], { encoding: "utf8", timeout: 120_000 });
    expect(apt.status, apt.stderr).toBe(0);
    // 2. The package into the image's Node-RED dir, as an unprivileged user.
    // The scratch root sits in this test's private directory: let the unprivileged user in.
    fs.chmodSync(work, 0o755);
    const image = path.join(work, "image");
    const nodeRedDir = path.join(image, "usr", "src", "node-red");
    const copied = path.join(image, "tmp", "traffic-policy.tgz");
    fs.mkdirSync(nodeRedDir, { recursive: true });
    fs.mkdirSync(path.dirname(copied), { recursive: true });
    fs.copyFileSync(tarball, copied);
    fs.writeFileSync(path.join(nodeRedDir, "package.json"), JSON.stringify({ name: "node-red-docker", private: true }));
    const home = path.join(image, "home");
    fs.mkdirSync(home);
    execFileSync("chown", ["-R", "65534:65534", image]);
    const mapped = (cmd: string): string => cmd.replaceAll("/usr/src/node-red", nodeRedDir).replaceAll("/tmp/traffic-policy.tgz", copied);
    const install = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", mapped(runs[1]!)], {
      encoding: "utf8",
      timeout: 5 * 60 * 1000,
      env: { PATH: process.env["PATH"], HOME: home, npm_config_cache: path.join(home, ".npm") },
    });
    expect(install.status, `${install.stdout}${install.stderr}`).toBe(0);
    const installed = path.join(nodeRedDir, "node_modules", ...PKG.split("/"));
    expect(fs.existsSync(path.join(installed, "dist", "src", "index.js"))).toBe(true);
    // 3. The capabilities, on a copy of this node (the step takes the one on PATH).
    const node = path.join(image, "node");
    fs.copyFileSync(process.execPath, node);
    fs.chmodSync(node, 0o755);
    const capStep = mapped(runs[2]!).replace('"$(readlink -f "$(command -v node)")"', node);
    expect(capStep).toContain(node);
    execFileSync("sh", ["-c", capStep]);
    expect(fs.existsSync(copied)).toBe(false);
    const caps = execFileSync("getcap", [node], { encoding: "utf8" });
    expect(caps.replace(/^\S+\s+/, "").trim().split("=")[0]!.split(",").sort()).toEqual(["cap_bpf", "cap_net_admin", "cap_perfmon"]);
    // What an unprivileged user gets from each node: the capabilities, and whether the
    // kernel lets it open a transparent (TPROXY) listener.
    const probe = `
const d = require(${JSON.stringify(path.join(installed, "dist", "src", "doctor.js"))});
const n = require(${JSON.stringify(path.join(installed, "dist", "src", "native", "index.js"))});
let transparent = "ok";
try { require("fs").closeSync(n.createListenerFd({ address: "127.0.0.1", port: 0, transparent: true })); } catch (e) { transparent = e.code || e.message; }
process.stdout.write(JSON.stringify({ caps: [...d.effectiveCapabilities()].sort(), transparent }));`;
    const asNobody = (bin: string): { caps: string[]; transparent: string } =>
      JSON.parse(execFileSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", bin, "-e", probe], { encoding: "utf8", timeout: 60_000, env: { PATH: process.env["PATH"], HOME: home } }));
    expect(asNobody(node)).toEqual({ caps: ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"], transparent: "ok" });
    const plain = asNobody(process.execPath);
    expect(plain.caps).toEqual([]);
    expect(plain.transparent).not.toBe("ok");
  }, 10 * 60 * 1000);
});

/** A Dockerfile's instructions, continuation lines joined, comments dropped. */
function dockerfileSteps(text: string): Array<{ op: string; arg: string }> {
  const joined = text.replace(/\\\n/g, " ");
  return joined
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const m = /^(\w+)\s+(.*)$/.exec(l)!;
      return { op: m[1]!.toUpperCase(), arg: m[2]!.replace(/\s+/g, " ").trim() };
    });
}

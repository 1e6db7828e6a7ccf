/**
 * The floor under the flow source's design (bench/flow-floor.bpf.c): its hooks attached
 * with empty programs, optionally creating the per-socket storage. Built with clang,
 * bpftool and libbpf on first use and cached by source hash and kernel release, like the
 * load generator.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { cachedBuild, checkoutSource } from "../test/rigs/build-cache";

function run(command: string, args: readonly string[], what: string): void {
  const r = spawnSync(command, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${what}: ${r.error?.message ?? r.stderr.trim()}`);
}

const ARCH: Record<string, string> = { x64: "x86", arm64: "arm64", s390x: "s390", ppc64: "powerpc", riscv64: "riscv", loong64: "loongarch" };

let built: { loader: string; object: string } | null = null;

/** The loader and BPF object; throws with the tool's message when one is missing or fails. */
export function floorBuild(): { loader: string; object: string } {
  if (built !== null) return built;
  const bpfSource = checkoutSource("bench/flow-floor.bpf.c");
  const loaderSource = checkoutSource("bench/flow-floor.c");
  const dir = cachedBuild("flow-floor", [fs.readFileSync(bpfSource), fs.readFileSync(loaderSource), os.release()], (tmp) => {
    fs.mkdirSync(tmp, { recursive: true });
    const vmlinux = spawnSync("bpftool", ["btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"], { encoding: "utf8", maxBuffer: 256 << 20 });
    if (vmlinux.status !== 0) throw new Error(`bpftool btf dump: ${vmlinux.error?.message ?? vmlinux.stderr.trim()}`);
    fs.writeFileSync(path.join(tmp, "vmlinux.h"), vmlinux.stdout);
    run("clang", ["-O2", "-g", "-target", "bpf", `-D__TARGET_ARCH_${ARCH[process.arch] ?? process.arch}`, `-I${tmp}`, "-c", bpfSource, "-o", path.join(tmp, "flow-floor.bpf.o")], "clang flow-floor.bpf.c");
    run("cc", ["-O2", "-Wall", "-o", path.join(tmp, "flow-floor"), loaderSource, "-lbpf"], "cc flow-floor.c");
  });
  const out = { loader: path.join(dir, "flow-floor"), object: path.join(dir, "flow-floor.bpf.o") };
  built = out;
  return out;
}

/** Which floor programs to attach: the tracepoint programs always, then optionally these. */
export interface FloorParts {
  readonly sockops: boolean;
  /** Per-socket state made for every new socket: none, sk_storage, or a hash keyed by socket cookie. */
  readonly storage: "none" | "sk_storage" | "hash";
}

/** Attaches the floor programs; resolves once they run, with a function that detaches them. */
export function attachFloor(parts: FloorParts, cgroupRoot: string): Promise<() => Promise<void>> {
  const { loader, object } = floorBuild();
  const args = [object, String(["none", "sk_storage", "hash"].indexOf(parts.storage)), parts.sockops ? "1" : "0", cgroupRoot];
  const child: ChildProcess = spawn(loader, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`flow-floor exited (${code}): ${stderr.trim()}`)));
    child.stdout!.once("data", () =>
      resolve(async () => {
        child.stdin!.end();
        await exited;
      }),
    );
  });
}

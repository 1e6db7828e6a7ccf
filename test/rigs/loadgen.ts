/**
 * The native short-connection load generator (test/rigs/loadgen.c), compiled with `cc` on
 * first use and cached by its source hash. Used by bench/flow.bench.ts and by the flow
 * load test, so both measure with the same load.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { cachedCProgram } from "./build-cache";

/** What one client run did; every connection is exactly one of connected/failed/unfinished. */
export interface LoadResult {
  readonly attempted: number;
  readonly connected: number;
  readonly failed: number;
  readonly unfinished: number;
  /** How long the opens ran (ms). */
  readonly ms: number;
  /** Until the last connection finished (ms). */
  readonly elapsedMs: number;
  /** Connections completed per second of opening. */
  readonly rate: number;
  /** CPU time the client used, user + system (ms). */
  readonly cpuMs: number;
  readonly pid: number;
}

/** A running accept-and-close server. */
export interface LoadServer {
  readonly port: number;
  readonly pid: number;
  /** Stops the server; resolves with the number of connections it accepted. */
  stop(): Promise<number>;
  /** CPU time the server used, user + system (ms); known after stop(). */
  cpuMs(): number;
}

let built: string | null = null;

/** Path of the compiled generator; compiles it when its source changed. Throws when cc fails. */
export function loadgenBinary(cc = "cc"): string {
  if (built !== null) return built;
  built = cachedCProgram("test/rigs/loadgen.c", [], cc);
  return built;
}

function lines(child: ChildProcess, onLine: (line: string) => void): void {
  let buf = "";
  child.stdout!.on("data", (c: Buffer) => {
    buf += c.toString();
    const parts = buf.split("\n");
    buf = parts.pop()!;
    for (const p of parts) if (p.trim() !== "") onLine(p);
  });
}

/** Starts `loadgen server` on `host`, port chosen by the kernel; `wrap` runs it through a launcher (`ip netns exec NS`). */
export function startLoadServer(host = "127.0.0.1", wrap: readonly string[] = []): Promise<LoadServer> {
  const argv = [...wrap, loadgenBinary(), "server", host, "0"];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
  let accepted: number | null = null;
  let cpuMs = 0;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`loadgen server exited (${code})`)));
    lines(child, (line) => {
      const msg = JSON.parse(line) as { port?: number; pid?: number; accepted?: number; cpuMs?: number };
      if (msg.accepted !== undefined) accepted = msg.accepted;
      if (msg.cpuMs !== undefined) cpuMs = msg.cpuMs;
      if (msg.port !== undefined) {
        resolve({
          port: msg.port,
          pid: msg.pid!,
          stop: async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
            await exited;
            if (accepted === null) throw new Error("loadgen server ended without its count");
            return accepted;
          },
          cpuMs: () => cpuMs,
        });
      }
    });
  });
}

/**
 * Runs one `loadgen client`: `rate` connections/s (0 = unpaced) for `seconds`, from
 * `source` when given, through `wrap` (`ip netns exec NS`) when given.
 */
export function runLoadClient(port: number, rate: number, seconds: number, concurrency = 256, host = "127.0.0.1", source?: string, wrap: readonly string[] = []): Promise<LoadResult> {
  const argv = [...wrap, loadgenBinary(), "client", host, String(port), String(rate), String(seconds), String(concurrency), ...(source === undefined ? [] : [source])];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
  let result: LoadResult | null = null;
  lines(child, (line) => (result = JSON.parse(line) as LoadResult));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => (result !== null && code === 0 ? resolve(result) : reject(new Error(`loadgen client exited (${code})`))));
  });
}

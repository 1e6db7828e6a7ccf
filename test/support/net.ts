import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import net from "node:net";

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export { waitForPort } from "../rigs/wait";

/** Starts a long-running program; its output is kept for failure messages. */
export function startProcess(cmd: string, args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (c) => (out += c.toString()));
  child.stderr!.on("data", (c) => (out += c.toString()));
  return { child, output: () => out };
}

const require_ = createRequire(__filename);
const env = require_("../../scripts/node-red-env.js") as { stopProcess(child: ChildProcess, timeoutMs?: number): Promise<void> };

/** Ends a process this test started, by its pid, and waits for it to exit. */
export const stopProcess = (child: ChildProcess, timeoutMs = 5000): Promise<void> => env.stopProcess(child, timeoutMs);

import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import net from "node:net";

export { freePort } from "../rigs/free-port";

export { waitForPort } from "../rigs/wait";

/**
 * Connects to 127.0.0.1:`port` and resolves with the client socket once the handshake is
 * done, or with the error code; the socket goes into `open` for the test to destroy.
 */
export function dialLoopback(port: number, open: net.Socket[]): Promise<net.Socket | string> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    open.push(s);
    s.once("connect", () => resolve(s));
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
  });
}

/**
 * An upstream on 127.0.0.1 that answers every connection with "UP" once it has the
 * client's first bytes: a client that got "UP" went all the way through. `count` is how
 * many it answered.
 */
export async function answeringUpstream(): Promise<{ server: net.Server; port: number; count: () => number }> {
  let n = 0;
  const server = net.createServer((s) => {
    s.on("error", () => undefined);
    s.once("data", () => {
      n++;
      s.end("UP");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as net.AddressInfo).port, count: () => n };
}


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

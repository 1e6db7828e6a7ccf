// Waiting for a condition or a listening port: one copy for the tests and the benchmarks.
import net from "node:net";

/** Polls `check` until it holds or `timeoutMs` passed; says whether it held. */
export async function poll(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 10): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Polls `check` until it holds; fails after `timeoutMs`, naming what it waited for. */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000, intervalMs = 10): Promise<void> {
  if (!(await poll(check, timeoutMs, intervalMs))) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Resolves once something accepts TCP connections on host:port. */
export async function waitForPort(port: number, host = "127.0.0.1", timeoutMs = 10000): Promise<void> {
  const accepts = (): Promise<boolean> =>
    new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host }, () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
  if (!(await poll(accepts, timeoutMs, 50))) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
}

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForPort } from "./net";

export { freePort };

/** A mosquitto this test started, with its own config and persistence folder. */
export interface Mosquitto {
  readonly port: number;
  readonly dir: string;
  readonly pid: number;
  /** Starts it again on the same port with the same persistence (after stop). */
  restart(): Promise<void>;
  /** Stops it by pid (SIGTERM: it writes its persistence file) and waits for the exit. */
  stop(): Promise<void>;
  /** Stops it and removes its folder. */
  dispose(): Promise<void>;
}

/**
 * Starts mosquitto on a free loopback port with a config file in a temp folder. Offline
 * queues are unlimited and persistence is on, so a persistent subscriber session keeps
 * what it was sent across a broker restart.
 */
export async function startMosquitto(binary: string, port?: number, extraConfig: string[] = []): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), "traffic-mosquitto-"));
  const p = port ?? (await freePort());
  writeFileSync(
    join(dir, "mosquitto.conf"),
    [
      `listener ${p} 127.0.0.1`,
      "allow_anonymous true",
      "persistence true",
      `persistence_location ${dir}/`,
      "autosave_interval 0",
      "max_queued_messages 0",
      "log_dest none",
      // Started as root, mosquitto drops to the mosquitto user, which cannot write its
      // persistence file into this root-owned temp folder.
      ...(process.getuid?.() === 0 ? ["user root"] : []),
      ...extraConfig,
      "",
    ].join("\n"),
  );
  let child: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    child = spawn(binary, ["-c", join(dir, "mosquitto.conf")], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr?.on("data", (c: Buffer) => (err += c.toString()));
    const exited = new Promise<never>((_, reject) => child?.once("exit", (code) => reject(new Error(`mosquitto exited (${code}): ${err}`))));
    await Promise.race([waitForPort(p), exited]);
    exited.catch(() => undefined);
  };
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      const c = child;
      if (c === null || c.exitCode !== null || c.signalCode !== null) return resolve();
      c.once("exit", () => resolve());
      process.kill(c.pid as number, "SIGTERM");
    });
  await start();
  return {
    port: p,
    dir,
    get pid() {
      return (child as ChildProcess | null)?.pid ?? -1;
    },
    restart: start,
    stop,
    dispose: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

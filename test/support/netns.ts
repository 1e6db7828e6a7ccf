import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import readline from "node:readline";

const ROOT = path.resolve(__dirname, "..", "..");

/** Runs a command without a shell; throws with its stderr on failure. */
export function run(cmd: string, args: readonly string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["pipe", "pipe", "pipe"], ...(input === undefined ? {} : { input }) });
}

/** Runs a command inside a namespace. */
export function inNs(ns: string, cmd: string, args: readonly string[], input?: string): string {
  return run("ip", ["netns", "exec", ns, cmd, ...args], input);
}

/**
 * Network namespaces a test creates, named with a per-process prefix; `cleanup()` deletes
 * every one of them (and with them their veths, nft tables, rules and routes).
 */
export class Namespaces {
  private readonly made: string[] = [];
  constructor(private readonly prefix = `tpt${process.pid % 100000}`) {}

  /** Creates a namespace with loopback up; returns its name. */
  add(short: string): string {
    const name = `${this.prefix}-${short}`;
    try {
      run("ip", ["netns", "del", name]);
    } catch {
      // not there: fine
    }
    run("ip", ["netns", "add", name]);
    this.made.push(name);
    inNs(name, "ip", ["link", "set", "lo", "up"]);
    return name;
  }

  /** Connects two namespaces with a veth pair and addresses them (CIDR strings). */
  link(a: string, aAddr: string, b: string, bAddr: string, ifName: string): void {
    run("ip", ["link", "add", `${ifName}a`, "netns", a, "type", "veth", "peer", "name", `${ifName}b`, "netns", b]);
    inNs(a, "ip", ["addr", "add", aAddr, "dev", `${ifName}a`]);
    inNs(b, "ip", ["addr", "add", bAddr, "dev", `${ifName}b`]);
    inNs(a, "ip", ["link", "set", `${ifName}a`, "up"]);
    inNs(b, "ip", ["link", "set", `${ifName}b`, "up"]);
  }

  /**
   * A routed path client → gateway → server, IPv4 and IPv6, forwarding on in the gateway:
   * client 203.0.113.10 / 2001:db8:c::10, gateway 203.0.113.1 and 198.51.100.1 /
   * 2001:db8:c::1 and 2001:db8:5::1, server 198.51.100.20 / 2001:db8:5::20. `short` names
   * the three namespaces (`<short>c`, `<short>g`, `<short>s`), `ifs` the two veth pairs
   * (client side `<ifs[0]>a`/`b`, server side `<ifs[1]>a`/`b`).
   */
  gatewayPath(short: string, ifs: readonly [string, string]): { client: string; gateway: string; server: string } {
    const client = this.add(`${short}c`);
    const gateway = this.add(`${short}g`);
    const server = this.add(`${short}s`);
    const [cIf, sIf] = ifs;
    this.link(client, "203.0.113.10/24", gateway, "203.0.113.1/24", cIf);
    this.link(gateway, "198.51.100.1/24", server, "198.51.100.20/24", sIf);
    inNs(client, "ip", ["route", "add", "default", "via", "203.0.113.1"]);
    inNs(server, "ip", ["route", "add", "default", "via", "198.51.100.1"]);
    inNs(gateway, "sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
    inNs(client, "ip", ["-6", "addr", "add", "2001:db8:c::10/64", "dev", `${cIf}a`, "nodad"]);
    inNs(gateway, "ip", ["-6", "addr", "add", "2001:db8:c::1/64", "dev", `${cIf}b`, "nodad"]);
    inNs(gateway, "ip", ["-6", "addr", "add", "2001:db8:5::1/64", "dev", `${sIf}a`, "nodad"]);
    inNs(server, "ip", ["-6", "addr", "add", "2001:db8:5::20/64", "dev", `${sIf}b`, "nodad"]);
    inNs(client, "ip", ["-6", "route", "add", "default", "via", "2001:db8:c::1"]);
    inNs(server, "ip", ["-6", "route", "add", "default", "via", "2001:db8:5::1"]);
    inNs(gateway, "sysctl", ["-qw", "net.ipv6.conf.all.forwarding=1"]);
    return { client, gateway, server };
  }

  cleanup(): void {
    for (const name of this.made.splice(0)) {
      try {
        run("ip", ["netns", "del", name]);
      } catch {
        // already gone
      }
    }
  }
}

/** A JSON event line from a child process. */
export type ChildEvent = { event: string } & Record<string, unknown>;

/** A child process that speaks NDJSON on stdout (test/support/*-child.js). */
export class NdjsonChild {
  readonly child: ChildProcess;
  private readonly events: ChildEvent[] = [];
  private waiters: Array<() => void> = [];
  stderr = "";

  constructor(argv: readonly string[]) {
    this.child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
    readline.createInterface({ input: this.child.stdout! }).on("line", (line) => {
      try {
        this.events.push(JSON.parse(line) as ChildEvent);
      } catch {
        this.stderr += `${line}\n`;
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.child.stderr!.on("data", (c: Buffer) => (this.stderr += c.toString()));
    this.child.on("exit", () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Waits for the next event of one of the given kinds (earlier ones of other kinds are kept). */
  async next(kinds: readonly string[], timeoutMs = 10_000): Promise<ChildEvent> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex((e) => kinds.includes(e.event));
      if (i >= 0) return this.events.splice(i, 1)[0]!;
      if (this.child.exitCode !== null) throw new Error(`child exited (${this.child.exitCode}) before ${kinds.join("/")}: ${this.stderr}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no ${kinds.join("/")} event within ${timeoutMs} ms; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Ends the child by its pid, if it still runs. */
  kill(): void {
    if (this.child.exitCode === null && this.child.pid !== undefined) this.child.kill("SIGKILL");
  }

  exited(): Promise<number | null> {
    if (this.child.exitCode !== null) return Promise.resolve(this.child.exitCode);
    return new Promise((r) => this.child.once("exit", (code) => r(code)));
  }
}

/** Command prefix that runs in a namespace, optionally without CAP_NET_ADMIN/CAP_NET_RAW. */
export function nsPrefix(ns: string | null, dropNetAdmin = false): string[] {
  const prefix = ns === null ? [] : ["ip", "netns", "exec", ns];
  // Root keeps its uid, but with these gone from the bounding set the exec'd program
  // cannot hold them: the position of an unprivileged Node-RED.
  return dropNetAdmin ? [...prefix, "setpriv", "--inh-caps=-all", "--bounding-set=-net_admin,-net_raw", "--"] : prefix;
}

/** Starts test/support/listener-child.js with a listener config. */
export function startListenerChild(ns: string | null, config: object, dropNetAdmin = false): NdjsonChild {
  const script = path.join(ROOT, "test", "support", "listener-child.js");
  return new NdjsonChild([...nsPrefix(ns, dropNetAdmin), process.execPath, script, JSON.stringify(config)]);
}

/** Opens one TCP connection from inside a namespace; resolves with what the client saw. */
export function clientConnect(
  ns: string,
  opts: { host: string; port: number; send?: string; end?: boolean; localAddress?: string; timeoutMs?: number },
): { error: string | null; local: { address: string; port: number }; response: string } {
  const script = path.join(ROOT, "test", "support", "tcp-client.js");
  return JSON.parse(inNs(ns, process.execPath, [script, JSON.stringify(opts)])) as never;
}

/** Builds dist/ when a source file is newer than the compiled output the children load. */
export { ensureBuilt } from "../rigs/load-rig";

/** Starts test/support/node-red-child.js with a flow, in a namespace, optionally without CAP_NET_ADMIN. */
export function startNodeRedChild(ns: string | null, flow: readonly object[], dropNetAdmin = false): NdjsonChild {
  const script = path.join(ROOT, "test", "support", "node-red-child.js");
  return new NdjsonChild([...nsPrefix(ns, dropNetAdmin), process.execPath, script, JSON.stringify(flow)]);
}

/** Waits for node-red-child's "loaded", then for node `id`'s green status; throws on its red status or a start-up error. */
export async function untilGreen(red: NdjsonChild, id: string): Promise<void> {
  await red.next(["loaded"]);
  for (;;) {
    const s = await red.next(["status", "error", "fatal"], 15_000);
    if (s.event !== "status") throw new Error(String(s["message"]));
    if (s["id"] !== id) continue;
    const st = s["status"] as { fill?: string; text?: string };
    if (st.fill === "green") return;
    if (st.fill === "red") throw new Error(`${id} failed: ${st.text}`);
  }
}

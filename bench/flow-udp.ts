/**
 * The flow source's UDP capture on the datagram path: echoed datagrams per second on
 * loopback (bench/udpgen.c: a C echo server and a C client keeping 256 datagrams in
 * flight) with a UDP flow source attached against none, in alternating rounds of the same
 * run. Every echoed datagram passes the cgroup_skb programs four times (client out, echo
 * in, echo out, client in), each a per-socket storage lookup and two atomic adds. Runs in
 * a network namespace of its own (root), so other traffic does not share the figures.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { FlowSource } from "../src/flow/source";
import { median, ratioRow, type BenchRow } from "./harness";
import { binary as udpgen } from "./udp.bench";

const NS = `tpbench-fudp-${process.pid % 100000}`;
// A fixed port is safe in the namespace this bench makes.
const PORT = 25101;
const ROUNDS = 3;
const SECONDS = 2;
const WINDOW = 256;
const SIZE = 64;

function echoedPerSecond(): number {
  const out = execFileSync("ip", ["netns", "exec", NS, udpgen(), "client", "127.0.0.1", String(PORT), String(SIZE), String(SECONDS), String(WINDOW)], { encoding: "utf8" });
  return (JSON.parse(out) as { rate: number }).rate;
}

/** Rows for the flow bench: echoed datagrams/s with UDP capture attached and detached. */
export async function udpCaptureRows(): Promise<{ rows: BenchRow[]; notes: string[] }> {
  if (process.getuid?.() !== 0) return { rows: [], notes: ["UDP capture rows skipped: they need root (a private namespace and eBPF)"] };
  let echo: ChildProcess | null = null;
  try {
    execFileSync("ip", ["netns", "add", NS]);
    execFileSync("ip", ["netns", "exec", NS, "ip", "link", "set", "lo", "up"]);
    echo = spawn("ip", ["netns", "exec", NS, udpgen(), "echo", String(PORT)], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      echo!.once("exit", (code) => reject(new Error(`udpgen echo exited (${code})`)));
      echo!.stdout!.once("data", () => resolve());
    });
    echoedPerSecond(); // warm-up
    const attached: number[] = [];
    const detached: number[] = [];
    let datagrams = 0;
    for (let r = 0; r < ROUNDS; r++) {
      detached.push(echoedPerSecond());
      const source = new FlowSource({ mode: "ebpf", protocols: "udp", ports: [PORT], reportExisting: false }, (events) => {
        for (const e of events) if (e.type === "flow-close") datagrams += e.datagramsSent ?? 0;
      });
      source.start();
      try {
        attached.push(echoedPerSecond());
        // The client socket's close (with its count) is on its way: the reader polls every 50 ms.
        await new Promise((resolve) => setTimeout(resolve, 200));
      } finally {
        source.stop();
      }
    }
    return {
      rows: [ratioRow(`${SIZE}-byte datagrams echoed on loopback, UDP flow source attached`, "datagrams/s", median(attached), "detached", median(detached))],
      notes: [
        `UDP capture: ${WINDOW} datagrams in flight from one client socket to a C echo server, median of ${ROUNDS} alternating rounds of ${SECONDS} s; the attached rounds' client sockets reported ${datagrams} datagrams sent`,
      ],
    };
  } catch (err) {
    return { rows: [], notes: [`UDP capture rows failed: ${(err as Error).message.split("\n")[0]}`] };
  } finally {
    if (echo?.pid !== undefined && echo.exitCode === null) echo.kill("SIGKILL");
    spawnSync("ip", ["netns", "del", NS]);
  }
}

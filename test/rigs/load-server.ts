// The upstream of the load rig (test/rigs/load-rig.ts), in its own process: an HTTP/1.0-style
// server that answers `GET /<id>` with a body derived from <id> (so the client can check
// every byte) and says which peer it saw. With a barrier it holds every answer until
// `barrier` connections are open at once: the proof that they all crossed the proxy
// concurrently. argv[2]: JSON { host, port, barrier?, barrierTimeoutMs?, bodyBytes }.
// Prints JSON lines: {event:"listening"}, {event:"barrier", open}, and on "stats" on
// stdin {event:"stats", open, maxOpen, served}; "barrier <n> <timeoutMs> [holdMs]" arms a new barrier.
import net from "node:net";
import readline from "node:readline";
import { responseFor } from "./load-protocol";

interface ServerOptions {
  host: string;
  port: number;
  barrier?: number;
  barrierTimeoutMs?: number;
  bodyBytes: number;
}

const opts = JSON.parse(process.argv[2] ?? "{}") as ServerOptions;
const out = (event: object): void => void process.stdout.write(`${JSON.stringify(event)}\n`);
let open = 0;
let maxOpen = 0;
let served = 0;
let barrier = opts.barrier ?? 0;
let barrierDone = barrier <= 0;
let barrierTimer: NodeJS.Timeout | null = null;
const held: Array<() => void> = [];

let holdMs = 0;

/** The barrier fell: says so at once, answers everyone `holdMs` later (time to look at the proxy). */
const releaseAll = (): void => {
  if (barrierDone) return;
  barrierDone = true;
  if (barrierTimer !== null) clearTimeout(barrierTimer);
  out({ event: "barrier", open, held: held.length });
  const answers = held.splice(0);
  setTimeout(() => {
    for (const answer of answers) answer();
  }, holdMs);
};

const server = net.createServer((socket) => {
  open++;
  if (open > maxOpen) maxOpen = open;
  socket.on("close", () => open--);
  socket.on("error", () => undefined);
  let head = "";
  const onData = (chunk: Buffer): void => {
    head += chunk.toString("latin1");
    if (!head.includes("\r\n\r\n")) {
      if (head.length > 4096) socket.destroy();
      return;
    }
    socket.off("data", onData);
    const m = /^GET \/([0-9a-z-]+) /.exec(head);
    if (m === null) {
      socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
      return;
    }
    const answer = (): void => {
      if (socket.destroyed) return;
      served++;
      socket.end(responseFor(m[1]!, opts.bodyBytes, socket.remoteAddress ?? ""));
    };
    if (barrierDone) answer();
    else {
      held.push(answer);
      // Every request has arrived and waits: all those connections are open end to end.
      if (held.length >= barrier) releaseAll();
    }
  };
  socket.on("data", onData);
});
server.maxConnections = 1_000_000;
server.listen({ host: opts.host, port: opts.port, backlog: 4096 }, () => {
  out({ event: "listening", port: (server.address() as net.AddressInfo).port });
  if (!barrierDone) arm(barrier, opts.barrierTimeoutMs ?? 60_000);
});

/** Holds answers until `n` connections are open at once (then `hold` ms more), or `timeoutMs` passes. */
function arm(n: number, timeoutMs: number, hold = 0): void {
  barrier = n;
  holdMs = hold;
  barrierDone = false;
  maxOpen = open;
  barrierTimer = setTimeout(releaseAll, timeoutMs);
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [cmd, a, b, c] = line.trim().split(/\s+/);
  if (cmd === "stats") out({ event: "stats", open, maxOpen, served });
  if (cmd === "barrier") {
    arm(Number(a), Number(b), Number(c ?? 0));
    out({ event: "armed", barrier });
  }
});
process.stdin.on("end", () => process.exit(0));

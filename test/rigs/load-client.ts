// The load rig's client (test/rigs/load-rig.ts), in its own process so the proxy's file
// descriptors are counted alone. argv[2]: JSON options.
//   burst: opens `count` connections (at most `pending` handshakes at a time), keeps them
//          all open, each sends one request and reads the whole answer; prints one JSON
//          line with the outcomes and how many were open at once.
//   rate:  opens `rate` connections a second until `durationMs` passes (0: until "stop" on
//          stdin), at most `maxInFlight` at once; prints {event:"progress"} every second
//          and {event:"done"} when every connection has ended.
// An outcome is `ok` (every byte right), `wrong` (bytes wrong), `closed` (a FIN and no
// byte), `truncated` (a FIN after part of the answer), `reset`, `refused`, `timeout` (no end within `timeoutMs`: a
// hang) or `error:<code>`.
import net from "node:net";
import readline from "node:readline";
import { checkResponse, requestFor } from "./load-protocol";

interface ClientOptions {
  mode: "burst" | "rate";
  host: string;
  port: number;
  bodyBytes: number;
  timeoutMs: number;
  count?: number;
  pending?: number;
  rate?: number;
  durationMs?: number;
  maxInFlight?: number;
  /** Address the upstream reports when the connection went through the proxy. */
  proxyAddress?: string;
}

const opts = JSON.parse(process.argv[2] ?? "{}") as ClientOptions;
const out = (event: object): void => void process.stdout.write(`${JSON.stringify(event)}\n`);
const outcomes: Record<string, number> = {};
const wrongSamples: string[] = [];
/** What the first hung connections had seen: when they connected, what came back. */
const timeoutSamples: Array<{ id: string; localPort: number | undefined; startedMs: number; connectedMs: number | null; received: number }> = [];
let started = 0;
let connected = 0;
let open = 0;
let maxOpen = 0;
let inFlight = 0;
let ended = 0;
let proxied = 0;
let direct = 0;
let seq = 0;
const t0 = Date.now();

function tally(outcome: string): void {
  outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
}

/** One connection: resolves when it has ended, one way or another. */
function connectOnce(onConnected: () => void): Promise<void> {
  const id = `${process.pid.toString(36)}-${(seq++).toString(36)}`;
  started++;
  inFlight++;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let isOpen = false;
    let done = false;
    const socket = net.connect({ host: opts.host, port: opts.port });
    const finish = (outcome: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (isOpen) open--;
      inFlight--;
      ended++;
      tally(outcome);
      socket.destroy();
      resolve();
    };
    const startedMs = Date.now() - t0;
    let connectedMs: number | null = null;
    const timer = setTimeout(() => {
      if (timeoutSamples.length < 10) timeoutSamples.push({ id, localPort: socket.localPort, startedMs, connectedMs, received: chunks.reduce((n, c) => n + c.length, 0) });
      finish("timeout");
    }, opts.timeoutMs);
    socket.on("connect", () => {
      connectedMs = Date.now() - t0;
      isOpen = true;
      connected++;
      open++;
      if (open > maxOpen) maxOpen = open;
      onConnected();
      socket.write(requestFor(id));
    });
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("end", () => {
      const received = Buffer.concat(chunks);
      if (received.length === 0) return finish("closed");
      const r = checkResponse(id, opts.bodyBytes, received);
      if (r.error === null) {
        if (opts.proxyAddress !== undefined && r.peer === opts.proxyAddress) proxied++;
        else direct++;
        return finish("ok");
      }
      // A FIN before the whole answer: bytes were lost, though the end was orderly.
      if (r.error === "no header" || r.error.startsWith("short")) return finish("truncated");
      if (wrongSamples.length < 5) wrongSamples.push(`${id}: ${r.error}`);
      finish("wrong");
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      const code = err.code ?? "unknown";
      if (code === "ECONNRESET" || code === "EPIPE") finish("reset");
      else if (code === "ECONNREFUSED") finish("refused");
      else finish(`error:${code}`);
    });
  });
}

function summary(): object {
  return { started, connected, ended, inFlight, maxOpen, outcomes, proxied, direct, wrongSamples, timeoutSamples, ms: Date.now() - t0 };
}

async function burst(): Promise<void> {
  const count = opts.count ?? 1000;
  const pending = opts.pending ?? 256;
  let handshaking = 0;
  let allConnectedMs: number | null = null;
  const all: Promise<void>[] = [];
  await new Promise<void>((resolveAll) => {
    const more = (): void => {
      while (handshaking < pending && started < count) {
        handshaking++;
        let counted = false;
        const settle = (): void => {
          if (counted) return;
          counted = true;
          handshaking--;
          if (connected === count && allConnectedMs === null) allConnectedMs = Date.now() - t0;
          setImmediate(more);
        };
        all.push(connectOnce(settle).then(settle));
      }
      if (started === count) resolveAll();
    };
    more();
  });
  await Promise.all(all);
  out({ event: "done", ...summary(), allConnectedMs });
}

async function rate(): Promise<void> {
  const perSecond = opts.rate ?? 100;
  const maxInFlight = opts.maxInFlight ?? 2000;
  const durationMs = opts.durationMs ?? 0;
  let stopping = false;
  let skipped = 0;
  const running = new Set<Promise<void>>();
  readline.createInterface({ input: process.stdin }).on("line", (line) => {
    if (line.trim() === "stop") stopping = true;
  });
  const progress = setInterval(() => out({ event: "progress", ...summary(), skipped }), 1000);
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const elapsed = Date.now() - t0;
      if (stopping || (durationMs > 0 && elapsed >= durationMs)) {
        clearInterval(tick);
        resolve();
        return;
      }
      const due = Math.floor((elapsed * perSecond) / 1000) - started - skipped;
      for (let i = 0; i < due; i++) {
        if (inFlight >= maxInFlight) {
          skipped++;
          continue;
        }
        const p = connectOnce(() => undefined);
        running.add(p);
        void p.then(() => running.delete(p));
      }
    }, 10);
  });
  await Promise.all([...running]);
  clearInterval(progress);
  out({ event: "done", ...summary(), skipped });
}

(opts.mode === "burst" ? burst() : rate())
  .then(() => process.exit(0))
  .catch((err: Error) => {
    out({ event: "fatal", message: err.stack ?? String(err) });
    process.exit(1);
  });

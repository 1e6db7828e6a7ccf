/**
 * Short-connection load for bench/flow.bench.ts, run as separate processes so the load
 * does not share an event loop with the capture being measured.
 *   node flow-load.js server             → prints "port <n>", echoes one byte, closes
 *   node flow-load.js client <port> <concurrency> <ms> <max>
 *                                        → connect, 1 byte, echo, close, repeated; prints {"connections":n,"ms":t}
 */
import net from "node:net";

function server(): void {
  const srv = net.createServer((s) => {
    s.on("error", () => undefined);
    s.once("data", (d) => s.end(d));
  });
  srv.listen(0, "127.0.0.1", () => process.stdout.write(`port ${(srv.address() as net.AddressInfo).port}\n`));
  process.on("SIGTERM", () => process.exit(0));
}

function client(port: number, concurrency: number, ms: number, max: number): void {
  const started = Date.now();
  const deadline = started + ms;
  let done = 0;
  let active = 0;
  let errors = 0;
  const finish = (): void => {
    if (active > 0) return;
    process.stdout.write(`${JSON.stringify({ connections: done, errors, ms: Date.now() - started })}\n`);
    process.exit(0);
  };
  const one = (): void => {
    if (Date.now() >= deadline || done + active >= max) {
      finish();
      return;
    }
    active++;
    const s = net.connect(port, "127.0.0.1", () => s.write("x"));
    s.once("data", () => s.end());
    s.on("error", () => errors++);
    s.once("close", () => {
      active--;
      done++;
      one();
    });
  };
  for (let i = 0; i < concurrency; i++) one();
}

const [role, ...args] = process.argv.slice(2);
if (role === "server") server();
else if (role === "client") client(Number(args[0]), Number(args[1]), Number(args[2]), Number(args[3]));
else {
  process.stderr.write("usage: flow-load server | client <port> <concurrency> <ms> <max>\n");
  process.exit(2);
}

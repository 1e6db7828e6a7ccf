// Load generator of the listener benchmark, a process of its own so it does not share
// an event loop with the server it measures: `concurrency` clients each loop over
// connect, write 4 bytes, wait for the server to end, for `ms` milliseconds. Prints
// one JSON line: completed connections and failures.
import net from "node:net";

const [host, portText, msText, concurrencyText] = process.argv.slice(2);
const port = Number(portText);
const until = Date.now() + Number(msText);
const PING = Buffer.from("ping");
let completed = 0;
let failed = 0;

function one(): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: host!, port });
    s.setNoDelay(true);
    s.on("connect", () => s.write(PING));
    s.on("data", () => undefined);
    s.on("error", () => undefined);
    s.on("close", (hadError) => {
      if (hadError) failed++;
      else completed++;
      resolve();
    });
  });
}

async function worker(): Promise<void> {
  while (Date.now() < until) await one();
}

void Promise.all(Array.from({ length: Number(concurrencyText) }, worker)).then(() => {
  process.stdout.write(`${JSON.stringify({ completed, failed })}\n`);
});

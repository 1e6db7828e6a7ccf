// One process of the forward benchmark (run inside the bench namespace): a backend, or a
// proxy in front of one. Prints "ready" once it listens.
//   backend-ok <port>            answers "ok" to the first bytes and ends (connection rate)
//   backend-echo <port>          echoes everything (latency)
//   forward-native|forward-js <port> <upstreamPort>
//                                transparent in (plain) → forwardConnection to 127.0.0.1:upstreamPort
//   node-pipe <port> <upstreamPort>  net.createServer + net.connect + pipe both ways
import net from "node:net";
import { forwardConnection } from "../src/forward";
import { TransparentListener } from "../src/listener/transparent-listener";
import { connectionTable } from "../src/connection-table";

const [kind, portText, upstreamText] = process.argv.slice(2);
const port = Number(portText);
const upstreamPort = Number(upstreamText);

async function main(): Promise<void> {
  if (kind === "backend-ok" || kind === "backend-echo") {
    const server = net.createServer((s) => {
      s.on("error", () => undefined);
      s.setNoDelay(true);
      if (kind === "backend-ok") s.once("data", () => s.end("ok\n"));
      else s.pipe(s);
    });
    server.listen({ port, host: "127.0.0.1", backlog: 4096 }, () => process.stdout.write("ready\n"));
    return;
  }
  if (kind === "node-pipe") {
    const server = net.createServer({ allowHalfOpen: true }, (client) => {
      const upstream = net.connect({ port: upstreamPort, host: "127.0.0.1", allowHalfOpen: true });
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    server.listen({ port, host: "127.0.0.1", backlog: 4096 }, () => process.stdout.write("ready\n"));
    return;
  }
  const pump = kind === "forward-native" ? "native" : "js";
  const listener = new TransparentListener({ port, address: "127.0.0.1", mode: "plain", unclaimedTimeoutMs: 0 }, "bench");
  listener.on("connection", (info) => {
    const claimed = connectionTable().claim(info.id, "bench");
    if (claimed !== undefined) forwardConnection(claimed, { target: { address: "127.0.0.1", port: upstreamPort }, pump });
  });
  await listener.start();
  process.stdout.write("ready\n");
}

void main();

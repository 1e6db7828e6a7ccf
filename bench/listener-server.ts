// One contender of the listener benchmark, run as its own process (inside the bench
// namespace): every contender does the same work per connection — accept, read the first
// bytes, answer "ok", end — and ours adds the original-destination lookup, the connection
// table and a message. Prints "ready" once it listens.
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { ConnectionInfo } from "../src/connection";
import { TransparentListener } from "../src/listener/transparent-listener";
import { acceptedSocketInfo, socketFd } from "../src/native";
import { connectionTable } from "../src/connection-table";
import { waitForPort } from "../test/rigs/wait";
import { consume } from "./harness";

const REPLY = Buffer.from("ok\n");

/** Answers a claimed connection once its first bytes are in. */
function answer(socket: net.Socket, replay: Buffer): void {
  // Resumed either way: the peer's FIN must be read for the socket to close.
  if (replay.length > 0) socket.end(REPLY);
  else socket.once("data", () => socket.end(REPLY));
  socket.resume();
}


async function plain(port: number): Promise<void> {
  const server = net.createServer((socket) => {
    socket.on("error", () => undefined);
    // The same facts a connection message carries, as Node gives them (getpeername and
    // getsockname through libuv), without the original destination.
    consume({ remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, localAddress: socket.localAddress, localPort: socket.localPort });
    socket.once("data", () => socket.end(REPLY));
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
}

/** The plain server with its facts read through the addon, original destination included: what the lookup costs. */
async function plainWithLookup(port: number): Promise<void> {
  let found = 0;
  let timed = false;
  const server = net.createServer((socket) => {
    socket.on("error", () => undefined);
    if (!timed && socket.remotePort !== undefined) {
      // Once, on a live redirected connection: the cost of the call alone, free of the
      // noise that throughput on shared cores carries.
      timed = true;
      const fd = socketFd(socket);
      const perCall = (withDst: boolean): number => {
        for (let i = 0; i < 20_000; i++) acceptedSocketInfo(fd, withDst);
        const n = 200_000;
        const start = process.hrtime.bigint();
        for (let i = 0; i < n; i++) consume(acceptedSocketInfo(fd, withDst));
        return Number(process.hrtime.bigint() - start) / n / 1000;
      };
      const addresses = perCall(false);
      const withDst = perCall(true);
      process.stdout.write(`call-us ${withDst}\nlookup-us ${withDst - addresses}\n`);
    }
    // The same facts as the plain server's, plus the original destination, in one call.
    const facts = acceptedSocketInfo(socketFd(socket), true);
    consume(facts);
    if (facts.originalDst !== undefined) found++;
    socket.once("data", () => socket.end(REPLY));
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  process.on("exit", () => process.stderr.write(`original destinations found: ${found}\n`));
}

async function library(port: number): Promise<void> {
  const listener = new TransparentListener({ port, address: "127.0.0.1", mode: "redirect", sniffBytes: 4, unclaimedTimeoutMs: 5000 }, "bench");
  const table = connectionTable();
  let lookups = 0;
  listener.on("connection", (info: ConnectionInfo) => {
    // The message a node would send: built, not just implied.
    const msg = { _session: { type: "traffic", id: info.id }, payload: info };
    if (msg.payload.originalDst !== undefined) lookups++;
    const claimed = table.claim(msg._session.id, "bench");
    if (claimed !== undefined) answer(claimed.socket, claimed.replay);
  });
  await listener.start();
  process.on("SIGUSR2", () => process.stdout.write(`lookups ${lookups}\n`));
}

/** A node that takes each connection from the table and answers it, as a forward node would. */
const CLAIM_NODE_JS = `module.exports = function (RED) {
  function BenchClaim(config) {
    RED.nodes.createNode(this, config);
    const table = globalThis[Symbol.for("traffic-policy.connection-table")];
    const reply = Buffer.from("ok\\n");
    this.on("input", (msg, send, done) => {
      const c = table.claim(msg._session.id, "bench");
      if (c) {
        if (c.replay.length > 0) c.socket.end(reply);
        else c.socket.once("data", () => c.socket.end(reply));
        c.socket.resume();
      }
      done();
    });
  }
  RED.nodes.registerType("bench claim", BenchClaim);
};
`;

/** A real Node-RED runtime in this process: transparent in → a claiming node. */
async function nodeRed(port: number): Promise<void> {
  const root = path.resolve(__dirname, "..", "..");
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "listener-bench-red-"));
  const nodesDir = path.join(userDir, "bench-nodes");
  fs.mkdirSync(nodesDir);
  fs.writeFileSync(path.join(nodesDir, "bench-claim.js"), CLAIM_NODE_JS);
  fs.writeFileSync(path.join(nodesDir, "bench-claim.html"), `<script type="text/javascript">RED.nodes.registerType("bench claim",{category:"function",defaults:{},inputs:1,outputs:0});</script>\n`);
  const env = require(path.join(root, "scripts", "node-red-env.js")) as { prepareUserDir(dir: string, o: object): void };
  env.prepareUserDir(userDir, {
    port: 0,
    logLevel: "warn",
    flows: [
      { id: "benchtab", type: "tab", label: "bench" },
      { id: "in", z: "benchtab", type: "transparent in", port, address: "127.0.0.1", family: "ipv4", mode: "redirect", sniffBytes: 4, sniffTimeout: 1, unclaimedTimeout: 5, unclaimedAction: "close", proxyProtocol: "off", onClose: "keep", maxConnections: 0, wires: [["claim"]] },
      { id: "claim", z: "benchtab", type: "bench claim", wires: [] },
    ],
  });
  process.on("exit", () => fs.rmSync(userDir, { recursive: true, force: true }));
  const RED = require("node-red") as { init(server: http.Server, settings: object): void; start(): Promise<void> };
  RED.init(http.createServer(), {
    userDir,
    flowFile: "flows.json",
    nodesDir: [nodesDir],
    httpAdminRoot: false,
    httpNodeRoot: false,
    credentialSecret: false,
    telemetry: { enabled: false },
    logging: { console: { level: "warn", metrics: false, audit: false } },
  });
  await RED.start();
  await waitForPort(port, "127.0.0.1", 60_000);
}

async function main(): Promise<void> {
  // The bench ends contenders with SIGTERM: exit normally so 'exit' cleanup runs.
  process.on("SIGTERM", () => process.exit(0));
  const [kind, portText] = process.argv.slice(2);
  const port = Number(portText);
  if (kind === "plain") await plain(port);
  else if (kind === "plain-lookup") await plainWithLookup(port);
  else if (kind === "library") await library(port);
  else if (kind === "node-red") await nodeRed(port);
  else throw new Error(`unknown contender ${kind}`);
  process.stdout.write("ready\n");
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});

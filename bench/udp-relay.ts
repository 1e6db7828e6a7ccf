/**
 * The contender of bench/udp.bench.ts: a UDP `transparent in` (mode plain, so it runs on
 * loopback without rules) whose every session goes to `forward` with a fixed target, as
 * the nodes do it, in a process of its own. argv: listen port, target port.
 */
import { forwardUdpSession } from "../src/forward/udp";
import { UdpListener } from "../src/listener/udp-listener";
import { udpSessions } from "../src/udp-table";

const [port, target] = process.argv.slice(2).map(Number);
const listener = new UdpListener({ port: port!, address: "127.0.0.1", mode: "plain", family: "ipv4", udpIdleTimeoutMs: 10_000 }, "bench");
listener.on("connection", (info) => {
  const session = udpSessions().claim(info.id, "bench");
  if (session !== undefined) void forwardUdpSession(session, { target: { address: "127.0.0.1", port: target! } }).done;
});
void listener.start().then(() => console.log(JSON.stringify({ up: true })));

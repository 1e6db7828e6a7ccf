// One TCP client connection, run by tests inside a network namespace
// (`ip netns exec c node tcp-client.js '{"host":…,"port":…}'`). Sends `send`, reads until
// the peer ends, prints one JSON line: local and remote address, and what came back.
"use strict";
const net = require("node:net");

const opts = JSON.parse(process.argv[2] || "{}");
const socket = net.connect({ host: opts.host, port: opts.port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
let data = "";
const timer = setTimeout(() => finish("timeout"), opts.timeoutMs || 5000);
function finish(error) {
  clearTimeout(timer);
  process.stdout.write(`${JSON.stringify({ error, local: { address: socket.localAddress, port: socket.localPort }, response: data })}\n`);
  socket.destroy();
  process.exit(0);
}
socket.on("connect", () => {
  if (opts.send) socket.write(Buffer.from(opts.send, opts.encoding || "utf8"));
  if (opts.end) socket.end();
});
socket.on("data", (chunk) => (data += chunk.toString()));
socket.on("end", () => finish(null));
socket.on("error", (err) => finish(err.code || err.message));

#!/usr/bin/env node
// Recaptures the classify test vectors: runs real client programs against a loopback
// server that records the first bytes each one sends (and how they arrived, segment by
// segment), then writes test/fixtures/classify/<name>.json with the exact command.
//
//   node scripts/capture-classify-vectors.js            # every vector whose client is installed
//   node scripts/capture-classify-vectors.js curl-http1 # only the named ones
//
// Afterwards the example flow's inject nodes get the new bytes of the vectors they name.
//
// The server never answers, so each client sends only what it sends first; the
// recording ends after a quiet spell, then the client is stopped. test/e2e runs the same
// clients live through record() and checks they still classify as recorded.
"use strict";
const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const dgram = require("node:dgram");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { findCommand } = require("./system-deps");

const root = path.resolve(__dirname, "..");
const outDir = path.join(root, "test", "fixtures", "classify");
const QUIET_MS = 600;
const SERVER_FIRST_MS = 1500;
const MAX_BYTES = 65536;

const resolve = (port) => ["--resolve", `example.test:${port}:127.0.0.1`];
const sslPort = (port) => `host=127.0.0.1 port=${port} user=alice dbname=shop application_name=classify-vectors connect_timeout=3`;

/**
 * Each vector: the client program, its argv (PORT is the recording server's port), what
 * the sniffers must say, and an optional reply the server sends on the first bytes.
 */
const VECTORS = [
  { name: "curl-http1", program: "curl", args: (p) => ["-s", "-m", "3", ...resolve(p), `http://example.test:${p}/api/v1/items?limit=5`], expect: "http1" },
  { name: "curl-http1-connect", program: "curl", args: (p) => ["-s", "-m", "3", "-p", "-x", `http://127.0.0.1:${p}`, "http://upstream.example:8080/"], expect: "http1" },
  { name: "curl-h2-prior-knowledge", program: "curl", args: (p) => ["-s", "-m", "3", "--http2-prior-knowledge", ...resolve(p), `http://example.test:${p}/h2/status`], expect: "http2" },
  {
    name: "curl-grpc",
    program: "curl",
    args: (p) => ["-s", "-m", "3", "--http2-prior-knowledge", ...resolve(p), "-H", "content-type: application/grpc", "-H", "te: trailers", "--data-binary", "@-", `http://example.test:${p}/helloworld.Greeter/SayHello`],
    stdin: Buffer.from([0, 0, 0, 0, 7, 0x0a, 0x05, 0x77, 0x6f, 0x72, 0x6c, 0x64]),
    expect: "grpc",
  },
  { name: "curl-socks5", program: "curl", args: (p) => ["-s", "-m", "3", "--socks5-hostname", `127.0.0.1:${p}`, "http://example.test/"], expect: "socks5" },
  { name: "curl-socks4a", program: "curl", args: (p) => ["-s", "-m", "3", "--socks4a", `127.0.0.1:${p}`, "http://example.test:8080/"], expect: "socks4" },
  { name: "curl-proxy-v1", program: "curl", args: (p) => ["-s", "-m", "3", "--haproxy-protocol", `http://127.0.0.1:${p}/`], expect: "proxy" },
  { name: "curl-https", program: "curl", args: (p) => ["-s", "-m", "3", "-k", ...resolve(p), `https://example.test:${p}/`], expect: "tls" },
  {
    name: "openssl-s_client",
    program: "openssl",
    args: (p) => ["s_client", "-connect", `127.0.0.1:${p}`, "-servername", "api.example.test", "-alpn", "h2,http/1.1"],
    stdin: Buffer.alloc(0),
    expect: "tls",
  },
  {
    name: "openssl-s_client-tls12",
    program: "openssl",
    args: (p) => ["s_client", "-connect", `127.0.0.1:${p}`, "-servername", "legacy.example.test", "-tls1_2"],
    stdin: Buffer.alloc(0),
    expect: "tls",
  },
  {
    // Small records: the ClientHello spans several TLS records.
    name: "openssl-s_client-fragmented",
    program: "openssl",
    args: (p) => [
      "s_client", "-connect", `127.0.0.1:${p}`, "-servername", "fragments.example.test", "-max_send_frag", "512",
      "-alpn", Array.from({ length: 12 }, (_, i) => `protocol-number-${i}-with-a-long-name-to-grow-the-hello`).join(","),
    ],
    stdin: Buffer.alloc(0),
    expect: "tls",
  },
  {
    name: "chromium",
    program: "chromium",
    tmpDir: true,
    args: (p, dir) => [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", `--user-data-dir=${dir}`,
      "--host-resolver-rules=MAP * 127.0.0.1", `https://www.example.test:${p}/`,
    ],
    expect: "tls",
    quietMs: 1500,
  },
  { name: "mosquitto_pub-v311", program: "mosquitto_pub", args: (p) => ["-h", "127.0.0.1", "-p", String(p), "-V", "mqttv311", "-i", "sensor-17", "-t", "t/1", "-m", "hi"], expect: "mqtt" },
  { name: "mosquitto_pub-v5", program: "mosquitto_pub", args: (p) => ["-h", "127.0.0.1", "-p", String(p), "-V", "mqttv5", "-i", "sensor-5", "-t", "t/1", "-m", "hi"], expect: "mqtt" },
  { name: "mosquitto_pub-v31", program: "mosquitto_pub", args: (p) => ["-h", "127.0.0.1", "-p", String(p), "-V", "mqttv31", "-i", "old-sensor", "-t", "t/1", "-m", "hi"], expect: "mqtt" },
  { name: "redis-cli", program: "redis-cli", args: (p) => ["-h", "127.0.0.1", "-p", String(p), "PING"], expect: "redis" },
  { name: "psql-startup", program: "psql", args: (p) => [`${sslPort(p)} sslmode=disable gssencmode=disable`, "-c", "select 1"], expect: "postgresql" },
  { name: "psql-sslrequest", program: "psql", args: (p) => [`${sslPort(p)} sslmode=require gssencmode=disable`, "-c", "select 1"], expect: "postgresql" },
  {
    name: "ssh",
    program: "ssh",
    args: (p) => ["-p", String(p), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3", "alice@127.0.0.1"],
    expect: "ssh",
  },
  { name: "kcat-metadata", program: "kcat", args: (p) => ["-b", `127.0.0.1:${p}`, "-L", "-m", "3"], expect: "kafka" },
  { name: "dig-tcp", program: "dig", args: (p) => ["+tcp", "+tries=1", "+time=2", "-p", String(p), "@127.0.0.1", "www.example.test", "AAAA"], expect: "dns" },
  // UDP: the recording socket keeps the first client's datagrams (`udp: true`).
  { name: "dig-udp", program: "dig", udp: true, args: (p) => ["+tries=1", "+time=1", "-p", String(p), "@127.0.0.1", "www.example.test", "AAAA"], expect: "dns" },
  {
    // QUIC Initials: chromium forced onto HTTP/3 for the origin, resolved to the socket.
    name: "chromium-quic",
    program: "chromium",
    udp: true,
    tmpDir: true,
    args: (p, dir) => [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", `--user-data-dir=${dir}`, "--enable-quic", "--origin-to-force-quic-on=www.example.com:443",
      `--host-resolver-rules=MAP www.example.com:443 127.0.0.1:${p}`, "https://www.example.com/",
    ],
    expect: "quic",
    quietMs: 1500,
  },
  // Server-first: these clients wait for the server's greeting and send nothing.
  { name: "curl-smtp", program: "curl", args: (p) => ["-s", "-m", "3", `smtp://127.0.0.1:${p}/`], expect: "server-first", serverFirst: true },
  { name: "curl-ftp", program: "curl", args: (p) => ["-s", "-m", "3", `ftp://127.0.0.1:${p}/`], expect: "server-first", serverFirst: true },
];

function versionOf(program) {
  const tries = { openssl: ["version"], ssh: ["-V"], kcat: ["-V"], chromium: ["--version"], mosquitto_pub: ["--help"], dig: ["-v"] };
  try {
    const out = execFileSync(program, tries[program] ?? ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 });
    return out.split("\n")[0].trim();
  } catch (err) {
    const text = `${err.stdout ?? ""}${err.stderr ?? ""}`.split("\n").find((l) => l.trim() !== "");
    return (text ?? "unknown").trim();
  }
}

/**
 * Records the first connection that brings bytes (or none, for server-first clients);
 * for a UDP vector, the datagrams of the first client address, each one a segment.
 */
function record(vector) {
  return new Promise((resolveRecord, reject) => {
    const segments = [];
    let total = 0;
    let child = null;
    let quiet = null;
    let done = false;
    const sockets = new Set();
    const take = (chunk, socket) => {
      segments.push({ socket, chunk });
      total += chunk.length;
      if (total >= MAX_BYTES) finish();
      clearTimeout(quiet);
      quiet = setTimeout(finish, vector.quietMs ?? QUIET_MS);
    };
    let from = null;
    const server = vector.udp
      ? dgram.createSocket("udp4", (msg, rinfo) => {
          const peer = `${rinfo.address}:${rinfo.port}`;
          if (done || (from !== null && peer !== from)) return;
          from = peer;
          take(msg, null);
        })
      : net.createServer((socket) => {
          sockets.add(socket);
          socket.on("error", () => {});
          socket.on("close", () => sockets.delete(socket));
          socket.on("data", (chunk) => {
            if (done || (segments.length > 0 && socket !== segments[0].socket)) return;
            take(chunk, socket);
          });
        });
    const tmpDir = vector.tmpDir ? fs.mkdtempSync(path.join(os.tmpdir(), "classify-client-")) : null;
    const giveUp = setTimeout(() => finish(), vector.serverFirst ? SERVER_FIRST_MS : 15_000);
    function finish() {
      if (done) return;
      done = true;
      clearTimeout(quiet);
      clearTimeout(giveUp);
      for (const s of sockets) s.destroy();
      server.close();
      if (child && child.exitCode === null) {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          child.kill("SIGKILL");
        }
      }
      const result = segments.map((s) => s.chunk);
      if (tmpDir === null) resolveRecord(result);
      else {
        // Give the killed browser a moment to let go of its profile before removing it.
        setTimeout(() => {
          fs.rmSync(tmpDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
          resolveRecord(result);
        }, 200);
      }
    }
    const listening = () => {
      const port = server.address().port;
      const args = vector.args(port, tmpDir);
      vector.commandLine = [vector.program, ...args.map((a) => String(a).replace(String(port), "PORT").replace(String(tmpDir), "$(mktemp -d)"))]
        .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`))
        .join(" ");
      child = spawn(vector.program, args, { stdio: ["pipe", "ignore", "ignore"], detached: true });
      child.on("error", (err) => {
        finish();
        reject(err);
      });
      if (vector.stdin) child.stdin.end(vector.stdin);
    };
    if (vector.udp) server.bind(0, "127.0.0.1", listening);
    else server.listen(0, "127.0.0.1", listening);
  });
}

// The example flow's inject nodes carry captured bytes; each names its vector in `topic`.
const EXAMPLE = path.join(root, "examples", "classify-tls-by-sni.json");

/** Copies the vectors' bytes into the example flow's inject nodes. */
function refreshExample() {
  const flow = JSON.parse(fs.readFileSync(EXAMPLE, "utf8"));
  for (const node of flow) {
    if (node.type !== "inject" || !node.topic) continue;
    const fixture = JSON.parse(fs.readFileSync(path.join(outDir, `${node.topic}.json`), "utf8"));
    node.payload = JSON.stringify([...Buffer.from(fixture.segments.join(""), "hex")]);
    node.payloadType = "bin";
  }
  fs.writeFileSync(EXAMPLE, `${JSON.stringify(flow, null, 2)}\n`);
  process.stdout.write(`ok   ${path.relative(root, EXAMPLE)} refreshed\n`);
}

async function main() {
  const only = process.argv.slice(2);
  fs.mkdirSync(outDir, { recursive: true });
  for (const vector of VECTORS) {
    if (only.length > 0 && !only.includes(vector.name)) continue;
    if (findCommand(vector.program) === null) {
      process.stdout.write(`skip ${vector.name}: ${vector.program} is not installed\n`);
      continue;
    }
    const segments = await record(vector);
    const bytes = Buffer.concat(segments);
    if (bytes.length === 0 && !vector.serverFirst) {
      process.stdout.write(`FAIL ${vector.name}: the client sent nothing\n`);
      process.exitCode = 1;
      continue;
    }
    const fixture = {
      name: vector.name,
      expect: vector.expect,
      command: vector.commandLine,
      client: versionOf(vector.program),
      ...(vector.udp ? { transport: "udp" } : {}),
      note: vector.udp
        ? "Captured on loopback by scripts/capture-classify-vectors.js; PORT was the recording socket's port. segments are the client's datagrams in arrival order."
        : "Captured on loopback by scripts/capture-classify-vectors.js; PORT was the recording server's port. segments are the reads as they arrived.",
      segments: segments.map((s) => s.toString("hex")),
    };
    fs.writeFileSync(path.join(outDir, `${vector.name}.json`), `${JSON.stringify(fixture, null, 2)}\n`);
    process.stdout.write(`ok   ${vector.name}: ${bytes.length} bytes in ${segments.length} segment(s)\n`);
  }
  refreshExample();
}

module.exports = { VECTORS, record };

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n`);
    process.exit(1);
  });
}

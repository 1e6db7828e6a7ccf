#!/usr/bin/env node
// Extracts the JA4 reference vectors published with the JA4 specification (the FoxIO-LLC/ja4
// repository: its test pcaps and the expected `ja4` of every client in its Rust snapshot
// files) into test/fixtures/ja4/foxio.json: per client, the bytes it sent first (TCP
// payload in sequence order up to the end of the ClientHello, or its first UDP datagrams
// for QUIC) with the expected JA4, and the JA3 that tshark computes for the same hello.
//
//   node scripts/extract-ja4-vectors.js <path to a FoxIO-LLC/ja4 checkout> [commit]
//
// tshark (Debian `tshark`) splits the captures into packets, so no capture parser of ours
// stands between the published pcaps and the vectors.
"use strict";
const { execFileSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const out = path.join(root, "test", "fixtures", "ja4", "foxio.json");
const MAX_DATAGRAMS = 6;

function tshark(pcap, filter, fields) {
  const args = ["-r", pcap, "-Y", filter, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=l"];
  for (const f of fields) args.push("-e", f);
  const text = execFileSync("tshark", args, { encoding: "utf8", maxBuffer: 1 << 28, stdio: ["ignore", "pipe", "ignore"] });
  return text.split("\n").filter((l) => l !== "").map((l) => {
    const cols = l.split("\t");
    return Object.fromEntries(fields.map((f, i) => [f, cols[i] ?? ""]));
  });
}

// The Rust snapshot: a YAML list of flat entries; only scalar keys are needed.
function snapshotEntries(text) {
  const entries = [];
  let cur = null;
  for (const line of text.split("\n")) {
    const start = /^- stream: (\d+)/.exec(line);
    if (start) {
      cur = { stream: Number(start[1]) };
      entries.push(cur);
      continue;
    }
    const kv = /^ {2}([a-z0-9_]+): (.+)$/.exec(line);
    if (cur && kv) cur[kv[1]] = kv[2];
  }
  return entries.filter((e) => e.ja4 !== undefined);
}

// TLS records from the start of the stream until the first handshake message is complete.
function helloLength(bytes) {
  let at = 0;
  let have = 0;
  let need = -1;
  const hs = [];
  while (at + 5 <= bytes.length) {
    const len = bytes.readUInt16BE(at + 3);
    const body = bytes.subarray(at + 5, Math.min(at + 5 + len, bytes.length));
    hs.push(body);
    have += body.length;
    at += 5 + len;
    if (need < 0 && have >= 4) {
      const h = Buffer.concat(hs);
      need = 4 + h.readUIntBE(1, 3);
    }
    if (need >= 0 && have >= need) return Math.min(at, bytes.length);
  }
  return bytes.length;
}

function main() {
  const checkout = process.argv[2];
  if (!checkout) throw new Error("usage: extract-ja4-vectors.js <FoxIO-LLC/ja4 checkout>");
  const snapDir = path.join(checkout, "rust", "ja4", "src", "snapshots");
  const commit = process.argv[3] ?? (() => {
    try {
      return execFileSync("git", ["-C", checkout, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
    } catch {
      return "unknown";
    }
  })();
  const vectors = [];
  const seen = new Set();
  for (const snap of fs.readdirSync(snapDir).sort()) {
    const pcapName = /^ja4__insta@(.+)\.snap$/.exec(snap)?.[1];
    if (!pcapName) continue;
    const pcap = path.join(checkout, "pcap", pcapName);
    if (!fs.existsSync(pcap)) continue;
    const entries = snapshotEntries(fs.readFileSync(path.join(snapDir, snap), "utf8"));
    if (entries.length === 0) continue;
    const packets = tshark(pcap, "tcp.len > 0 or udp", [
      "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.seq_raw", "tcp.payload", "udp.payload",
    ]);
    const hellos = tshark(pcap, "tls.handshake.type == 1", [
      "ip.src", "ipv6.src", "tcp.srcport", "udp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport", "udp.dstport", "tls.handshake.ja3", "tls.handshake.ja3_full",
    ]);
    for (const e of entries) {
      const udp = e.transport === "udp";
      const from = (p) =>
        (p["ip.src"] || p["ipv6.src"]) === e.src &&
        (p["ip.dst"] || p["ipv6.dst"]) === e.dst &&
        p[udp ? "udp.srcport" : "tcp.srcport"] === e.src_port &&
        p[udp ? "udp.dstport" : "tcp.dstport"] === e.dst_port;
      let segments;
      if (udp) {
        segments = packets.filter((p) => from(p) && p["udp.payload"] !== "").slice(0, MAX_DATAGRAMS).map((p) => p["udp.payload"]);
      } else {
        // Sequence order, each byte once (retransmissions and overlaps dropped).
        const bySeq = packets
          .filter((p) => from(p) && p["tcp.payload"] !== "")
          .map((p) => ({ seq: Number(p["tcp.seq_raw"]), bytes: Buffer.from(p["tcp.payload"], "hex") }))
          .sort((a, b) => a.seq - b.seq);
        const parts = [];
        let next = bySeq.length > 0 ? bySeq[0].seq : 0;
        for (const s of bySeq) {
          if (s.seq + s.bytes.length <= next) continue;
          if (s.seq > next) break; // a gap: what follows was not captured
          parts.push(s.bytes.subarray(next - s.seq));
          next = s.seq + s.bytes.length;
        }
        // Behind an HTTP CONNECT or a SOCKS handshake the ClientHello starts later: keep
        // only the bytes from its first record on.
        const all = Buffer.concat(parts);
        let from0 = 0;
        while (from0 + 6 <= all.length && !(all[from0] === 0x16 && all[from0 + 1] === 3 && all[from0 + 2] <= 4 && all[from0 + 5] === 1)) from0++;
        if (from0 + 6 > all.length) from0 = 0;
        const cut = from0 + helloLength(all.subarray(from0));
        segments = [];
        let taken = 0;
        for (const p of parts) {
          const lo = Math.max(0, from0 - taken);
          const hi = Math.min(p.length, cut - taken);
          if (hi > lo) segments.push(p.subarray(lo, hi).toString("hex"));
          taken += p.length;
        }
      }
      if (segments.length === 0) continue;
      const key = crypto.createHash("sha256").update(e.transport + segments.join(",")).digest("hex");
      if (seen.has(key)) continue;
      seen.add(key);
      const h = hellos.find((p) => (p["ip.src"] || p["ipv6.src"]) === e.src && p[udp ? "udp.srcport" : "tcp.srcport"] === e.src_port && p[udp ? "udp.dstport" : "tcp.dstport"] === e.dst_port);
      vectors.push({
        pcap: pcapName,
        stream: e.stream,
        transport: e.transport,
        client: `${e.src}:${e.src_port}`,
        server: `${e.dst}:${e.dst_port}`,
        ja4: e.ja4,
        ...(h && h["tls.handshake.ja3"] ? { ja3: h["tls.handshake.ja3_full"], ja3Hash: h["tls.handshake.ja3"] } : {}),
        segments,
      });
    }
  }
  const tsharkVersion = execFileSync("tshark", ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).split("\n")[0];
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const doc = {
    source: `https://github.com/FoxIO-LLC/ja4 at ${commit}: pcap/*, expected ja4 from rust/ja4/src/snapshots/*.snap`,
    ja3: `JA3 as computed by ${tsharkVersion} for the same ClientHello (tls.handshake.ja3_full, tls.handshake.ja3)`,
    note: "segments: TCP payload in sequence order up to the end of the ClientHello, or the client's first UDP datagrams (QUIC); identical clients kept once",
    vectors,
  };
  fs.writeFileSync(out, JSON.stringify(doc, null, 1) + "\n");
  console.log(`${vectors.length} vectors → ${path.relative(root, out)}`);
}

main();

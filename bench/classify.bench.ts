import fs from "node:fs";
import path from "node:path";
import { classifyBytes, classifyDatagrams, quicInitialKeys, runSniffers, sniffersWithFingerprints } from "../src/classify";
import { helloKeyImplementation } from "../src/classify/fingerprint";
import { classifyNodeRates, MESSAGES as NODE_MESSAGES, ROUNDS as NODE_ROUNDS } from "./classify-node";
import { helloExtensions, withExtensions } from "../test/rigs/client-hello";
import { BenchReport, BenchRow, compareOps, ratioRow } from "./harness";

// The bars: classifications per second on one core.
const BAR = 1_000_000;
const QUIC_BAR = 200_000;
const DNS_UDP_BAR = 2_000_000;

// dist/bench → the checkout root; the fixtures are not part of the published package.
const FIXTURES = path.resolve(__dirname, "..", "..", "test", "fixtures");

/** A recorded vector's segments (test/fixtures/classify, captured from real clients): reads over TCP, datagrams over UDP. */
function segments(name: string): Buffer[] {
  const raw = JSON.parse(fs.readFileSync(path.join(FIXTURES, "classify", `${name}.json`), "utf8")) as { segments: string[] };
  return raw.segments.map((h) => Buffer.from(h, "hex"));
}

/** A recorded vector's bytes. */
function fixture(name: string): Buffer {
  return Buffer.concat(segments(name));
}

function row(caseName: string, ops: number, bar?: number, anchor?: { name: string; ops: number }): BenchRow {
  return {
    case: caseName,
    unit: "classifications/s",
    ours: ops,
    ...(anchor === undefined ? {} : { anchorName: anchor.name, anchor: anchor.ops, ratio: ops / anchor.ops }),
    ...(bar === undefined ? {} : { bar: `≥ ${bar / 1e6}M/s`, pass: ops >= bar }),
  };
}

interface LlhttpParser {
  initialize(type: number, resource: object): void;
  execute(data: Buffer): number | Error;
  [callback: number]: (...args: unknown[]) => unknown;
}
interface LlhttpModule {
  HTTPParser: { new (): LlhttpParser; REQUEST: number; kOnMessageBegin: number; kOnHeaders: number; kOnHeadersComplete: number; kOnBody: number; kOnMessageComplete: number; kOnExecute: number };
}

/**
 * The anchor for HTTP/1: Node's own request parser (llhttp, through the binding the http
 * module uses), reading the same request head into method, URL and headers.
 */
function llhttpParse(): (bytes: Buffer) => unknown {
  const { HTTPParser } = require("_http_common") as LlhttpModule;
  const parser = new HTTPParser();
  let head: unknown = null;
  parser[HTTPParser.kOnMessageBegin] = () => 0;
  parser[HTTPParser.kOnHeaders] = () => 0;
  parser[HTTPParser.kOnHeadersComplete] = (...args: unknown[]) => {
    head = args;
    return 0;
  };
  parser[HTTPParser.kOnBody] = () => 0;
  parser[HTTPParser.kOnMessageComplete] = () => 0;
  parser[HTTPParser.kOnExecute] = () => 0;
  return (bytes) => {
    head = null;
    parser.initialize(HTTPParser.REQUEST, {});
    parser.execute(bytes);
    return head;
  };
}

/** Copies of a one-record ClientHello with its extensions in `count` different orders. */
function extensionOrders(hello: Buffer, count: number): Buffer[] {
  const parts = helloExtensions(hello);
  const out: Buffer[] = [];
  let seed = 12345;
  for (let i = 0; i < count; i++) {
    const order = parts.extensions.slice();
    for (let j = order.length - 1; j > 0; j--) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const r = seed % (j + 1);
      [order[j], order[r]] = [order[r]!, order[j]!];
    }
    out.push(withExtensions(parts, order));
  }
  return out;
}

export async function run(): Promise<BenchReport> {
  const cases: Array<{ name: string; bytes: Buffer; expect: string; bar?: number }> = [
    { name: "TLS ClientHello, curl (517 B, 1 segment), with JA4 + JA3", bytes: fixture("curl-https"), expect: "tls", bar: BAR },
    { name: "TLS ClientHello, chromium with PQ key share, with JA4 + JA3", bytes: fixture("chromium"), expect: "tls", bar: BAR },
    { name: "HTTP/1 request, curl (102 B)", bytes: fixture("curl-http1"), expect: "http1", bar: BAR },
    { name: "HTTP/2 preface + gRPC HEADERS, curl", bytes: fixture("curl-grpc"), expect: "grpc" },
    { name: "SSH banner", bytes: fixture("ssh"), expect: "ssh" },
    { name: "DNS over TCP (last sniffer asked)", bytes: fixture("dig-tcp"), expect: "dns" },
  ];
  const rows: BenchRow[] = [];
  for (const c of cases) {
    // Sanity: the answer must be right before its speed means anything.
    const got = classifyBytes(c.bytes).protocol;
    if (got !== c.expect) throw new Error(`${c.name}: classified as ${got}`);
    if (c.expect === "http1") {
      const parse = llhttpParse();
      if (parse(c.bytes) === null) throw new Error("llhttp did not parse the request head");
      const r = compareOps({ ours: () => runSniffers(c.bytes, false), llhttp: () => parse(c.bytes) });
      rows.push(row(c.name, r["ours"]!, c.bar, { name: "llhttp", ops: r["llhttp"]! }));
      continue;
    }
    const r = compareOps({ ours: () => runSniffers(c.bytes, false) });
    rows.push(row(c.name, r["ours"]!, c.bar));
  }
  // Fingerprints: the same ClientHello classified without them (the classify node's
  // default, *only what the rules use*, with no fingerprint rule), with JA4 (rules that
  // match JA4s only) and with JA4 and JA3 (the library's default, and the node's *in
  // fields for every ClientHello*), in alternating rounds. Chromium shuffles its extension order per
  // connection: JA4 stays, JA3 changes, so its JA3 is new to the cache every time.
  const helloCases: Array<{ name: string; hellos: Buffer[] }> = [
    { name: "curl (repeat client)", hellos: [fixture("curl-https")] },
    { name: "chromium (repeat client)", hellos: [fixture("chromium")] },
    { name: "chromium, new extension order each time", hellos: extensionOrders(fixture("chromium"), 6000) },
  ];
  const withNone = sniffersWithFingerprints("none");
  const withJa4 = sniffersWithFingerprints("ja4");
  const withAll = sniffersWithFingerprints("all");
  for (const c of helloCases) {
    const first = runSniffers(c.hellos[0]!, true, withAll)!;
    if (first.protocol !== "tls" || first.fields.ja4 === undefined || first.fields.ja3Hash === undefined) throw new Error(`${c.name}: no JA4/JA3`);
    if (runSniffers(c.hellos[0]!, true, withNone)!.fields.ja4 !== undefined) throw new Error(`${c.name}: fingerprints computed when none were asked for`);
    let k = 0;
    const next = (): Buffer => c.hellos[k++ % c.hellos.length]!;
    const r = compareOps({
      without: () => runSniffers(next(), true, withNone),
      ja4: () => runSniffers(next(), true, withJa4),
      all: () => runSniffers(next(), true, withAll),
    });
    rows.push(row(`ClientHello, ${c.name}: without fingerprints`, r["without"]!));
    rows.push(ratioRow(`ClientHello, ${c.name}: with JA4`, "classifications/s", r["ja4"]!, "without fingerprints", r["without"]!));
    rows.push(ratioRow(`ClientHello, ${c.name}: with JA4 + JA3`, "classifications/s", r["all"]!, "without fingerprints", r["without"]!));
  }
  // The same in a flow, where the bar is judged: the classify node in Node-RED, host rules
  // without fingerprints (its default), with JA4 + JA3 in every message's fields, and with
  // a JA4 rule first. The ratio is the median of each round's against the same round's
  // rate without fingerprints.
  const nodeCases = ["curl-https", "chromium"].map((name) => ({ name, hello: fixture(name) }));
  const nodeRates = await classifyNodeRates(nodeCases.map((c) => ({ hello: c.hello, ja4Prefix: classifyBytes(c.hello).fields.ja4!.slice(0, 11) })));
  nodeCases.forEach((c, i) => {
    const r = nodeRates[i]!;
    const base = `classify node in Node-RED, ${c.name} ClientHello`;
    rows.push({ case: `${base}: host rules, no fingerprints`, unit: "messages/s", ours: r.rate.without });
    for (const [way, label] of [
      ["fields", "host rules, JA4 + JA3 in the fields"],
      ["ja4", "a JA4 rule first"],
    ] as const) {
      const q = r.ratio[way];
      rows.push({
        case: `${base}: ${label} (rounds ${q.min.toFixed(2)}–${q.max.toFixed(2)}×)`,
        unit: "messages/s",
        ours: r.rate[way],
        anchorName: "no fingerprints",
        anchor: r.rate.without,
        ratio: q.median,
        bar: "≥ 0.9× no fingerprints",
        pass: q.median >= 0.9,
      });
    }
  });
  // UDP: the datagram classifier over a session's first client datagrams.
  const rfcInitial = Buffer.from(fs.readFileSync(path.join(FIXTURES, "quic", "rfc9001-a2-client-initial.hex"), "utf8").replace(/\s/g, ""), "hex");
  const chromiumQuic = segments("chromium-quic");
  const chromiumInitials = chromiumQuic.findIndex((_d, i) => classifyDatagrams(chromiumQuic.slice(0, i + 1), { maxDatagrams: 8 }).confidence === 1) + 1;
  const dnsUdp = segments("dig-udp");
  const udpCases: Array<{ name: string; datagrams: Buffer[]; expect: string; bar?: number }> = [
    { name: "QUIC Initial, RFC 9001 A.2 (1200 B, 1 datagram)", datagrams: [rfcInitial], expect: "quic", bar: QUIC_BAR },
    { name: `QUIC Initials, chromium PQ ClientHello (${chromiumInitials} datagrams per session)`, datagrams: chromiumQuic.slice(0, chromiumInitials), expect: "quic" },
    { name: "DNS query over UDP, dig", datagrams: dnsUdp, expect: "dns", bar: DNS_UDP_BAR },
  ];
  for (const c of udpCases) {
    const got = classifyDatagrams(c.datagrams, { maxDatagrams: 8 });
    if (got.protocol !== c.expect || got.confidence < 0.9) throw new Error(`${c.name}: classified as ${got.protocol} (${got.confidence})`);
    const r = compareOps({ ours: () => classifyDatagrams(c.datagrams, { maxDatagrams: 8 }) });
    rows.push(row(c.name, r["ours"]!, c.bar));
  }
  // A new connection's first Initial also pays for its keys (cached per DCID after that).
  const dcid = Buffer.from("8394c8f03e515708", "hex");
  let n = 0;
  const keys = compareOps({ ours: () => quicInitialKeys((dcid.writeUInt32BE(n++ >>> 0, 0), dcid), 1) });
  rows.push({ case: "QUIC Initial keys from a new DCID (HKDF-SHA256)", unit: "derivations/s", ours: keys["ours"]! });
  return {
    name: "classify: protocol sniffing of first bytes",
    rows,
    notes: [
      "one core, the whole sniffer chain per call (runSniffers over the bytes, fields extracted), bytes from real clients",
      "the TCP and UDP rows run the library's defaults: every ClientHello (over TCP or in a QUIC Initial) gets JA4, JA3 and the JA3 hash in its fields; the classify node computes them only when a rule matches on them (the fingerprint rows' 'without fingerprints')",
      "llhttp: Node's own HTTP request parser on the same bytes (it reads every header; ours reads the request line, Host, Upgrade, Content-Type)",
      "no TLS anchor runs here: no ClientHello parser is installed to compare with; the bar is absolute",
      `fingerprint rows: the whole sniffer chain over the same ClientHello without fingerprints, with JA4, and with JA4 + JA3 + JA3 hash, alternating rounds. Every hello pays a pass over its ciphers, extensions, signature algorithms, groups and point formats for a 62-bit key (per-process random tables, GREASE as one value), computed by the addon (the ${helloKeyImplementation()} key in this run); a repeat client finds its fingerprints by that key, a new chromium extension order finds its JA4 (the key with the extensions as a set) and pays one JA3 and MD5`,
      "fingerprint rows of the sniffer chain carry no bar: a repeat client's fingerprints still cost one pass over its 45-80 fingerprinted values for the cache key (about 0.09 µs, a third of it the call into the addon) and the lookup, 0.15-0.2 µs in all against 0.3-0.4 µs for the whole chain without them; the bar (fingerprints at ≥ 0.9× the rate without them) is judged where operators classify, in the classify node rows",
      `classify node rows: a real Node-RED (this package installed in a user dir) with three classify nodes: host rules without fingerprints (the node's default), the same with JA4, JA3 and the JA3 hash in the fields of every message, and a JA4 rule before the same host rules; a function node sends the hello ${NODE_MESSAGES.toLocaleString("en-US")} times uncloned into one of them, a counting function node checks that each took the first rule and carried a JA4 (or not) and answers when the last classification arrives; ${NODE_ROUNDS} rounds of the three in turning order after a warm-up, the rate the median round, the ratio the median of each round's against the same round's without fingerprints (least–greatest in brackets). Message passing and events included`,
      "UDP rows: classifyDatagrams over the session's first client datagrams (QUIC: header protection removed, AES-128-GCM decrypted, CRYPTO reassembled, ClientHello parsed); repeated sessions reuse the keys cached for their DCID, the key derivation row is what a new DCID adds",
    ],
  };
}

import fs from "node:fs";
import path from "node:path";
import { classifyBytes, runSniffers } from "../src/classify";
import { BenchReport, BenchRow, compareOps } from "./harness";

// The bar from the issue: classifications per second on one core.
const BAR = 1_000_000;

/** A recorded vector's bytes (test/fixtures/classify, captured from real clients). */
function fixture(name: string): Buffer {
  // dist/bench → the checkout root; the fixtures are not part of the published package.
  const file = path.resolve(__dirname, "..", "..", "test", "fixtures", "classify", `${name}.json`);
  const raw = JSON.parse(fs.readFileSync(file, "utf8")) as { segments: string[] };
  return Buffer.from(raw.segments.join(""), "hex");
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

export async function run(): Promise<BenchReport> {
  const cases: Array<{ name: string; bytes: Buffer; expect: string; bar?: number }> = [
    { name: "TLS ClientHello, curl (517 B, 1 segment)", bytes: fixture("curl-https"), expect: "tls", bar: BAR },
    { name: "TLS ClientHello, chromium with PQ key share", bytes: fixture("chromium"), expect: "tls", bar: BAR },
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
  return {
    name: "classify: protocol sniffing of first bytes",
    rows,
    notes: [
      "one core, the whole sniffer chain per call (runSniffers over the bytes, fields extracted), bytes from real clients",
      "llhttp: Node's own HTTP request parser on the same bytes (it reads every header; ours reads the request line, Host, Upgrade, Content-Type)",
      "no TLS anchor runs here: no ClientHello parser is installed to compare with; the bar is absolute",
    ],
  };
}

// The addon's upstream connect (source preservation, SO_MARK) waits for the handshake
// without taking a libuv pool thread: a Node process in a namespace this file makes dials
// a documentation address black-holed by a peer namespace 16 times while fs and dns.lookup must stay quick.
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IS_ROOT, systemCommand } from "../support/system";
import { inNs, Namespaces } from "../support/netns";

const nft = IS_ROOT ? systemCommand("nft") : { path: null, skip: true };
const ROOT = path.resolve(__dirname, "..", "..");
const BLACKHOLE = "198.51.100.77";

// Runs in the namespace: warms fs and dns up, starts the connects, then times one
// readFile and one lookup while they hang.
const CHILD = `
const fs = require("node:fs");
const dns = require("node:dns");
const { loadNative } = require(${JSON.stringify(path.join(ROOT, "dist", "src", "native"))});
const native = loadNative();
const time = (f) => new Promise((resolve) => { const t = process.hrtime.bigint(); f(() => resolve(Number(process.hrtime.bigint() - t) / 1e6)); });
(async () => {
  await time((done) => fs.readFile("/proc/self/status", done));
  await time((done) => dns.lookup("localhost", done));
  const connects = [];
  for (let i = 0; i < 16; i++) connects.push(native.connectUpstream({ address: ${JSON.stringify(BLACKHOLE)}, port: 9, mark: 7, timeoutMs: 2000 }).then(() => "connected", (e) => e.code));
  await new Promise((r) => setTimeout(r, 100));
  const readFileMs = await time((done) => fs.readFile("/proc/self/status", done));
  const lookupMs = await time((done) => dns.lookup("localhost", done));
  const outcomes = await Promise.all(connects);
  process.stdout.write(JSON.stringify({ readFileMs, lookupMs, outcomes }));
})();
`;

describe.skipIf(!IS_ROOT || nft.skip)("upstream connect and the libuv pool", () => {
  const ns = new Namespaces();
  let name = "";
  beforeAll(() => {
    name = ns.add("cpool");
    const hole = ns.add("chole");
    // The peer namespace drops every IP packet it gets: SYNs routed there never get an answer.
    ns.link(name, "192.0.2.1/24", hole, "192.0.2.2/24", "cph");
    inNs(name, "ip", ["route", "add", "198.51.100.0/24", "via", "192.0.2.2"]);
    inNs(hole, "nft", ["-f", "-"], "table inet hole {\n  chain pre {\n    type filter hook prerouting priority 0; policy drop;\n  }\n}\n");
  });
  afterAll(() => ns.cleanup());

  it("keeps fs.readFile and dns.lookup within 50 ms while 16 connects hang", () => {
    const out = JSON.parse(inNs(name, process.execPath, ["-e", CHILD])) as { readFileMs: number; lookupMs: number; outcomes: string[] };
    expect(out.outcomes).toEqual(Array.from({ length: 16 }, () => "ETIMEDOUT"));
    expect(out.readFileMs).toBeLessThan(50);
    expect(out.lookupMs).toBeLessThan(50);
  }, 20_000);
});

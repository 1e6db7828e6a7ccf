// Managed nft rules in real namespaces: present while the node runs, gone after close,
// and a table left by a crashed run replaced at the next start.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IS_ROOT, systemCommand } from "../support/system";
import path from "node:path";
import { buildRuleset, defaultRouting, type ManagedRules } from "../../src/nft/managed-rules";
import { clientConnect, ensureBuilt, inNs, Namespaces, NdjsonChild, startNodeRedChild } from "../support/netns";

const nft = IS_ROOT ? systemCommand("nft") : { path: null, skip: true };
const setpriv = IS_ROOT ? systemCommand("setpriv") : { path: null, skip: true };
const PORT = 15001;

describe.skipIf(!IS_ROOT || nft.skip)("managed kernel rules", () => {
  const ns = new Namespaces();
  const children: NdjsonChild[] = [];
  let client = "";
  let gw = "";
  let tc = "";
  let tg = "";
  let ts = "";

  const tables = (n: string): string[] => inNs(n, "nft", ["list", "tables"]).split("\n").filter((l) => l.includes("traffic_policy_"));
  const ipRules = (n: string): string => inNs(n, "ip", ["rule", "show"]);

  beforeAll(() => {
    ensureBuilt();
    client = ns.add("mc");
    gw = ns.add("mg");
    ns.link(client, "192.0.2.2/24", gw, "192.0.2.1/24", "tm");
    inNs(client, "ip", ["route", "add", "default", "via", "192.0.2.1"]);
    ({ client: tc, gateway: tg, server: ts } = ns.gatewayPath("mt", ["tu", "tv"]));
  });
  afterAll(() => {
    for (const c of children) c.kill();
    ns.cleanup();
  });

  const flow = (mode: string, destinations: string, family = "ipv4"): object[] => [
    { id: "node.1", type: "transparent in", port: PORT, family, mode, manageRules: true, ruleDestinations: destinations, rulePorts: "80", ruleMark: "", unclaimedTimeout: 1, wires: [["out"]] },
    { id: "out", type: "helper" },
  ];

  /** Waits for the node's first status after starting, which must be green; returns its text. */
  async function started(red: NdjsonChild): Promise<string> {
    await red.next(["loaded"]);
    for (;;) {
      const s = await red.next(["status", "error"]);
      if (s.event === "error") throw new Error(String(s["message"]));
      // Other nodes of the flow (a forward) report their own statuses meanwhile.
      if (s.event === "status" && s["id"] !== "node.1") continue;
      const st = s["status"] as { fill?: string; text?: string };
      if (st.text !== "starting") {
        expect(st.fill).toBe("green");
        return st.text ?? "";
      }
    }
  }

  it("REDIRECT: the node's table captures traffic while it runs and is gone after close", async () => {
    expect(tables(gw)).toEqual([]);
    const red = startNodeRedChild(gw, flow("redirect", "198.51.100.0/24"));
    children.push(red);
    // The status marks that the node's rules are installed.
    expect(await started(red)).toBe(`redirect :${PORT} nft · 0 live`);
    expect(tables(gw)).toEqual(["table inet traffic_policy_node_1"]);
    clientConnect(client, { host: "198.51.100.7", port: 80, send: "x", timeoutMs: 3000 });
    const m = (await red.next(["message"])).msg as { payload: { originalDst: unknown } };
    expect(m.payload.originalDst).toEqual({ address: "198.51.100.7", port: 80, family: 4, method: "so_original_dst" });
    red.send("close");
    await red.next(["closed"]);
    expect(tables(gw)).toEqual([]);
  });

  it("a table left by a crash is replaced at the next start and removed at close", async () => {
    const first = startNodeRedChild(gw, flow("redirect", "198.51.100.0/24"));
    children.push(first);
    await started(first);
    first.kill();
    await first.exited();
    expect(tables(gw)).toEqual(["table inet traffic_policy_node_1"]);
    const second = startNodeRedChild(gw, flow("redirect", "198.51.100.0/24"));
    children.push(second);
    await started(second);
    expect(tables(gw)).toEqual(["table inet traffic_policy_node_1"]);
    // One copy of each rule, not two.
    expect(inNs(gw, "nft", ["list", "table", "inet", "traffic_policy_node_1"]).match(/redirect to/g)).toHaveLength(1);
    second.send("close");
    await second.next(["closed"]);
    expect(tables(gw)).toEqual([]);
  });

  it("TPROXY: table, ip rule and local route exist while the node runs; the client's address is seen", async () => {
    const { mark, table } = defaultRouting("node.1");
    const markRule = new RegExp(`fwmark 0x${mark.toString(16)} lookup ${table}`);
    const red = startNodeRedChild(tg, flow("tproxy", "198.51.100.20/32, 2001:db8:5::20", "dual"));
    children.push(red);
    await started(red);
    expect(tables(tg)).toEqual(["table inet traffic_policy_node_1"]);
    expect(ipRules(tg)).toMatch(markRule);
    expect(inNs(tg, "ip", ["route", "show", "table", String(table)])).toMatch(/local default dev lo/);
    expect(inNs(tg, "ip", ["-6", "rule", "show"])).toMatch(markRule);
    const r = clientConnect(tc, { host: "198.51.100.20", port: 80, send: "x", timeoutMs: 3000 });
    const m = (await red.next(["message"])).msg as { payload: Record<string, unknown> };
    expect(m.payload).toMatchObject({ remoteAddress: "203.0.113.10", remotePort: r.local.port, originalDst: { address: "198.51.100.20", port: 80, family: 4, method: "tproxy-local-address" } });
    const r6 = clientConnect(tc, { host: "2001:db8:5::20", port: 80, send: "x", timeoutMs: 3000 });
    const m6 = (await red.next(["message"])).msg as { payload: Record<string, unknown> };
    expect(m6.payload).toMatchObject({ remoteAddress: "2001:db8:c::10", remotePort: r6.local.port, originalDst: { address: "2001:db8:5::20", port: 80, family: 6 } });
    red.send("close");
    await red.next(["closed"]);
    expect(tables(tg)).toEqual([]);
    expect(ipRules(tg)).not.toMatch(markRule);
    expect(inNs(tg, "ip", ["-6", "rule", "show"])).not.toMatch(markRule);
    expect(inNs(tg, "ip", ["route", "show", "table", String(table)]).trim()).toBe("");
  });

  it("replaceRules moves a TPROXY table to a new spec in place: a family's routing added, then dropped, the other one's kept", () => {
    // The library itself, run in the gateway namespace (built dist), one step per process.
    const lib = path.resolve(__dirname, "..", "..", "dist", "src", "nft", "managed-rules.js");
    const step = (body: string): ManagedRules =>
      JSON.parse(
        inNs(tg, process.execPath, [
          "-e",
          `const m = require(${JSON.stringify(lib)}); (async () => { ${body} })().then((r) => process.stdout.write(JSON.stringify(r)), (e) => { process.stderr.write(String(e)); process.exit(1); });`,
        ]),
      ) as ManagedRules;
    const spec = (destinations: string): string => JSON.stringify({ mode: "tproxy", port: PORT, destinations, ports: "80" });
    const { mark, table } = defaultRouting("node.2");
    const count = (family: "-4" | "-6"): number => inNs(tg, "ip", [family, "rule", "show"]).split("\n").filter((l) => l.includes(`fwmark 0x${mark.toString(16)} lookup ${table}`)).length;
    const routes = (family: "-4" | "-6"): string => inNs(tg, "ip", [family, "route", "show", "table", String(table)]).trim();
    const nftTable = (): string => inNs(tg, "nft", ["list", "table", "inet", "traffic_policy_node_2"]);

    const v4 = step(`return m.installRules("node.2", ${spec("198.51.100.20/32")});`);
    expect([count("-4"), count("-6")]).toEqual([1, 0]);
    // Unchanged: the same rules back, nothing run.
    expect(step(`return m.replaceRules(${JSON.stringify(v4)}, "node.2", ${spec("198.51.100.20/32")});`)).toEqual(v4);
    const both = step(`return m.replaceRules(${JSON.stringify(v4)}, "node.2", ${spec("198.51.100.20/32, 2001:db8:5::20")});`);
    expect([count("-4"), count("-6")]).toEqual([1, 1]);
    expect(routes("-6")).toMatch(/local default dev lo/);
    expect(nftTable()).toMatch(/2001:db8:5::20/);
    expect(tables(tg)).toEqual(["table inet traffic_policy_node_2"]);
    const back = step(`return m.replaceRules(${JSON.stringify(both)}, "node.2", ${spec("198.51.100.20/32")});`);
    // The IPv4 rule and route the new spec still needs stay; only IPv6's go.
    expect([count("-4"), count("-6")]).toEqual([1, 0]);
    expect(routes("-4")).toMatch(/local default dev lo/);
    expect(routes("-6")).toBe("");
    expect(nftTable()).not.toMatch(/2001:db8/);
    step(`await m.removeRules(${JSON.stringify(back)}); return null;`);
    expect(tables(tg)).toEqual([]);
    expect([count("-4"), count("-6")]).toEqual([0, 0]);
    expect(routes("-4")).toBe("");
  });

  it.each(["redirect", "tproxy"] as const)(
    "%s with this host's own connections: a process on the gateway is captured, the forwarder's marked upstream is not",
    async (mode) => {
      // The server answers with the peer it saw, so the reply proves the connection reached it.
      const server = new NdjsonChild([
        "ip", "netns", "exec", ts, process.execPath, "-e",
        "require('net').createServer((c)=>{c.on('error',()=>{});c.end(JSON.stringify({peer:c.remoteAddress})+'\\n')}).listen(80,'198.51.100.20',()=>console.log(JSON.stringify({event:'up'})))",
      ]);
      children.push(server);
      await server.next(["up"]);
      const skipMark = 0x99;
      const red = startNodeRedChild(tg, [
        { id: "node.1", type: "transparent in", port: PORT, family: "ipv4", mode, manageRules: true, ruleDestinations: "198.51.100.20/32", rulePorts: "80", ruleMark: String(skipMark), ruleLocal: true, unclaimedTimeout: 5, wires: [["conn", "fw"]] },
        { id: "fw", type: "forward", action: "forward", targetType: "original", identity: "none", mark: skipMark, pump: "js", wires: [["summary"]] },
        { id: "conn", type: "helper" },
        { id: "summary", type: "helper" },
      ]);
      children.push(red);
      try {
        await started(red);
        // The output chain is what catches it: the gateway's own connections never pass prerouting on their own.
        expect(inNs(tg, "nft", ["list", "chain", "inet", "traffic_policy_node_1", "output"])).toMatch(/meta mark 0x00000099 return/);
        const r = clientConnect(tg, { host: "198.51.100.20", port: 80, send: "hi", timeoutMs: 5000 });
        expect(r.error).toBeNull();
        expect(JSON.parse(r.response)).toEqual({ peer: "198.51.100.1" });
        const conn = (await red.next(["message"])) as unknown as { at: string; msg: { payload: Record<string, unknown> } };
        expect(conn.at).toBe("conn");
        expect(conn.msg.payload).toMatchObject({ remotePort: r.local.port, originalDst: { address: "198.51.100.20", port: 80 } });
        const summary = (await red.next(["message"])) as unknown as { at: string; msg: { payload: Record<string, unknown> } };
        expect(summary.at).toBe("summary");
        expect(summary.msg.payload).toMatchObject({ action: "forward", end: "closed", bytesToUpstream: 2, target: { address: "198.51.100.20", port: 80 } });
        // Exactly one connection reached the listener: the forwarder's own upstream did not come back.
        await expect(red.next(["message"], 500)).rejects.toThrow();
      } finally {
        red.send("close");
        await red.next(["closed"]).catch(() => undefined);
        server.kill();
      }
      expect(tables(tg)).toEqual([]);
    },
  );

  it("refuses this host's own connections without a skip mark, which would capture the forwarder's upstream again", () => {
    expect(() => buildRuleset("x", { mode: "tproxy", port: PORT, destinations: "198.51.100.20/32", includeLocal: true })).toThrow(/skip mark/);
  });

  it.skipIf(setpriv.skip)("without CAP_NET_ADMIN the node says so, adds nothing and does not listen", async () => {
    const red = startNodeRedChild(gw, flow("redirect", "198.51.100.0/24"), true);
    children.push(red);
    await red.next(["loaded"]);
    const err = await red.next(["error"]);
    expect(err["message"]).toMatch(/needs CAP_NET_ADMIN/);
    let status = await red.next(["status"]);
    while ((status["status"] as { text?: string }).text === "starting") status = await red.next(["status"]);
    expect(status["status"]).toMatchObject({ fill: "red", text: "no CAP_NET_ADMIN" });
    expect(tables(gw)).toEqual([]);
    red.send("close");
    await red.next(["closed"]);
  });
});

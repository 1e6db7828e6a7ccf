// forward on the real kernel: client 203.0.113.10 → gateway (TPROXY into a transparent
// listener, forwardConnection) → server 198.51.100.20, in namespaces this file makes and
// removes (also on failure). Source preservation, PROXY v2 into a real HAProxy, no
// identity, unroutable replies, and the REDIRECT loop guard on one host.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildRuleset } from "../../src/nft/managed-rules";
import { IS_ROOT, systemCommand } from "../support/system";
import { clientConnect, ensureBuilt, inNs, Namespaces, NdjsonChild, nsPrefix } from "../support/netns";

const nft = IS_ROOT ? systemCommand("nft") : { path: null, skip: true };
const setpriv = IS_ROOT ? systemCommand("setpriv") : { path: null, skip: true };
const haproxy = IS_ROOT ? systemCommand("haproxy") : { path: null, skip: true };
const skip = !IS_ROOT || nft.skip;
const PORT = 15001;
const ROOT = path.resolve(__dirname, "..", "..");

interface Summary {
  end: string;
  pump: string | null;
  identity: string;
  bytesToUpstream: number;
  bytesToClient: number;
  error?: { code: string; message: string };
  upstreamLocalPort?: number;
}

const children: NdjsonChild[] = [];
function start(argv: string[]): NdjsonChild {
  const child = new NdjsonChild(argv);
  children.push(child);
  return child;
}
function forwarder(ns: string, listener: object, forward: object, dropNetAdmin = false): NdjsonChild {
  return start([...nsPrefix(ns, dropNetAdmin), process.execPath, path.join(ROOT, "test", "support", "forward-child.js"), JSON.stringify({ listener, forward })]);
}
/** A server bound to one address that answers each connection with the peer it saw. */
function peerServer(ns: string, address: string, port: number): NdjsonChild {
  const code = `require('net').createServer((c)=>{c.on('error',()=>{});c.end(JSON.stringify({peer:c.remoteAddress,port:c.remotePort})+'\\n')}).listen(${port},'${address}',()=>console.log(JSON.stringify({event:'up'})))`;
  return start(["ip", "netns", "exec", ns, process.execPath, "-e", code]);
}
async function stop(child: NdjsonChild): Promise<void> {
  child.kill();
  await child.exited();
}

describe.skipIf(skip)("forward on the real kernel", () => {
  const ns = new Namespaces(`tpf${process.pid % 100000}`);
  let tc = "";
  let tg = "";
  let ts = "";
  let lp = "";
  let tmp = "";

  beforeAll(() => {
    ensureBuilt();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tp-forward-"));
    tc = ns.add("c");
    tg = ns.add("g");
    ts = ns.add("s");
    ns.link(tc, "203.0.113.10/24", tg, "203.0.113.1/24", "fx");
    ns.link(tg, "198.51.100.1/24", ts, "198.51.100.20/24", "fy");
    inNs(tc, "ip", ["route", "add", "default", "via", "203.0.113.1"]);
    inNs(ts, "ip", ["route", "add", "default", "via", "198.51.100.1"]);
    inNs(tg, "sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
    // The rules a `transparent in` node manages in tproxy mode (buildRuleset): packets of
    // sockets that are already transparent (the forwarder's upstream sockets, bound to the
    // client's address) go to them; new connections to the server are tproxied.
    const rules = buildRuleset("fwdtest", { mode: "tproxy", port: PORT, destinations: "198.51.100.20/32", ports: "80", tproxyMark: 1, routeTable: 100 });
    inNs(tg, "nft", ["-f", "-"], rules.ruleset);
    inNs(tg, "ip", ["rule", "add", "fwmark", "1", "lookup", "100"]);
    inNs(tg, "ip", ["route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"]);
    // One host for the REDIRECT loop test: a local service address and a server on it.
    lp = ns.add("l");
    inNs(lp, "ip", ["addr", "add", "198.51.100.7/32", "dev", "lo"]);
  });

  // A failed test must not leave its listener on the port for the next one.
  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (c.child.exitCode !== null || c.child.signalCode !== null) continue;
      c.kill();
      await c.exited();
    }
  });

  afterAll(() => {
    for (const c of children) c.kill();
    ns.cleanup();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  for (const pump of ["native", "js"] as const) {
    it(`source preservation (${pump} pump): a server bound to its one address sees 203.0.113.10`, async () => {
      const server = peerServer(ts, "198.51.100.20", 80);
      await server.next(["up"]);
      const fw = forwarder(tg, { port: PORT, mode: "tproxy", family: "ipv4" }, { target: "original", identity: "transparent", pump });
      expect((await fw.next(["listening", "error"])).event).toBe("listening");
      const r = clientConnect(tc, { host: "198.51.100.20", port: 80, send: "hi" });
      expect(r.error).toBeNull();
      expect(JSON.parse(r.response).peer).toBe("203.0.113.10");
      const { summary } = (await fw.next(["summary"])) as unknown as { summary: Summary };
      expect(summary).toMatchObject({ end: "closed", identity: "transparent", pump, bytesToUpstream: 2 });
      // Port 0 by default: not the client's own port.
      expect(JSON.parse(r.response).port).toBe(summary.upstreamLocalPort);
      await stop(fw);
      await stop(server);
    });
  }

  it("source preservation keeps the client's port when asked", async () => {
    const server = peerServer(ts, "198.51.100.20", 80);
    await server.next(["up"]);
    const fw = forwarder(tg, { port: PORT, mode: "tproxy", family: "ipv4" }, { target: "original", identity: "transparent", keepClientPort: true });
    await fw.next(["listening"]);
    const r = clientConnect(tc, { host: "198.51.100.20", port: 80, send: "hi" });
    expect(JSON.parse(r.response)).toEqual({ peer: "203.0.113.10", port: r.local.port });
    await stop(fw);
    await stop(server);
  });

  it.skipIf(setpriv.skip)("without CAP_NET_ADMIN, source preservation fails with EPERM and closes the client", async () => {
    const fw = forwarder(tg, { port: PORT, mode: "redirect", family: "ipv4" }, { target: "original", identity: "transparent" }, true);
    await fw.next(["listening"]);
    // REDIRECT needs no capability for the listener: only the upstream bind is refused.
    inNs(tg, "nft", ["-f", "-"], "table inet tpf_redirect {\n chain pre { type nat hook prerouting priority dstnat; policy accept;\n  ip daddr 198.51.100.20 tcp dport 81 redirect to :15001\n }\n}\n");
    try {
      const r = clientConnect(tc, { host: "198.51.100.20", port: 81, send: "hi" });
      // Closed without an answer: a FIN, or a reset when its bytes were still unread.
      expect([null, "ECONNRESET"]).toContain(r.error);
      expect(r.response).toBe("");
      const { summary } = (await fw.next(["summary"])) as unknown as { summary: Summary };
      expect(summary).toMatchObject({ end: "connect-failed", error: { code: "EPERM" } });
      expect(summary.error!.message).toMatch(/CAP_NET_ADMIN/);
    } finally {
      inNs(tg, "nft", ["delete", "table", "inet", "tpf_redirect"]);
    }
    await stop(fw);
  });

  it("identity none: the server sees the gateway", async () => {
    const server = peerServer(ts, "198.51.100.20", 80);
    await server.next(["up"]);
    const fw = forwarder(tg, { port: PORT, mode: "tproxy", family: "ipv4" }, { target: "original", identity: "none" });
    await fw.next(["listening"]);
    const r = clientConnect(tc, { host: "198.51.100.20", port: 80, send: "hi" });
    expect(JSON.parse(r.response).peer).toBe("198.51.100.1");
    await stop(fw);
    await stop(server);
  });

  it("an upstream with no route is reported as unreachable, and the client is closed", async () => {
    // The gateway has no route to 192.0.2.0/24 at all.
    const fw = forwarder(tg, { port: PORT, mode: "tproxy", family: "ipv4" }, { target: { address: "192.0.2.99", port: 80 } });
    await fw.next(["listening"]);
    const r = clientConnect(tc, { host: "198.51.100.20", port: 80, send: "hi" });
    expect([null, "ECONNRESET"]).toContain(r.error);
    expect(r.response).toBe("");
    const { summary } = (await fw.next(["summary"])) as unknown as { summary: Summary };
    expect(summary).toMatchObject({ end: "connect-failed", error: { code: "ENETUNREACH" } });
    expect(summary.error!.message).toMatch(/unreachable/);
    await stop(fw);
  });

  it("when replies cannot come back, the connect times out with an explanation", async () => {
    const server = peerServer(ts, "198.51.100.20", 80);
    await server.next(["up"]);
    // The server's replies to the client go elsewhere (here: nowhere).
    inNs(ts, "ip", ["route", "add", "blackhole", "203.0.113.0/24"]);
    try {
      const fw = forwarder(tg, { port: PORT, mode: "tproxy", family: "ipv4" }, { target: "original", identity: "transparent", connectTimeoutMs: 800 });
      await fw.next(["listening"]);
      const r = clientConnect(tc, { host: "198.51.100.20", port: 80, send: "hi" });
      // Closed without an answer: a FIN, or a reset when its bytes were still unread.
      expect([null, "ECONNRESET"]).toContain(r.error);
      expect(r.response).toBe("");
      const { summary } = (await fw.next(["summary"])) as unknown as { summary: Summary };
      expect(summary).toMatchObject({ end: "connect-failed", error: { code: "ETIMEDOUT" } });
      expect(summary.error!.message).toMatch(/routed back through this host/);
      await stop(fw);
    } finally {
      inNs(ts, "ip", ["route", "del", "blackhole", "203.0.113.0/24"]);
    }
    await stop(server);
  });

  it.skipIf(haproxy.skip)("PROXY v2: a real HAProxy backend with accept-proxy sees the client's address", async () => {
    const cfg = path.join(tmp, "haproxy.cfg");
    fs.writeFileSync(
      cfg,
      [
        "global",
        "  maxconn 100",
        "defaults",
        "  mode http",
        "  timeout client 5s",
        "  timeout server 5s",
        "  timeout connect 5s",
        "frontend fe",
        "  bind 198.51.100.20:80 accept-proxy",
        '  http-request return status 200 content-type text/plain lf-string "src=%[src] dst=%[dst]\\n"',
        "",
      ].join("\n"),
    );
    const hap = start(["ip", "netns", "exec", ts, haproxy.path!, "-db", "-f", cfg]);
    const fw = forwarder(tg, { port: PORT, mode: "tproxy", family: "ipv4", sniffBytes: 16 }, { target: "original", identity: "proxy-v2" });
    await fw.next(["listening"]);
    let response = "";
    for (let i = 0; i < 50 && !response.includes("src="); i++) {
      const r = clientConnect(tc, { host: "198.51.100.20", port: 80, send: "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" });
      response = r.response;
      if (!response.includes("src=")) await new Promise((res) => setTimeout(res, 100));
    }
    expect(response).toMatch(/src=203\.0\.113\.10 dst=198\.51\.100\.20/);
    await stop(fw);
    await stop(hap);
  });

  it("REDIRECT on one host: the forwarder's marked upstream connection is not captured again", async () => {
    const server = peerServer(lp, "198.51.100.7", 80);
    await server.next(["up"]);
    const rules = buildRuleset("fwdloop", { mode: "redirect", port: 15002, destinations: "198.51.100.7/32", ports: "80", excludeMark: 0x99, includeLocal: true });
    inNs(lp, "nft", ["-f", "-"], rules.ruleset);
    const fw = forwarder(lp, { port: 15002, mode: "redirect", family: "ipv4" }, { target: "original", mark: 0x99 });
    await fw.next(["listening"]);
    const r = clientConnect(lp, { host: "198.51.100.7", port: 80, send: "hi" });
    expect(r.error).toBeNull();
    expect(JSON.parse(r.response).peer).toBe("198.51.100.7");
    const first = await fw.next(["connection"]);
    expect((first.info as { originalDst: { port: number } }).originalDst.port).toBe(80);
    const { summary } = (await fw.next(["summary"])) as unknown as { summary: Summary };
    expect(summary.end).toBe("closed");
    // Exactly one connection reached the listener: its own upstream did not come back.
    await expect(fw.next(["connection"], 300)).rejects.toThrow(/no connection/);
    // And a client that dials the listener itself is refused as a loop, not forwarded to itself.
    const direct = forwarder(lp, { port: 15003, mode: "plain", family: "ipv4" }, { target: { address: "198.51.100.7", port: 15003 } });
    await direct.next(["listening"]);
    clientConnect(lp, { host: "198.51.100.7", port: 15003, send: "x" });
    const loop = (await direct.next(["summary"])) as unknown as { summary: Summary };
    expect(loop.summary).toMatchObject({ end: "loop", error: { code: "ERR_FORWARD_LOOP" } });
    await stop(direct);
    await stop(fw);
    await stop(server);
  });
});

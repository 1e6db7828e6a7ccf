// The transparent listener against the real kernel: REDIRECT and TPROXY rules in network
// namespaces this file makes (documentation ranges only) and removes, also on failure.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IS_ROOT, systemCommand } from "../support/system";
import { clientConnect, ensureBuilt, inNs, Namespaces, NdjsonChild, startListenerChild } from "../support/netns";

const nft = IS_ROOT ? systemCommand("nft") : { path: null, skip: true };
const setpriv = IS_ROOT ? systemCommand("setpriv") : { path: null, skip: true };
const skip = !IS_ROOT || nft.skip;
const PORT = 15001;

interface Info {
  id: string;
  mode: string;
  family: number;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  originalDst?: { address: string; port: number; family: number; method: string };
  originalDstError?: { code: string; message: string };
  proxy?: { sourceAddress?: string; sourcePort?: number; destinationAddress?: string; version: number };
  firstBytes?: string;
}

const children: NdjsonChild[] = [];
function listener(ns: string | null, config: object, dropNetAdmin = false): NdjsonChild {
  const child = startListenerChild(ns, config, dropNetAdmin);
  children.push(child);
  return child;
}
async function connection(child: NdjsonChild): Promise<Info> {
  return (await child.next(["connection"])).info as Info;
}
async function closeChild(child: NdjsonChild): Promise<{ fds: number; fdsBefore: number }> {
  child.send("close");
  const closed = await child.next(["closed"]);
  await child.exited();
  return closed as never;
}

describe.skipIf(skip)("transparent listener on the real kernel", () => {
  const ns = new Namespaces();
  let client = "";
  let gw = "";
  let plain = "";
  let tc = "";
  let tg = "";
  let ts = "";

  beforeAll(() => {
    ensureBuilt();
    // REDIRECT: a client namespace routed through a gateway whose prerouting NAT
    // redirects 198.51.100.7:80 and [2001:db8:1::7]:80 to the listener.
    client = ns.add("rc");
    gw = ns.add("rg");
    ns.link(client, "192.0.2.2/24", gw, "192.0.2.1/24", "tr");
    inNs(client, "ip", ["-6", "addr", "add", "2001:db8::2/64", "dev", "tra", "nodad"]);
    inNs(gw, "ip", ["-6", "addr", "add", "2001:db8::1/64", "dev", "trb", "nodad"]);
    inNs(client, "ip", ["route", "add", "default", "via", "192.0.2.1"]);
    inNs(client, "ip", ["-6", "route", "add", "default", "via", "2001:db8::1"]);
    inNs(gw, "nft", ["-f", "-"], `table inet tpt_test {
  chain pre { type nat hook prerouting priority dstnat; policy accept;
    ip daddr 198.51.100.7 tcp dport 80 redirect to :${PORT}
    ip6 daddr 2001:db8:1::7 tcp dport 80 redirect to :${PORT}
  }
}
`);
    // No rules at all: conntrack never starts in this namespace.
    plain = ns.add("pl");
    // TPROXY: client 203.0.113.10 → gateway → server 198.51.100.20.
    ({ client: tc, gateway: tg, server: ts } = ns.gatewayPath("t", ["tx", "ty"]));
    inNs(tg, "nft", ["-f", "-"], `table inet tpt_test {
  chain pre { type filter hook prerouting priority mangle; policy accept;
    ip daddr 198.51.100.20 tcp dport 80 tproxy ip to :${PORT} meta mark set 1 accept
    ip6 daddr 2001:db8:5::20 tcp dport 80 tproxy ip6 to :${PORT} meta mark set 1 accept
  }
}
`);
    inNs(tg, "ip", ["rule", "add", "fwmark", "1", "lookup", "100"]);
    inNs(tg, "ip", ["route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"]);
    inNs(tg, "ip", ["-6", "rule", "add", "fwmark", "1", "lookup", "100"]);
    inNs(tg, "ip", ["-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100"]);
  });

  afterAll(() => {
    for (const c of children) c.kill();
    ns.cleanup();
  });

  it("REDIRECT: IPv4 and IPv6 connections carry their original destination (dual-stack listener)", async () => {
    const l = listener(gw, { port: PORT, family: "dual", mode: "redirect", sniffBytes: 5 });
    await l.next(["listening"]);
    const r4 = clientConnect(client, { host: "198.51.100.7", port: 80, send: "hello world" });
    const i4 = await connection(l);
    expect(i4.originalDst).toEqual({ address: "198.51.100.7", port: 80, family: 4, method: "so_original_dst" });
    expect(i4).toMatchObject({ mode: "redirect", family: 4, remoteAddress: "192.0.2.2", remotePort: r4.local.port, localPort: PORT });
    expect(Buffer.from(i4.firstBytes!, "base64").toString()).toBe("hello");
    // Everything read while sniffing is kept for replay, not only the first five bytes.
    expect(Buffer.from(JSON.parse(r4.response).replay, "base64").toString()).toBe("hello world");

    const r6 = clientConnect(client, { host: "2001:db8:1::7", port: 80, send: "hello", end: true });
    expect(r6.error).toBeNull();
    const i6 = await connection(l);
    expect(i6.originalDst).toEqual({ address: "2001:db8:1::7", port: 80, family: 6, method: "so_original_dst" });
    expect(i6).toMatchObject({ family: 6, remoteAddress: "2001:db8::2" });

    // Dialling the listener directly: conntrack has an entry, but nothing was rewritten.
    clientConnect(client, { host: "192.0.2.1", port: PORT, send: "hello" });
    const direct = await connection(l);
    expect(direct.originalDst).toBeUndefined();
    expect(direct.originalDstError?.code).toBe("ERR_NOT_REDIRECTED");

    const closed = await closeChild(l);
    // No leak: as many descriptors as before or fewer (an unrelated one may have closed meanwhile).
    expect(closed.fds).toBeLessThanOrEqual(closed.fdsBefore);
  });

  it("REDIRECT: IPv4-only and IPv6-only listeners", async () => {
    const v4 = listener(gw, { port: PORT, family: "ipv4", mode: "redirect" });
    await v4.next(["listening"]);
    clientConnect(client, { host: "198.51.100.7", port: 80, send: "x" });
    expect((await connection(v4)).originalDst?.address).toBe("198.51.100.7");
    await closeChild(v4);
    const v6 = listener(gw, { port: PORT, family: "ipv6", mode: "redirect" });
    await v6.next(["listening"]);
    clientConnect(client, { host: "2001:db8:1::7", port: 80, send: "x" });
    expect((await connection(v6)).originalDst?.address).toBe("2001:db8:1::7");
    await closeChild(v6);
  });

  it("a connection with no conntrack entry gives the typed ENOENT result, not a crash", async () => {
    const l = listener(plain, { port: PORT, family: "dual", mode: "redirect" });
    await l.next(["listening"]);
    for (const host of ["127.0.0.1", "::1"]) {
      const r = clientConnect(plain, { host, port: PORT, send: "x" });
      expect(r.error).toBeNull();
      const info = await connection(l);
      expect(info.originalDst).toBeUndefined();
      expect(info.originalDstError?.code).toBe("ENOENT");
      expect(info.originalDstError?.message).toMatch(/no conntrack entry/);
    }
    await closeChild(l);
  });

  it("TPROXY: the listener sees the client's real address and the server's address; the server sees nothing", async () => {
    const server = new NdjsonChild([
      "ip", "netns", "exec", ts, process.execPath, "-e",
      "require('net').createServer((c)=>{console.log(JSON.stringify({event:'server-accept'}));c.destroy()}).listen(80,()=>console.log(JSON.stringify({event:'server-up'})))",
    ]);
    children.push(server);
    await server.next(["server-up"]);
    const l = listener(tg, { port: PORT, family: "ipv4", mode: "tproxy", sniffBytes: 4 });
    expect((await l.next(["listening", "error"])).event).toBe("listening");
    const r = clientConnect(tc, { host: "198.51.100.20", port: 80, send: "ping" });
    expect(r.error).toBeNull();
    const info = await connection(l);
    expect(info).toMatchObject({ mode: "tproxy", remoteAddress: "203.0.113.10", remotePort: r.local.port, localAddress: "198.51.100.20", localPort: 80 });
    expect(info.originalDst).toEqual({ address: "198.51.100.20", port: 80, family: 4, method: "tproxy-local-address" });
    expect(JSON.parse(r.response).id).toBe(info.id);
    await closeChild(l);
    server.send("");
    await new Promise((res) => setTimeout(res, 100));
    await expect(server.next(["server-accept"], 50)).rejects.toThrow(/no server-accept/);
    server.kill();
  });

  it("TPROXY over IPv6 and IPv4 into one dual-stack transparent listener", async () => {
    const l = listener(tg, { port: PORT, family: "dual", mode: "tproxy" });
    expect((await l.next(["listening", "error"])).event).toBe("listening");
    const r6 = clientConnect(tc, { host: "2001:db8:5::20", port: 80, send: "x" });
    expect(r6.error).toBeNull();
    const i6 = await connection(l);
    expect(i6).toMatchObject({ family: 6, remoteAddress: "2001:db8:c::10", remotePort: r6.local.port });
    expect(i6.originalDst).toEqual({ address: "2001:db8:5::20", port: 80, family: 6, method: "tproxy-local-address" });
    const r4 = clientConnect(tc, { host: "198.51.100.20", port: 80, send: "x" });
    expect(r4.error).toBeNull();
    const i4 = await connection(l);
    expect(i4).toMatchObject({ family: 4, remoteAddress: "203.0.113.10" });
    expect(i4.originalDst).toEqual({ address: "198.51.100.20", port: 80, family: 4, method: "tproxy-local-address" });
    await closeChild(l);
  });

  it.skipIf(setpriv.skip)("without CAP_NET_ADMIN, TPROXY fails with a clear EPERM while REDIRECT still works", async () => {
    const t = listener(tg, { port: PORT, mode: "tproxy" }, true);
    const err = await t.next(["listening", "error"]);
    expect(err).toMatchObject({ event: "error", code: "EPERM" });
    expect(err["message"]).toMatch(/IP_TRANSPARENT.*CAP_NET_ADMIN/);
    const r = listener(gw, { port: PORT, family: "dual", mode: "redirect" }, true);
    await r.next(["listening"]);
    clientConnect(client, { host: "198.51.100.7", port: 80, send: "x" });
    expect((await connection(r)).originalDst).toMatchObject({ address: "198.51.100.7", port: 80 });
    await closeChild(r);
  });

  it("PROXY protocol: header read from configured CIDRs, required ones missing are refused", async () => {
    const l = listener(gw, { port: PORT, family: "dual", mode: "plain", sniffBytes: 3, proxyProtocol: "required", proxyFrom: "192.0.2.0/24" });
    await l.next(["listening"]);
    // The header arrives split in two segments' worth of writes: the parser waits for the rest.
    const r = clientConnect(client, { host: "192.0.2.1", port: PORT, send: "PROXY TCP4 203.0.113.9 198.51.100.30 40000 443\r\nGET / HTTP/1.0\r\n\r\n" });
    expect(r.error).toBeNull();
    const info = await connection(l);
    expect(info.proxy).toMatchObject({ version: 1, sourceAddress: "203.0.113.9", sourcePort: 40000, destinationAddress: "198.51.100.30" });
    expect(info.originalDst).toEqual({ address: "198.51.100.30", port: 443, family: 4, method: "proxy-protocol" });
    expect(info.remoteAddress).toBe("192.0.2.2");
    expect(Buffer.from(info.firstBytes!, "base64").toString()).toBe("GET");
    // The header is not replayed: the upstream sees the stream as the client sent it.
    expect(Buffer.from(JSON.parse(r.response).replay, "base64").toString()).toBe("GET / HTTP/1.0\r\n\r\n");

    const refused = clientConnect(client, { host: "192.0.2.1", port: PORT, send: "GET / HTTP/1.0\r\n\r\n" });
    expect(refused.response).toBe("");
    expect(await l.next(["rejected"])).toMatchObject({ reason: "proxy-missing" });
    // A peer outside the CIDRs is not asked for a header: its bytes are payload.
    clientConnect(client, { host: "2001:db8::1", port: PORT, send: "PROXY TCP4 203.0.113.9 198.51.100.30 1 2\r\n" });
    const other = await connection(l);
    expect(other.proxy).toBeUndefined();
    expect(Buffer.from(other.firstBytes!, "base64").toString()).toBe("PRO");
    await closeChild(l);
  });

  it("close releases the port at once", async () => {
    const a = listener(gw, { port: PORT, mode: "redirect" });
    await a.next(["listening"]);
    const busy = listener(gw, { port: PORT, mode: "redirect" });
    expect(await busy.next(["listening", "error"])).toMatchObject({ event: "error", code: "EADDRINUSE" });
    // A connection still open when the listener closes must not hold the port or an fd.
    const hold = new NdjsonChild(["ip", "netns", "exec", client, process.execPath, "-e",
      "const s=require('net').connect(80,'198.51.100.7',()=>console.log(JSON.stringify({event:'open'})));s.on('error',()=>{});s.on('close',()=>console.log(JSON.stringify({event:'gone'})))"]);
    children.push(hold);
    await hold.next(["open"]);
    await a.next(["connection"]);
    const closed = await closeChild(a);
    // No leak: as many descriptors as before or fewer (an unrelated one may have closed meanwhile).
    expect(closed.fds).toBeLessThanOrEqual(closed.fdsBefore);
    const again = listener(gw, { port: PORT, mode: "redirect" });
    expect((await again.next(["listening", "error"])).event).toBe("listening");
    await closeChild(again);
    hold.kill();
  });
});

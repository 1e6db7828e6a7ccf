// A real IPv6 client bound to the IPv4-compatible address ::7f00:1 (::127.0.0.1), over a
// veth pair between two namespaces this file makes and removes. The kernel accepts TCP
// from such a source, so neither the listener's PROXY check nor real ip may read it as
// the IPv4 loopback address.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileRealIp } from "../../src/realip/resolve";
import { IS_ROOT } from "../support/system";
import { clientConnect, ensureBuilt, inNs, Namespaces, NdjsonChild, startListenerChild } from "../support/netns";

// Namespace-local port: each test namespace has its own port space.
const PORT = 15002;

interface Info {
  remoteAddress: string;
  proxy?: { sourceAddress?: string };
  firstBytes?: string;
}

describe.skipIf(!IS_ROOT)("IPv4-compatible IPv6 peers on the real kernel", () => {
  const ns = new Namespaces();
  let client = "";
  let server = "";
  let child: NdjsonChild | undefined;

  beforeAll(() => {
    ensureBuilt();
    client = ns.add("cc");
    server = ns.add("cs");
    ns.link(client, "2001:db8:7::2/64", server, "2001:db8:7::1/64", "cpt");
    inNs(client, "ip", ["-6", "addr", "add", "::7f00:1/128", "dev", "cpta", "nodad"]);
    inNs(server, "ip", ["-6", "route", "add", "::7f00:1/128", "via", "2001:db8:7::2", "dev", "cptb"]);
    // Skip duplicate address detection so the addresses are usable at once.
    for (const [n, dev] of [[client, "cpta"], [server, "cptb"]] as const) {
      inNs(n, "ip", ["-6", "addr", "change", n === client ? "2001:db8:7::2/64" : "2001:db8:7::1/64", "dev", dev, "nodad"]);
    }
  });

  afterAll(() => {
    if (child?.child.pid !== undefined) child.kill();
    ns.cleanup();
  });

  it("a remote ::127.0.0.1 is not loopback: no PROXY header believed, no forwarding header trusted", async () => {
    child = startListenerChild(server, { port: PORT, family: "ipv6", mode: "plain", sniffBytes: 3, proxyProtocol: "optional", proxyFrom: "loopback" });
    await child.next(["listening"]);
    const r = clientConnect(client, { host: "2001:db8:7::1", port: PORT, localAddress: "::7f00:1", send: "PROXY TCP4 198.51.100.9 198.51.100.30 40000 443\r\n" });
    expect(r.local.address).toBe("::127.0.0.1");
    const info = (await child.next(["connection"])).info as Info;
    expect(info.remoteAddress).toBe("::127.0.0.1");
    expect(info.proxy).toBeUndefined();
    expect(Buffer.from(info.firstBytes!, "base64").toString()).toBe("PRO");

    const resolved = compileRealIp({ trust: "loopback" })({ peer: { address: info.remoteAddress }, headers: { "x-forwarded-for": "10.0.0.1" } });
    expect(resolved).toMatchObject({ address: "::7f00:1", family: 6, trustedHops: 0, untrustedHeaders: true });
  });
});

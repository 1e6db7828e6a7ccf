import { createRequire } from "node:module";
import path from "node:path";
import { describe, expect, it } from "vitest";

const require_ = createRequire(__filename);
const root = path.resolve(__dirname, "..", "..");

describe("the package main (built CommonJS)", () => {
  const pkg = require_(path.join(root, "package.json")) as { main: string; types: string };
  const api = require_(path.join(root, pkg.main)) as typeof import("../../src/index");

  it("resolves a client address without Node-RED", () => {
    const resolve = api.compileRealIp({ trust: "loopback" });
    expect(resolve({ peer: { address: "127.0.0.1" }, headers: { "x-forwarded-for": "198.51.100.4" } }).address).toBe("198.51.100.4");
  });

  it("parses a PROXY header and raises typed errors", () => {
    const bytes = Buffer.from("PROXY TCP4 203.0.113.1 198.51.100.2 5000 443\r\nGET /");
    const r = api.parseProxyHeader(bytes);
    expect(r.kind === "header" && r.header.sourceAddress).toBe("203.0.113.1");
    expect(() => api.parseProxyHeader(Buffer.from("PROXY TCP4 1.2.3 x\r\n"))).toThrow(api.TrafficError);
  });

  it("compiles trust once and filters by CIDR", () => {
    const trust = api.compileTrust(["10.0.0.0/8"]);
    expect(trust(api.parseIp("10.1.2.3"), 0)).toBe(true);
    expect(api.compileIpFilter([{ action: "deny", ranges: "203.0.113.0/24" }])("203.0.113.9").action).toBe("deny");
  });

  it("reads a flow event's client bytes and ends by the socket's side", () => {
    const hello = Buffer.from("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").toString("base64");
    const ends = { localIp: "192.0.2.1", localPort: 443, remoteIp: "198.51.100.7", remotePort: 40000 };
    // An accepted socket: the client is the remote end, its bytes are what this host received.
    const accepted = api.flowFirstBytes({ flowId: "f1", side: "server", ...ends, firstBytes: { received: hello, sent: "" } });
    expect(accepted?.endpoints).toEqual({ destinationAddress: "192.0.2.1", destinationPort: 443, clientAddress: "198.51.100.7" });
    expect(api.classifyBytes(accepted!.bytes).fields.host).toBe("example.com");
    // A socket this host opened: it is the client, its bytes are what it sent.
    const opened = api.flowFirstBytes({ flowId: "f2", side: "client", ...ends, firstBytes: { received: "", sent: hello } });
    expect(opened?.endpoints).toEqual({ destinationAddress: "198.51.100.7", destinationPort: 40000, clientAddress: "192.0.2.1" });
    expect(api.classifyBytes(opened!.bytes).protocol).toBe("http1");
    expect(api.flowFirstBytes({ ...ends, firstBytes: { sent: hello } })).toBeNull();
  });
});

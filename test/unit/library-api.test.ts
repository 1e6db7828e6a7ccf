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
});

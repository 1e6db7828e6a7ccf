import { describe, expect, it } from "vitest";
import { classifyBytes, compileHostPattern, compileRouter, hostWithoutPort, RouteInput } from "../../src/classify";
import { TrafficError } from "../../src/errors";
import { vector } from "../support/classify-vectors";

const tls = (name: string): RouteInput => ({ classification: classifyBytes(vector(name).bytes) });

describe("host patterns", () => {
  it("exact, wildcard (below the name, not the name) and regex", () => {
    expect(compileHostPattern("API.example.test")("api.example.test")).toBe(true);
    const wild = compileHostPattern("*.example.test");
    expect(wild("www.example.test")).toBe(true);
    expect(wild("a.b.example.test")).toBe(true);
    expect(wild("example.test")).toBe(false);
    expect(wild("badexample.test")).toBe(false);
    expect(compileHostPattern("/^api[0-9]+\\./")("api7.example.test")).toBe(true);
    expect(compileHostPattern("/^API/i")("api.example.test")).toBe(true);
  });

  it("bad patterns are ERR_RULE_CONFIG", () => {
    for (const p of ["/(/", "/x/g", "a.*.example", "*.", "*"]) {
      try {
        compileHostPattern(p);
        expect.unreachable(p);
      } catch (err) {
        expect((err as TrafficError).code).toBe("ERR_RULE_CONFIG");
      }
    }
  });

  it("strips ports from hosts", () => {
    expect(hostWithoutPort("example.test:8443")).toBe("example.test");
    expect(hostWithoutPort("[2001:db8::1]:443")).toBe("2001:db8::1");
    expect(hostWithoutPort("2001:db8::1")).toBe("2001:db8::1");
  });
});

describe("router", () => {
  const route = compileRouter([
    { name: "api", protocols: "tls", hosts: "api.example.test" },
    { name: "web", protocols: ["tls"], hosts: "*.example.test", alpn: "h2" },
    { name: "grpc greeter", protocols: "http2", pathPrefixes: "/helloworld.Greeter/" },
    { name: "http internal", protocols: "http1", clients: "loopback", destinationPorts: "80, 8000-8100", destinations: "192.0.2.0/24" },
    { name: "unknowns", protocols: "unknown incomplete server-first" },
  ]);

  it("routes TLS by SNI and ALPN, first match wins", () => {
    expect(route(tls("openssl-s_client"))).toEqual({ index: 0, rule: "api" });
    expect(route(tls("chromium"))).toEqual({ index: 1, rule: "web" });
    // legacy.example.test offers no ALPN: matches neither TLS rule.
    expect(route(tls("openssl-s_client-tls12"))).toEqual({ index: -1, rule: null });
  });

  it("http2 covers gRPC; path prefixes", () => {
    expect(route(tls("curl-grpc"))).toEqual({ index: 2, rule: "grpc greeter" });
    expect(route(tls("curl-h2-prior-knowledge")).index).toBe(-1);
  });

  it("checks destination port ranges, destination and client CIDRs", () => {
    const c = classifyBytes(vector("curl-http1").bytes);
    expect(route({ classification: c, clientAddress: "127.0.0.1", destinationAddress: "192.0.2.10", destinationPort: 8080 }).index).toBe(3);
    expect(route({ classification: c, clientAddress: "127.0.0.1", destinationAddress: "192.0.2.10", destinationPort: 8200 }).index).toBe(-1);
    expect(route({ classification: c, clientAddress: "203.0.113.5", destinationAddress: "192.0.2.10", destinationPort: 80 }).index).toBe(-1);
    expect(route({ classification: c, clientAddress: "::ffff:127.0.0.1", destinationAddress: "192.0.2.10", destinationPort: 80 }).index).toBe(3);
    expect(route({ classification: c }).index).toBe(-1);
  });

  it("routes outcomes too", () => {
    expect(route({ classification: classifyBytes(Buffer.alloc(0)) }).index).toBe(4);
  });

  it("a rule without conditions matches everything; names default to their position", () => {
    expect(compileRouter([{}])({ classification: classifyBytes(Buffer.from("x")) })).toEqual({ index: 0, rule: "rule 1" });
  });

  it("bad rules are ERR_RULE_CONFIG naming the rule", () => {
    const bad = [
      { name: "p", protocols: "telnet" },
      { name: "port", destinationPorts: "70000" },
      { name: "range", destinationPorts: "90-80" },
      { name: "cidr", clients: "10.0.0.1/8" },
      { name: "path", pathPrefixes: "api" },
    ];
    for (const rule of bad) {
      try {
        compileRouter([rule]);
        expect.unreachable(rule.name);
      } catch (err) {
        expect(err).toBeInstanceOf(TrafficError);
        expect((err as TrafficError).code).toBe("ERR_RULE_CONFIG");
        expect((err as TrafficError).reason).toContain(rule.name);
      }
    }
  });
});

import { describe, expect, it } from "vitest";
import { TrafficError } from "../../src/errors";
import { compileIpFilter } from "../../src/ipfilter/rules";
import type { ProxyHeader } from "../../src/proxy-protocol/types";
import { compileRealIp, type RealIpInput } from "../../src/realip/resolve";

// The deployment: a trusted reverse proxy at 10.0.0.5 in front of the service; the
// attacker is 203.0.113.66 and wants to look like 10.0.0.1 (an internal, allowed address).
const PROXY = "10.0.0.5";
const ATTACKER = "203.0.113.66";
const FORGED = "10.0.0.1";
const resolve = compileRealIp({ trust: [PROXY] });
const filter = compileIpFilter([
  { name: "internal", action: "allow", ranges: "10.0.0.0/8" },
  { name: "rest", action: "deny", ranges: "any" },
]);

const proxyHeader = (source: string): ProxyHeader => ({
  version: 2,
  command: "proxy",
  family: "tcp4",
  sourceAddress: source,
  sourcePort: 1,
  destinationAddress: "198.51.100.1",
  destinationPort: 443,
  tlvs: [],
  length: 28,
});

interface Attack {
  name: string;
  input: RealIpInput;
}

const ATTACKS: Attack[] = [
  { name: "forged X-Forwarded-For, direct", input: { peer: { address: ATTACKER }, headers: { "x-forwarded-for": FORGED } } },
  { name: "forged X-Real-IP, direct", input: { peer: { address: ATTACKER }, headers: { "x-real-ip": FORGED } } },
  { name: "forged Forwarded, direct", input: { peer: { address: ATTACKER }, headers: { forwarded: `for=${FORGED}` } } },
  { name: "forged PROXY header, direct", input: { peer: { address: ATTACKER }, proxyHeader: proxyHeader(FORGED) } },
  {
    name: "forged leftmost X-Forwarded-For through the proxy",
    input: { peer: { address: PROXY }, headers: { "x-forwarded-for": `${FORGED}, ${ATTACKER}` } },
  },
  {
    name: "many forged entries through the proxy",
    input: { peer: { address: PROXY }, headers: { "x-forwarded-for": `${Array(5000).fill(FORGED).join(", ")}, ${ATTACKER}` } },
  },
  {
    name: "duplicated X-Forwarded-For lines through the proxy",
    input: { peer: { address: PROXY }, headers: { "x-forwarded-for": [FORGED, ATTACKER] } },
  },
  {
    name: "forged Forwarded beside the proxy's X-Forwarded-For (only XFF enabled)",
    input: { peer: { address: PROXY }, headers: { forwarded: `for=${FORGED}`, "x-forwarded-for": ATTACKER } },
  },
  {
    name: "client's own Forwarded through a proxy that appends to X-Forwarded-For (defaults)",
    input: { peer: { address: PROXY }, headers: { forwarded: `for=${FORGED}`, "x-forwarded-for": ATTACKER } },
  },
  {
    name: "client's own X-Real-IP through a proxy that appends to X-Forwarded-For (defaults)",
    input: { peer: { address: PROXY }, headers: { "x-real-ip": FORGED, "x-forwarded-for": ATTACKER } },
  },
  {
    name: "IPv4-mapped forged address, direct",
    input: { peer: { address: `::ffff:${ATTACKER}` }, headers: { "x-forwarded-for": `::ffff:${FORGED}` } },
  },
  {
    name: "legacy-form forged address through the proxy",
    input: { peer: { address: PROXY }, headers: { "x-forwarded-for": `167772161, ${ATTACKER}` } },
  },
];

describe("spoofing attacks on real ip and ip filter", () => {
  const xffOnly = compileRealIp({ trust: [PROXY], sources: ["x-forwarded-for"] });
  for (const attack of ATTACKS) {
    it(`${attack.name}: the attacker stays the attacker and is denied`, () => {
      const r = (attack.name.includes("only XFF") ? xffOnly : resolve)(attack.input);
      expect(r.address).toBe(ATTACKER);
      expect(filter(r.address).action).toBe("deny");
    });
  }

  it("a client's own X-Forwarded-For through a proxy that sets only X-Real-IP is not read", () => {
    const realIpOnly = compileRealIp({ trust: [PROXY], header: "x-real-ip" });
    const r = realIpOnly({ peer: { address: PROXY }, headers: { "x-forwarded-for": FORGED, "x-real-ip": ATTACKER } });
    expect(r.address).toBe(ATTACKER);
    expect(r.ignoredHeaders).toEqual(["x-forwarded-for"]);
    expect(filter(r.address).action).toBe("deny");
  });

  it("an IPv4-compatible peer ::10.0.0.5 is not the trusted proxy 10.0.0.5", () => {
    const r = resolve({ peer: { address: `::${PROXY}` }, headers: { "x-forwarded-for": FORGED } });
    expect(r.address).toBe(`::a00:5`);
    expect(filter(r.address).action).toBe("deny");
  });

  it.each([
    ["header injection inside a value", { "x-forwarded-for": `${ATTACKER}\r\nX-Real-IP: ${FORGED}` }, "ERR_XFF_SYNTAX"],
    ["two X-Real-IP lines", { "x-real-ip": [FORGED, ATTACKER] }, "ERR_REAL_IP_SYNTAX", "x-real-ip"],
    ["X-Real-IP with a list", { "x-real-ip": `${FORGED}, ${ATTACKER}` }, "ERR_REAL_IP_SYNTAX", "x-real-ip"],
    ["a quote smuggling a second element", { forwarded: `for="${ATTACKER}, for=${FORGED}` }, "ERR_FORWARDED_SYNTAX", "forwarded"],
  ] as const)("%s from the trusted proxy is a typed error, never an address", (_name, headers, code, header?: "x-real-ip" | "forwarded") => {
    try {
      const r = compileRealIp({ trust: [PROXY], header: header ?? "x-forwarded-for" })({ peer: { address: PROXY }, headers: headers as RealIpInput["headers"] });
      throw new Error(`resolved to ${r.address}`);
    } catch (err) {
      expect(err).toBeInstanceOf(TrafficError);
      expect((err as TrafficError).code).toBe(code);
    }
  });

  it("an oversized header from an untrusted peer is not even read", () => {
    const huge = `${"x".repeat(1_000_000)}, ${FORGED}`;
    const r = resolve({ peer: { address: ATTACKER }, headers: { "x-forwarded-for": huge, forwarded: huge } });
    expect(r.address).toBe(ATTACKER);
    expect(r.untrustedHeaders).toBe(true);
  });
});

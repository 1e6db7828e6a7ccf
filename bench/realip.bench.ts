import proxyaddr from "proxy-addr";
import { compileRealIp, RealIpInput } from "../src/realip/resolve";
import { BenchReport, BenchRow, compareOps, ratioRow } from "./harness";

interface Case {
  name: string;
  trust: string[];
  peer: string;
  xff: string;
}

// The same chains and trust lists for both; the peer and each hop must be matched per call.
const CASES: Case[] = [
  { name: "1 hop, trust loopback", trust: ["loopback"], peer: "127.0.0.1", xff: "203.0.113.7" },
  {
    name: "4 hops, 3 trusted CIDRs",
    trust: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
    peer: "10.0.0.1",
    xff: "198.51.100.1, 203.0.113.5, 192.168.1.1, 172.16.4.4",
  },
  { name: "untrusted peer", trust: ["loopback"], peer: "203.0.113.50", xff: "198.51.100.1, 10.0.0.1" },
  { name: "IPv6, 3 hops", trust: ["2001:db8:ffff::/48", "::1"], peer: "::1", xff: "2001:db8::7, 2001:db8:ffff::2, 2001:db8:ffff::1" },
];

export async function run(): Promise<BenchReport> {
  const rows: BenchRow[] = [];
  for (const c of CASES) {
    const resolve = compileRealIp({ trust: c.trust, sources: ["x-forwarded-for"] });
    const trust = proxyaddr.compile(c.trust);
    const headers = { "x-forwarded-for": c.xff };
    const input: RealIpInput = { peer: { address: c.peer }, headers };
    const req = { headers, connection: { remoteAddress: c.peer }, socket: { remoteAddress: c.peer } } as never;
    // Sanity: both must agree before speed means anything.
    const ours = resolve(input).address;
    const theirs = proxyaddr(req, trust);
    if (ours !== theirs) throw new Error(`${c.name}: ours ${ours} != proxy-addr ${theirs}`);
    const r = compareOps({ ours: () => resolve(input), "proxy-addr": () => proxyaddr(req, trust) });
    rows.push(ratioRow(c.name, "resolutions/s", r["ours"]!, "proxy-addr", r["proxy-addr"]!, 2));
  }
  return {
    name: "client address resolution (X-Forwarded-For) vs proxy-addr",
    rows,
    notes: ["ours returns the whole result (chain, trusted hops, ignored sources); proxy-addr returns the address only"],
  };
}

import { encodeProxyHeaderV1, encodeProxyHeaderV2 } from "../src/proxy-protocol/encode";
import { parseProxyHeader } from "../src/proxy-protocol/parse";
import { BenchReport, compareOps } from "./harness";

export async function run(): Promise<BenchReport> {
  const payload = Buffer.from("GET / HTTP/1.1\r\nHost: example.test\r\n\r\n");
  const v1 = Buffer.concat([
    encodeProxyHeaderV1({ source: { address: "203.0.113.10", port: 51000 }, destination: { address: "198.51.100.20", port: 443 } }),
    payload,
  ]);
  const v1v6 = Buffer.concat([
    encodeProxyHeaderV1({ source: { address: "2001:db8::10", port: 51000 }, destination: { address: "2001:db8::20", port: 443 } }),
    payload,
  ]);
  const v2 = Buffer.concat([
    encodeProxyHeaderV2({ source: { address: "203.0.113.10", port: 51000 }, destination: { address: "198.51.100.20", port: 443 } }),
    payload,
  ]);
  const v2tlv = Buffer.concat([
    encodeProxyHeaderV2({
      source: { address: "2001:db8::10", port: 51000 },
      destination: { address: "2001:db8::20", port: 443 },
      alpn: "h2",
      authority: "example.test",
      crc32c: true,
    }),
    payload,
  ]);
  const r = compareOps({
    "v1 TCP4": () => parseProxyHeader(v1),
    "v1 TCP6": () => parseProxyHeader(v1v6),
    "v2 TCP4": () => parseProxyHeader(v2),
    "v2 TCP6 + ALPN, authority, CRC32C": () => parseProxyHeader(v2tlv),
    "not a PROXY header": () => parseProxyHeader(payload),
  });
  return {
    name: "PROXY protocol parsing",
    rows: Object.entries(r).map(([name, ops]) => ({ case: name, unit: "headers/s", ours: ops })),
  };
}

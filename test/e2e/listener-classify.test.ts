import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import type { Node } from "node-red";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import registerNodes from "../../nodes/index";
import { connectionTable } from "../../src/connection-table";
import { freePort } from "../support/net";
import { collect, helper } from "../support/node-red-helper";
import { systemCommand } from "../support/system";
import { until } from "../support/wait";

const curl = systemCommand("curl");
const openssl = systemCommand("openssl");

type Msg = { _session: { id: string }; classification: { protocol: string; rule: string | null; output: number; fields: Record<string, unknown>; bytes: number } };

describe.skipIf(curl.skip || openssl.skip)("real clients through transparent in → classify", () => {
  let port = 0;
  let seen: Record<string, Array<Record<string, unknown>>>;
  const clients: ChildProcess[] = [];

  beforeAll(async () => {
    port = await freePort();
    await helper.load(registerNodes, [
      // A first-byte budget of 8: the classifier must ask the listener for the rest.
      { id: "in", type: "transparent in", port, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 8, sniffTimeout: 1, unclaimedTimeout: 3, unclaimedAction: "close", proxyProtocol: "off", wires: [["cls"]] },
      {
        id: "cls",
        type: "classify",
        input: "auto",
        property: "payload",
        maxBytes: 16384,
        timeoutMs: 3000,
        serverFirstMs: 300,
        rules: [
          { name: "api", protocols: "tls", hosts: "api.example.test" },
          { name: "web", protocols: "http1" },
        ],
        outputs: 3,
        wires: [["api"], ["web"], ["other"]],
      },
      { id: "api", type: "helper" },
      { id: "web", type: "helper" },
      { id: "other", type: "helper" },
    ]);
    seen = collect({ api: helper.getNode("api") as Node, web: helper.getNode("web") as Node, other: helper.getNode("other") as Node });
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) if (c.exitCode === null) c.kill("SIGTERM");
    await helper.unload();
  });

  function run(cmd: string, args: string[]): ChildProcess {
    const child = spawn(cmd, args, { stdio: ["pipe", "ignore", "ignore"] });
    clients.push(child);
    return child;
  }

  async function next(output: "api" | "web" | "other", before: number): Promise<Msg> {
    await until(() => seen[output]!.length > before, `a message on ${output}`, 10_000);
    return seen[output]![before] as unknown as Msg;
  }

  it("curl's HTTP/1 request lands on the http rule, with its host", async () => {
    const n = seen["web"]!.length;
    run(curl.path!, ["-s", "--max-time", "4", "-H", "Host: shop.example.test", `http://127.0.0.1:${port}/cart`]);
    const msg = await next("web", n);
    expect(msg.classification).toMatchObject({ protocol: "http1", rule: "web", output: 1 });
    expect(msg.classification.fields).toMatchObject({ method: "GET", host: "shop.example.test", path: "/cart" });
    expect(msg.classification.bytes).toBeGreaterThan(8);
  });

  it("openssl's ClientHello for api.example.test lands on the SNI rule", async () => {
    const n = seen["api"]!.length;
    run(openssl.path!, ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "api.example.test", "-alpn", "h2,http/1.1"]);
    const msg = await next("api", n);
    expect(msg.classification).toMatchObject({ protocol: "tls", rule: "api" });
    expect(msg.classification.fields).toMatchObject({ sni: "api.example.test", alpn: ["h2", "http/1.1"] });
    // Everything the classifier read stays for replay: a forwarder would send it upstream first.
    const claimed = connectionTable().claim(msg._session.id, "test");
    expect(claimed).toBeDefined();
    expect(claimed!.replay.length).toBeGreaterThanOrEqual(msg.classification.bytes);
    expect(claimed!.replay[0]).toBe(0x16); // a TLS handshake record
    connectionTable().destroy(msg._session.id);
  });

  it("TLS for another name, and bytes nobody knows, go to other: routed, never dropped", async () => {
    const n = seen["other"]!.length;
    run(openssl.path!, ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "www.example.test"]);
    const tls = await next("other", n);
    expect(tls.classification).toMatchObject({ protocol: "tls", rule: null, output: 2 });
    const sock = net.connect(port, "127.0.0.1", () => sock.write(Buffer.from("\x00\x01\x02 not a protocol anyone speaks\n")));
    sock.on("error", () => {});
    const junk = await next("other", n + 1);
    expect(junk.classification.protocol).toBe("unknown");
    sock.destroy();
  });
});

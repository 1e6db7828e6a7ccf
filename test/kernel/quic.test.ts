// A real QUIC client through a real Node-RED gateway: chromium in a client namespace, forced
// onto HTTP/3 for a name resolved to the server namespace's documentation address, sends
// its Initials to 198.51.100.20:443; the gateway (transparent in, protocol udp, TPROXY with
// managed rules → classify by SNI → forward or reject by drop) decides by the ClientHello
// it decrypts from them. A UDP socket on 443 in the server namespace records what reaches
// it: the allowed name's Initials, through the gateway's relay, and none of the rejected
// name's. (No QUIC server is packaged for Debian 12, so the handshake does not complete:
// chromium retransmits its Initials until it is stopped.)
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { classifyDatagrams } from "../../src/classify";
import { IS_ROOT, systemCommand } from "../support/system";
import { ensureBuilt, Namespaces, NdjsonChild, untilGreen } from "../support/netns";
import { toolEnv } from "../rigs/load-rig";

const nft = IS_ROOT ? systemCommand("nft") : { path: null, skip: true };
const chromium = IS_ROOT ? systemCommand("chromium") : { path: null, skip: true };
const PORT = 15443;
const SERVER_IP = "198.51.100.20";
const NODE_RED_CHILD = path.resolve(__dirname, "..", "support", "node-red-child.js");

/** Prints every datagram that reaches 443 on the server's address, with its sender. */
const RECORDER = `
const s = require('dgram').createSocket('udp4');
s.on('message', (m, r) => console.log(JSON.stringify({ event: 'datagram', peer: r.address + ':' + r.port, hex: m.toString('hex') })));
s.bind(443, process.argv[1], () => console.log(JSON.stringify({ event: 'up' })));`;

interface Msg {
  event: string;
  at?: string;
  msg?: { payload?: Record<string, unknown>; classification?: { protocol: string; rule: string | null; fields: Record<string, unknown> } };
}

describe.skipIf(!IS_ROOT || nft.skip || chromium.skip)("chromium's QUIC through the gateway: classified by SNI, then forwarded or dropped", () => {
  const ns = new Namespaces(`tpq${process.pid % 100000}`);
  const children: NdjsonChild[] = [];
  const browsers: ChildProcess[] = [];
  const profiles: string[] = [];
  const namespaces = { tc: "", tg: "", ts: "" };
  /** A child this test ends afterwards (also on failure). */
  const start = (argv: string[]): NdjsonChild => children[children.push(new NdjsonChild(argv)) - 1]!;
  /** Ends a browser this test started: chromium's helper processes share its process group. */
  const stopBrowser = async (b: ChildProcess): Promise<void> => {
    if (b.exitCode !== null || b.signalCode !== null) return;
    const exited = new Promise((r) => b.once("exit", r));
    try {
      process.kill(-b.pid!, "SIGKILL");
    } catch {
      b.kill("SIGKILL");
    }
    await exited;
  };
  /** Headless chromium in the client namespace, forced onto QUIC for `host`, which resolves to the server (every other name to nothing). */
  const browse = (host: string): ChildProcess => {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), "quic-e2e-"));
    profiles.push(profile);
    const b = spawn(
      "ip",
      [
        "netns", "exec", namespaces.tc, chromium.path!,
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", `--user-data-dir=${profile}`, "--enable-quic", `--origin-to-force-quic-on=${host}:443`,
        `--host-resolver-rules=MAP ${host} ${SERVER_IP}, MAP * ~NOTFOUND`, `https://${host}/`,
      ],
      { detached: true, stdio: "ignore", env: toolEnv() },
    );
    browsers.push(b);
    return b;
  };

  beforeAll(() => {
    ensureBuilt();
    ({ client: namespaces.tc, gateway: namespaces.tg, server: namespaces.ts } = ns.gatewayPath("", ["qx", "qy"]));
  });
  afterEach(async () => {
    for (const b of browsers.splice(0)) await stopBrowser(b);
    for (const c of children.splice(0)) {
      c.kill();
      await c.exited();
    }
    for (const p of profiles.splice(0)) fs.rmSync(p, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });
  afterAll(() => {
    ns.cleanup();
  });

  it("an allowed name's Initials reach the server's UDP 443 through forward; a rejected name's never do", async () => {
    const recorder = start(["ip", "netns", "exec", namespaces.ts, process.execPath, "-e", RECORDER, SERVER_IP]);
    await recorder.next(["up"]);
    const red = start(["ip", "netns", "exec", namespaces.tg, process.execPath, NODE_RED_CHILD, JSON.stringify([
      {
        id: "tin", type: "transparent in", port: PORT, protocol: "udp", mode: "tproxy", family: "ipv4", udpIdleTimeout: 2,
        manageRules: true, ruleDestinations: `${SERVER_IP}/32`, rulePorts: "443", wires: [["cls"]],
      },
      {
        id: "cls", type: "classify",
        rules: [{ name: "allowed", protocols: "quic", hosts: "allowed.example" }, { name: "blocked", protocols: "quic", hosts: "blocked.example" }],
        wires: [["fwd", "seen"], ["rej", "seen"], ["rej", "seen"]],
      },
      { id: "fwd", type: "forward", action: "forward", targetType: "original", identity: "none", wires: [[]] },
      { id: "rej", type: "forward", action: "reject", udpRejectMode: "drop", wires: [[]] },
      { id: "seen", type: "helper" },
    ])]);
    await untilGreen(red, "tin");
    /** The gateway's classification of the first session that classify sent on. */
    const classified = async (): Promise<NonNullable<Msg["msg"]>> => {
      for (;;) {
        const m = (await red.next(["message"], 30_000)) as Msg;
        if (m.at === "seen") return m.msg!;
      }
    };
    /** What reached the server so far, by sender (one sender per gateway session: forward binds a socket for each). */
    const received = new Map<string, Buffer[]>();
    /** Takes in what the recorder printed until it is quiet for a moment. */
    const drain = async (): Promise<number> => {
      for (;;) {
        const d = await recorder.next(["datagram"], 500).catch(() => null);
        if (d === null) return [...received.values()].reduce((n, list) => n + list.length, 0);
        received.set(String(d["peer"]), [...(received.get(String(d["peer"])) ?? []), Buffer.from(String(d["hex"]), "hex")]);
      }
    };
    /** What the server received, decrypted by sender: the names in the ClientHellos. */
    const namesAtServer = (): Array<unknown> => [...received.values()].map((datagrams) => {
      const c = classifyDatagrams(datagrams);
      return c.protocol === "quic" ? c.fields.sni : c.protocol;
    });

    // Allowed: classified by its SNI and forwarded; its Initials arrive at the server.
    const allowedBrowser = browse("allowed.example");
    const allowed = await classified();
    expect(allowed.payload).toMatchObject({ protocol: "udp", remoteAddress: "203.0.113.10", originalDst: { address: SERVER_IP, port: 443 } });
    expect(allowed.classification).toMatchObject({ protocol: "quic", rule: "allowed", fields: { sni: "allowed.example", quicVersion: 1 } });
    expect(allowed.classification!.fields["alpn"]).toContain("h3");
    const first = await recorder.next(["datagram"], 15_000);
    // From the gateway's upstream socket (identity none), not straight from the client.
    expect(first["peer"]).toMatch(/^198\.51\.100\.1:\d+$/);
    received.set(String(first["peer"]), [Buffer.from(String(first["hex"]), "hex")]);
    // Chromium retransmits its Initials (nothing answers them); let a few more through, then stop it.
    await new Promise((r) => setTimeout(r, 1500));
    await stopBrowser(allowedBrowser);
    const afterAllowed = await drain();
    // What reached the server is chromium's own Initial, whole: it decrypts to the allowed name.
    expect(new Set(namesAtServer())).toEqual(new Set(["allowed.example"]));

    // Rejected: classified by its SNI too, and dropped; nothing more reaches the server.
    const blockedBrowser = browse("blocked.example");
    const blocked = await classified();
    expect(blocked.classification).toMatchObject({ protocol: "quic", rule: "blocked", fields: { sni: "blocked.example", quicVersion: 1 } });
    expect(blocked.classification!.fields["alpn"]).toContain("h3");
    // As long as the allowed one ran: its retransmissions come to the gateway and stop there.
    await new Promise((r) => setTimeout(r, 1500));
    await stopBrowser(blockedBrowser);
    const afterBlocked = await drain();
    expect(afterBlocked, "datagrams at the server during the rejected name's attempt").toBe(afterAllowed);
    expect(new Set(namesAtServer())).toEqual(new Set(["allowed.example"]));
  }, 120_000);
});

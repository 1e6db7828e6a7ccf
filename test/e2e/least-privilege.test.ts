// Node-RED as a normal user (nobody) with only Linux capabilities, never root, in the
// gateway namespace of a three-namespace network this file builds and removes (also on
// failure): client 203.0.113.10 → gateway → server 198.51.100.20. One flow holds every
// privileged feature; it is started once per capability set of the table below, and each
// row says which features work and what the others show. This is where the README's
// capability table comes from.
import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { clientConnect, ensureBuilt, inNs, Namespaces, NdjsonChild } from "../support/netns";
import { ProbedNodeRed, probe } from "../support/node-red-probe";
import { IS_ROOT, systemCommand } from "../support/system";

const nft = IS_ROOT ? systemCommand("nft") : { path: null, skip: true };
const setpriv = IS_ROOT ? systemCommand("setpriv") : { path: null, skip: true };
const nsenter = IS_ROOT ? systemCommand("nsenter") : { path: null, skip: true };
const ROOT = path.resolve(__dirname, "..", "..");
const NOBODY = { uid: 65534, gid: 65534 };
const SERVER = "198.51.100.20";
const CLIENT = "203.0.113.10";

type Cap = "net_admin" | "net_raw" | "bpf" | "perfmon";

/** setpriv arguments: become nobody, keep exactly `caps` (ambient, so they survive exec into node and into nft/ip). */
function dropTo(caps: readonly Cap[]): string[] {
  const set = ["-all", ...caps.map((c) => `+${c}`)].join(",");
  return [setpriv.path!, "--reuid=nobody", "--regid=nogroup", "--init-groups", `--inh-caps=${set}`, `--ambient-caps=${set}`, `--bounding-set=${set}`, "--"];
}

// The features, each a path through the one flow:
// - tproxy: `transparent in` TPROXY with its own nft table and policy routes (port 80) →
//   `forward` keeping the client's address (IP_TRANSPARENT bind).
// - redirect: `transparent in` REDIRECT with its own nft table (port 81) → `original dst` →
//   `forward` to the original destination.
// - ebpf: `flow source` in eBPF mode with the first 16 payload bytes of each direction.
// - redirect-operator: REDIRECT rules the operator installed (port 82) → `forward`.
// - tproxy-operator: TPROXY rules the operator installed (port 83) → `forward` keeping the
//   client's address.
// - preserve: REDIRECT rules the operator installed (port 84) → `forward` keeping the
//   client's address (only the upstream bind needs a capability).
// - flow auto: a `flow source` in auto mode, which falls back to sock_diag.
const flow: object[] = [
  { id: "tin-tp", type: "transparent in", port: 15001, family: "ipv4", mode: "tproxy", sniffBytes: 0, unclaimedTimeout: 5, manageRules: true, ruleDestinations: `${SERVER}/32`, rulePorts: "80", wires: [["fw-tp"]] },
  { id: "fw-tp", type: "forward", action: "forward", targetType: "original", identity: "transparent", connectTimeout: 5, wires: [["probe-fw-tp"]] },
  { id: "tin-rd", type: "transparent in", port: 15002, family: "ipv4", mode: "redirect", sniffBytes: 0, unclaimedTimeout: 5, manageRules: true, ruleDestinations: `${SERVER}/32`, rulePorts: "81", wires: [["od"]] },
  { id: "od", type: "original dst", method: "auto", property: "originalDst", wires: [["fw-rd", "probe-od"]] },
  { id: "fw-rd", type: "forward", action: "forward", targetType: "original", identity: "none", connectTimeout: 5, wires: [["probe-fw-rd"]] },
  { id: "flow", type: "flow source", mode: "ebpf", eventOpen: false, eventClose: true, ports: "80, 81, 82, 83", firstBytes: 16, delivery: "event", wires: [["probe-flow"]] },
  { id: "tin-rd2", type: "transparent in", port: 15003, family: "ipv4", mode: "redirect", sniffBytes: 0, unclaimedTimeout: 5, wires: [["fw-rd2"]] },
  { id: "fw-rd2", type: "forward", action: "forward", targetType: "original", identity: "none", connectTimeout: 5, wires: [["probe-fw-rd2"]] },
  { id: "tin-tp2", type: "transparent in", port: 15004, family: "ipv4", mode: "tproxy", sniffBytes: 0, unclaimedTimeout: 5, wires: [["fw-tp2"]] },
  { id: "fw-tp2", type: "forward", action: "forward", targetType: "original", identity: "transparent", connectTimeout: 5, wires: [["probe-fw-tp2"]] },
  { id: "tin-rd3", type: "transparent in", port: 15005, family: "ipv4", mode: "redirect", sniffBytes: 0, unclaimedTimeout: 5, wires: [["fw-tp3"]] },
  { id: "fw-tp3", type: "forward", action: "forward", targetType: "original", identity: "transparent", connectTimeout: 5, wires: [["probe-fw-tp3"]] },
  { id: "flow-auto", type: "flow source", mode: "auto", eventOpen: false, eventClose: true, ports: "9", delivery: "event", wires: [[]] },
  probe("fw-tp3"),
  probe("fw-tp"),
  probe("od"),
  probe("fw-rd"),
  probe("flow"),
  probe("fw-rd2"),
  probe("fw-tp2"),
];

type Outcome = "works" | { node: string; fill: "red" | "yellow"; text: string; error: RegExp | null };
interface Row {
  readonly caps: readonly Cap[];
  readonly tproxy: Outcome;
  readonly redirect: Outcome;
  readonly ebpf: Outcome;
  readonly redirectOperator: Outcome;
  readonly tproxyOperator: Outcome;
  /** Whether source preservation works (REDIRECT in, transparent bind out). */
  readonly preserve: boolean;
  /** Whether the auto-mode flow source runs on eBPF (else sock_diag). */
  readonly autoEbpf: boolean;
}

const noNetAdmin = (node: string): Outcome => ({ node, fill: "red", text: "no CAP_NET_ADMIN", error: /CAP_NET_ADMIN/ });
const ALL: readonly Cap[] = ["net_admin", "net_raw", "bpf", "perfmon"];

// Measured on kernel 6.18: CAP_NET_RAW is accepted instead of CAP_NET_ADMIN for
// IP_TRANSPARENT and SO_MARK, so it is not needed when CAP_NET_ADMIN is there; nft and
// `ip rule` need CAP_NET_ADMIN; tp_btf programs need CAP_PERFMON besides CAP_BPF; the
// cgroup_skb programs for first bytes need CAP_NET_ADMIN.
const TABLE: readonly Row[] = [
  { caps: ALL, tproxy: "works", redirect: "works", ebpf: "works", redirectOperator: "works", tproxyOperator: "works", preserve: true, autoEbpf: true },
  { caps: ["net_admin", "bpf", "perfmon"], tproxy: "works", redirect: "works", ebpf: "works", redirectOperator: "works", tproxyOperator: "works", preserve: true, autoEbpf: true },
  {
    caps: ["net_raw", "bpf", "perfmon"],
    tproxy: noNetAdmin("tin-tp"),
    redirect: noNetAdmin("tin-rd"),
    ebpf: { node: "flow", fill: "yellow", text: "no CAP_NET_ADMIN", error: null },
    redirectOperator: "works",
    tproxyOperator: "works",
    preserve: true,
    autoEbpf: true,
  },
  { caps: ["net_admin", "net_raw", "perfmon"], tproxy: "works", redirect: "works", ebpf: { node: "flow", fill: "red", text: "no CAP_BPF", error: /CAP_BPF/ }, redirectOperator: "works", tproxyOperator: "works", preserve: true, autoEbpf: false },
  { caps: ["net_admin", "net_raw", "bpf"], tproxy: "works", redirect: "works", ebpf: { node: "flow", fill: "red", text: "no CAP_PERFMON", error: /CAP_PERFMON/ }, redirectOperator: "works", tproxyOperator: "works", preserve: true, autoEbpf: false },
  {
    caps: [],
    tproxy: noNetAdmin("tin-tp"),
    redirect: noNetAdmin("tin-rd"),
    ebpf: { node: "flow", fill: "red", text: "no CAP_BPF+PERFMON", error: /CAP_BPF/ },
    redirectOperator: "works",
    tproxyOperator: noNetAdmin("tin-tp2"),
    preserve: false,
    autoEbpf: false,
  },
];

interface Summary {
  end: string;
  identity: string;
  bytesToUpstream: number;
  bytesToClient: number;
}

describe.skipIf(!IS_ROOT || nft.skip || setpriv.skip || nsenter.skip)("least privilege: Node-RED as nobody with only capabilities", () => {
  const ns = new Namespaces(`tpp${process.pid % 100000}`);
  let tc = "";
  let tg = "";
  let ts = "";
  let servers: NdjsonChild | null = null;
  let red: ProbedNodeRed | null = null;

  beforeAll(async () => {
    ensureBuilt();
    // nobody must reach the node binary, this checkout and its node_modules.
    for (const p of [process.execPath, path.join(ROOT, "dist", "nodes", "index.js"), path.join(ROOT, "node_modules", "node-red", "red.js"), path.join(ROOT, "build", "Release", "traffic_native.node")]) {
      fs.accessSync(p, fs.constants.R_OK);
      expect(fs.statSync(p).mode & 0o004, `${p} is not world-readable`).not.toBe(0);
    }
    tc = ns.add("c");
    tg = ns.add("g");
    ts = ns.add("s");
    ns.link(tc, `${CLIENT}/24`, tg, "203.0.113.1/24", "lx");
    ns.link(tg, "198.51.100.1/24", ts, `${SERVER}/24`, "ly");
    inNs(tc, "ip", ["route", "add", "default", "via", "203.0.113.1"]);
    inNs(ts, "ip", ["route", "add", "default", "via", "198.51.100.1"]);
    // No forwarding: a connection reaches the server only through the gateway's sockets.
    inNs(tg, "sysctl", ["-qw", "net.ipv4.ip_forward=0"]);
    // The operator's own rules for ports 82 (REDIRECT) and 83 (TPROXY, with the policy
    // route that delivers marked packets to local sockets).
    inNs(
      tg,
      "nft",
      ["-f", "-"],
      `table inet tpl_operator {
  chain nat { type nat hook prerouting priority dstnat; policy accept;
    ip daddr ${SERVER} tcp dport 82 redirect to :15003
    ip daddr ${SERVER} tcp dport 84 redirect to :15005
  }
  chain mangle { type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set 1 accept
    ip daddr ${SERVER} tcp dport 83 tproxy ip to :15004 meta mark set 1 accept
  }
}
`,
    );
    inNs(tg, "ip", ["rule", "add", "fwmark", "1", "lookup", "100"]);
    inNs(tg, "ip", ["route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"]);
    // A server on the server's one address answering each connection with the peer it saw.
    const code = `const net=require('net');let up=0;for(const p of [80,81,82,83,84])net.createServer((c)=>{c.on('error',()=>{});c.on('data',()=>{});c.end(JSON.stringify({peer:c.remoteAddress})+'\\n')}).listen(p,'${SERVER}',()=>{if(++up===5)console.log(JSON.stringify({event:'up'}))})`;
    servers = new NdjsonChild(["ip", "netns", "exec", ts, process.execPath, "-e", code]);
    await servers.next(["up"]);
  }, 60_000);

  afterEach(async () => {
    await red?.stop();
    red = null;
  });

  afterAll(async () => {
    await red?.stop();
    servers?.kill();
    // Deleting the namespaces removes their veths, nft tables, rules and routes.
    ns.cleanup();
  });

  /** One client connection from the client namespace to the server's port; what the server said it saw. */
  function dial(port: number): { error: string | null; peer: string | null } {
    const r = clientConnect(tc, { host: SERVER, port, send: "hello-privilege", timeoutMs: 5000 });
    let peer: string | null = null;
    try {
      peer = (JSON.parse(r.response) as { peer: string }).peer;
    } catch {
      peer = null;
    }
    return { error: r.error, peer };
  }

  async function summaryOf(name: string, before: number): Promise<Summary> {
    const line = await red!.until(() => red!.messages(name)[before], `a forward summary at ${name}`);
    return line.payload as Summary;
  }

  async function expectRefused(outcome: Exclude<Outcome, "works">): Promise<void> {
    const status = await red!.until(() => {
      const s = red!.status(outcome.node);
      return s && s.text !== "starting" && !/^ebpf( · |$)/.test(String(s.text)) ? s : null;
    }, `the status of ${outcome.node}`);
    // A flow source adds event counts after ` · ` once events came: the reason leads.
    expect({ fill: status.fill, text: String(status.text).split(" · ")[0] }).toEqual({ fill: outcome.fill, text: outcome.text });
    if (outcome.error !== null) {
      const errors = await red!.until(() => (red!.errors(outcome.node).length > 0 ? red!.errors(outcome.node) : null), `a caught error from ${outcome.node}`);
      expect(errors[0]!.message).toMatch(outcome.error);
    }
  }

  for (const row of TABLE) {
    const label = row.caps.length === 0 ? "no capabilities" : row.caps.map((c) => `CAP_${c.toUpperCase()}`).join(" + ");
    it(`${label}: each feature works or says which capability it lacks`, async () => {
      red = await ProbedNodeRed.start(flow, { wrap: [nsenter.path!, `--net=/run/netns/${tg}`, ...dropTo(row.caps)], owner: NOBODY });
      // The process is nobody and holds exactly these capabilities.
      const procStatus = fs.readFileSync(`/proc/${red.child.pid}/status`, "utf8");
      expect(/^Uid:\s+(\d+)/m.exec(procStatus)![1]).toBe(String(NOBODY.uid));
      const bits = row.caps.reduce((b, c) => b | (1n << BigInt({ net_admin: 12, net_raw: 13, perfmon: 38, bpf: 39 }[c])), 0n);
      expect(BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(procStatus)![1]}`)).toBe(bits);

      // Listeners whose start needs no privilege first: they must be up in every row.
      expect(await red.settledStatus("tin-rd2")).toMatchObject({ fill: "green" });

      // TPROXY with managed rules, forwarding with the client's own address.
      if (row.tproxy === "works") {
        expect(await red.settledStatus("tin-tp")).toMatchObject({ fill: "green", text: "tproxy :15001 nft · 0 live" });
        const r = dial(80);
        expect(r).toEqual({ error: null, peer: CLIENT });
        expect(await summaryOf("fw-tp", 0)).toMatchObject({ end: "closed", identity: "transparent", bytesToUpstream: 15 });
      } else await expectRefused(row.tproxy);

      // REDIRECT with managed rules: original dst reads the address the client dialled.
      if (row.redirect === "works") {
        expect(await red.settledStatus("tin-rd")).toMatchObject({ fill: "green", text: "redirect :15002 nft · 0 live" });
        const r = dial(81);
        expect(r).toEqual({ error: null, peer: "198.51.100.1" });
        const od = await red.until(() => red!.messages("od")[0], "original dst");
        expect((od.payload as { originalDst: object }).originalDst).toMatchObject({ address: SERVER, port: 81, method: "so_original_dst" });
        expect(await summaryOf("fw-rd", 0)).toMatchObject({ end: "closed", identity: "none", bytesToUpstream: 15 });
      } else await expectRefused(row.redirect);

      // The operator's REDIRECT rules: no capability needed at all.
      expect(row.redirectOperator).toBe("works");
      expect(dial(82)).toEqual({ error: null, peer: "198.51.100.1" });
      expect(await summaryOf("fw-rd2", 0)).toMatchObject({ end: "closed", bytesToUpstream: 15 });

      // The operator's TPROXY rules: the listener and the transparent bind need CAP_NET_ADMIN or CAP_NET_RAW.
      if (row.tproxyOperator === "works") {
        expect(await red.settledStatus("tin-tp2")).toMatchObject({ fill: "green" });
        expect(dial(83)).toEqual({ error: null, peer: CLIENT });
        expect(await summaryOf("fw-tp2", 0)).toMatchObject({ end: "closed", identity: "transparent", bytesToUpstream: 15 });
      } else await expectRefused(row.tproxyOperator);

      // Source preservation behind the operator's REDIRECT: the listener needs nothing, the
      // upstream bind CAP_NET_ADMIN or CAP_NET_RAW; without, the client is closed and forward says why.
      {
        const r = dial(84);
        const summary = await summaryOf("fw-tp3", 0);
        if (row.preserve) {
          expect(r).toEqual({ error: null, peer: CLIENT });
          expect(summary).toMatchObject({ end: "closed", identity: "transparent", bytesToUpstream: 15 });
        } else {
          expect(r.peer).toBeNull();
          expect([null, "ECONNRESET"]).toContain(r.error);
          expect(summary).toMatchObject({ end: "connect-failed", error: { code: "EPERM" } });
          const caught = await red.until(() => red!.errors("fw-tp3")[0], "a caught error from fw-tp3");
          expect(caught.message).toMatch(/EPERM: .*CAP_NET_ADMIN \(or CAP_NET_RAW\)/);
          expect(await red.until(() => red!.status("fw-tp3")?.fill === "yellow" && red!.status("fw-tp3"), "the status of fw-tp3")).toMatchObject({ text: "no CAP_NET_ADMIN" });
        }
      }

      // A flow source in auto mode runs on eBPF when it may, else on sock_diag, and says why.
      // Without CAP_NET_ADMIN the sock_ops close hook is off, and the node says so.
      if (row.autoEbpf && row.caps.includes("net_admin")) expect(await red.settledStatus("flow-auto")).toMatchObject({ fill: "green", text: "ebpf" });
      else if (row.autoEbpf) {
        expect(await red.settledStatus("flow-auto")).toMatchObject({ fill: "yellow", text: "no CAP_NET_ADMIN" });
        expect(red.log()).toMatch(/\[warn\] \[flow source:flow-auto\] eBPF capture runs without: sock_ops close hook off \(needs CAP_NET_ADMIN\)/);
      } else {
        expect(await red.settledStatus("flow-auto")).toMatchObject({ fill: "blue", text: "sockdiag" });
        expect(red.log()).toMatch(/\[warn\] \[flow source:flow-auto\] eBPF capture unavailable, using sock_diag: .*CAP_BPF \+ CAP_PERFMON/);
      }

      // eBPF flow source: close events of this run's connections; first bytes with CAP_NET_ADMIN.
      if (row.ebpf === "works" || row.ebpf.fill === "yellow") {
        if (row.ebpf === "works") expect(await red.settledStatus("flow")).toMatchObject({ fill: "green", text: expect.stringMatching(/^ebpf( · |$)/) });
        else await expectRefused(row.ebpf);
        // The gateway's upstream socket of the operator-REDIRECT connection (dialled in every row).
        const close = await red.until(
          () =>
            red!.messages("flow").find((m) => {
              const e = m.payload as { type: string; side: string; remoteIp: string; remotePort: number };
              return e.type === "flow-close" && e.side === "client" && e.remoteIp === SERVER && e.remotePort === 82;
            }),
          "the flow-close event of the upstream connection to port 82",
        );
        const event = close.payload as { source: string; bytesSent: number; firstBytes?: { sent?: string; received?: string } };
        expect(event.source).toBe("ebpf");
        expect(event.bytesSent).toBe(15);
        if (row.ebpf === "works") {
          expect(Buffer.from(event.firstBytes!.sent!, "base64").toString()).toBe("hello-privilege");
          expect(Buffer.from(event.firstBytes!.received!, "base64").toString()).toBe('{"peer":"198.51.');
        } else {
          expect(event.firstBytes).toBeUndefined();
          expect(red.log()).toMatch(/\[warn\] \[flow source:flow\] eBPF capture runs without: .*CAP_NET_ADMIN/);
        }
      } else await expectRefused(row.ebpf);

      expect(red.running()).toBe(true);
      await red.stop();
      red = null;
      // Managed rules are gone again after a clean stop.
      expect(inNs(tg, "nft", ["list", "tables"])).not.toMatch(/traffic_policy_/);
    }, 120_000);
  }
});


// Shadow mode in a Node-RED runtime: the same recorded ClientHellos, from the same source
// addresses, replayed through an enforcing flow and a shadow flow (transparent in → ip
// filter → classify → forward or reject). The shadow flow must report the verdicts the
// enforcing flow carries out, and drop nothing.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import registerAll from "../../nodes/index";
import { classifyBytes } from "../../src/classify";
import type { PolicyVerdictEvent } from "../../src/events";
import { policyVerdictsOf } from "../../src/policy/verdict";
import { vector } from "../support/classify-vectors";
import { assertValidEvent } from "../support/events";
import { answeringUpstream, freePort } from "../support/net";
import { collect, helper, onCall } from "../support/node-red-helper";
import { until } from "../support/wait";

type Msg = Record<string, unknown>;

const servers: net.Server[] = [];
/** An upstream that answers "UP" (answeringUpstream), closed after the test. */
async function upstream(): Promise<{ port: number; count: () => number }> {
  const up = await answeringUpstream();
  servers.push(up.server);
  return up;
}

/** Replays a recorded client from `from`; resolves with what it got back ("UP" when forwarded, "" when closed on it). */
function replay(port: number, from: string, segments: readonly Buffer[]): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ port, host: "127.0.0.1", localAddress: from }, () => {
      for (const seg of segments) s.write(seg);
    });
    const timer = setTimeout(() => s.destroy(), 4000);
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", () => undefined);
    s.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString());
    });
  });
}

const WARM_UP = "127.0.1.200";
const OLD_TLS = classifyBytes(vector("openssl-s_client-tls12").bytes).fields.ja4!;

/** One policy flow; `shadow` sets every enforcement point to shadow. */
function policyFlow(p: string, port: number, up: number, shadow: boolean): Array<Record<string, unknown>> {
  const enforcement = shadow ? "shadow" : "enforce";
  return [
    { id: `${p}in`, type: "transparent in", port, address: "127.0.0.1", family: "ipv4", mode: "plain", sniffBytes: 16, sniffTimeout: 1, unclaimedTimeout: 5, unclaimedAction: "close", wires: [[`${p}ipf`]] },
    {
      id: `${p}ipf`,
      type: "ip filter",
      name: "sources",
      property: "payload.remoteAddress",
      propertyType: "msg",
      rules: [
        { name: "blocked range", action: "deny", vt: "cidr", v: "127.0.2.0/24" },
        { name: "loopback", action: "allow", vt: "cidr", v: "loopback" },
      ],
      outputMode: "allow-deny",
      noMatch: "deny",
      enforcement,
      outputs: 2,
      wires: [[`${p}cls`], [`${p}rejIp`]],
    },
    {
      id: `${p}cls`,
      type: "classify",
      name: "clients",
      input: "auto",
      property: "payload",
      timeoutMs: 2000,
      rules: [{ name: "old tls client", fingerprints: OLD_TLS }, { name: "tls", protocols: "tls" }],
      outputs: 3,
      wires: [[`${p}rejFp`], [`${p}fwd`], [`${p}fwd`]],
    },
    { id: `${p}fwd`, type: "forward", name: "upstream", action: "forward", targetType: "fixed", host: "127.0.0.1", port: up, wires: [[`${p}out`]] },
    // In shadow mode a reject node forwards instead, to its target.
    { id: `${p}rejIp`, type: "forward", name: "reject sources", action: "reject", rejectMode: "fin", targetType: "fixed", host: "127.0.0.1", port: up, enforcement, wires: [[`${p}out`]] },
    { id: `${p}rejFp`, type: "forward", name: "reject old tls", action: "reject", rejectMode: "fin", targetType: "fixed", host: "127.0.0.1", port: up, enforcement, wires: [[`${p}out`]] },
    { id: `${p}out`, type: "helper" },
  ];
}

/** What enforcement does to a connection: its first deny or reject, by node name, rule and reason. */
function decisive(verdicts: PolicyVerdictEvent[]): { node?: string; verdict: string; rule: string | null; reason: string } | null {
  const v = verdicts.find((x) => x.verdict === "deny" || x.verdict === "reject");
  return v === undefined ? null : { node: v.nodeName, verdict: v.verdict, rule: v.rule, reason: v.reason };
}

describe("shadow mode against enforce mode in a Node-RED runtime", () => {
  afterEach(async () => {
    await helper.unload();
    for (const s of servers.splice(0)) s.close();
  });

  it("the same recorded traffic gets identical verdicts, and the shadow flow drops nothing", async () => {
    const upE = await upstream();
    const upS = await upstream();
    const portE = await freePort();
    const portS = await freePort();
    await helper.load(registerAll, [...policyFlow("e", portE, upE.port, false), ...policyFlow("s", portS, upS.port, true)]);
    const seen = collect({ e: helper.getNode("eout"), s: helper.getNode("sout") });
    const statuses: Record<string, string[]> = {};
    for (const id of ["sipf", "srejIp", "srejFp"]) {
      statuses[id] = [];
      onCall(helper.getNode(id), "status", (st) => statuses[id]!.push(String((st as { text?: unknown }).text)));
    }
    // The recorded real clients, each from its own source address; two from the blocked range.
    const clients = ["curl-https", "chromium", "openssl-s_client", "openssl-s_client-tls12", "curl-http1", "openssl-s_client-tls12", "curl-https"];
    const traffic = clients.map((name, i) => ({ name, from: i >= 5 ? `127.0.2.${i}` : `127.0.1.${i + 1}`, segments: vector(name).segments }));
    // The listeners start asynchronously: wait until each one takes a connection.
    for (const port of [portE, portS]) {
      for (let i = 0; i < 50; i++) {
        if ((await replay(port, WARM_UP, vector("curl-http1").segments)) === "UP") break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const got: Record<string, { e: string; s: string }> = {};
    for (const t of traffic) {
      got[t.from] = { e: await replay(portE, t.from, t.segments), s: await replay(portS, t.from, t.segments) };
    }
    const settled = (flow: "e" | "s") => seen[flow]!.filter((m) => (m["ipFilter"] as Msg)["value"] !== WARM_UP).length >= traffic.length;
    await until(() => settled("e") && settled("s"), "a summary per connection", 8000);
    const warm = { e: seen["e"]!.length - traffic.length, s: seen["s"]!.length - traffic.length };

    const verdictsBy = (flow: "e" | "s"): Map<string, PolicyVerdictEvent[]> => {
      const map = new Map<string, PolicyVerdictEvent[]>();
      for (const m of seen[flow]!) {
        const from = String((m["ipFilter"] as Msg)["value"]);
        if (from !== WARM_UP) map.set(from, policyVerdictsOf(m));
      }
      return map;
    };
    const e = verdictsBy("e");
    const s = verdictsBy("s");
    expect([...e.keys()].sort()).toEqual(traffic.map((t) => t.from).sort());
    const blocked = traffic.filter((t) => t.from.startsWith("127.0.2.") || t.name === "openssl-s_client-tls12").map((t) => t.from);
    for (const t of traffic) {
      const ve = e.get(t.from)!;
      const vs = s.get(t.from)!;
      for (const v of [...ve, ...vs]) assertValidEvent(v);
      expect(ve.every((v) => v.mode === "enforce")).toBe(true);
      // classify enforces its routing in both flows; the enforcement points are shadowed.
      expect(vs.every((v) => v.mode === (v.nodeType === "classify" ? "enforce" : "shadow"))).toBe(true);
      // What the shadow flow says enforcement would do is what the enforcing flow did.
      expect({ from: t.from, verdict: decisive(vs) }).toEqual({ from: t.from, verdict: decisive(ve) });
      expect(decisive(ve) !== null).toBe(blocked.includes(t.from));
      // Enforced: a blocked client is closed on, the rest reach the upstream; shadow: all do.
      expect({ from: t.from, enforce: got[t.from]!.e, shadow: got[t.from]!.s }).toEqual({ from: t.from, enforce: blocked.includes(t.from) ? "" : "UP", shadow: "UP" });
    }
    expect(decisive(e.get("127.0.2.5")!)).toMatchObject({ node: "sources", verdict: "deny", rule: "blocked range" });
    expect(decisive(e.get("127.0.1.4")!)).toMatchObject({ node: "reject old tls", verdict: "reject", rule: "old tls client" });
    // Nothing dropped: every shadow connection reached the upstream (warm-up included).
    expect(upS.count()).toBe(traffic.length + warm.s);
    expect(upE.count()).toBe(traffic.length - blocked.length + warm.e);
    // Per-rule counters: the ip filter's denies per rule (then the no-match default), the rejects.
    // (the blocked-range client with the old TLS stack passes the shadow ip filter and reaches the reject too).
    await until(() => statuses["sipf"]!.at(-1) === "shadow · would deny 2/0/0", "ip filter status", 3000);
    await until(() => statuses["srejFp"]!.some((x) => x.startsWith("shadow · would reject 2")), "reject status", 3000);
    expect(statuses["srejIp"]!.some((x) => x.startsWith("shadow · would reject") && !x.startsWith("shadow · would reject 0"))).toBe(false);
  });
});

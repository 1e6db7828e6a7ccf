import type { Node } from "node-red";
import { afterEach, describe, expect, it } from "vitest";
import registerIpFilter from "../../nodes/ip-filter/ip-filter";
import { collect, helper, onCall } from "../support/node-red-helper";
import { until } from "../support/wait";

type Msg = Record<string, unknown>;
type Receiver = Node & { receive(m: Msg): void };

const RULES = [
  { name: "blocked", action: "deny", vt: "cidr", v: "203.0.113.0/24, 2001:db8:bad::/48" },
  { name: "internal", action: "allow", vt: "cidr", v: "private loopback" },
];

async function load(config: Record<string, unknown>, outputs: number) {
  const wires = Array.from({ length: outputs }, (_, i) => [`o${i}`]);
  await helper.load(registerIpFilter, [
    { id: "f", type: "ip filter", wires, property: "clientIp", rules: RULES, ...config },
    ...wires.map(([id]) => ({ id, type: "helper" })),
  ]);
  const outs: Record<string, Node> = {};
  for (let i = 0; i < outputs; i++) outs[`o${i}`] = helper.getNode(`o${i}`);
  return collect(outs);
}

describe("ip filter node in a Node-RED runtime", () => {
  afterEach(async () => {
    delete process.env["TRAFFIC_TEST_ALLOW"];
    await helper.unload();
  });

  it("routes to one output per rule plus no match", async () => {
    const seen = await load({ outputMode: "rules" }, 3);
    const f = helper.getNode("f") as Receiver;
    for (const ip of ["203.0.113.5", "::ffff:10.2.3.4", "198.51.100.1", "2001:db8:bad::1", "127.0.0.1", null, "junk"]) {
      f.receive({ clientIp: ip });
    }
    await until(() => seen["o0"]!.length + seen["o1"]!.length + seen["o2"]!.length === 7, "7 messages", 3000);
    expect(seen["o0"]!.map((m) => m["clientIp"])).toEqual(["203.0.113.5", "2001:db8:bad::1"]);
    expect(seen["o1"]!.map((m) => m["clientIp"])).toEqual(["::ffff:10.2.3.4", "127.0.0.1"]);
    expect(seen["o2"]!.map((m) => m["clientIp"])).toEqual(["198.51.100.1", null, "junk"]);
    expect(seen["o1"]![0]!["ipFilter"]).toMatchObject({ index: 1, rule: "internal", action: "allow", address: "10.2.3.4" });
  });

  it("sends allowed and denied to two outputs, unmatched per the no-match setting", async () => {
    const seen = await load({ outputMode: "allow-deny", noMatch: "deny" }, 2);
    const f = helper.getNode("f") as Receiver;
    for (const ip of ["10.0.0.1", "203.0.113.1", "198.51.100.1", undefined]) f.receive(ip === undefined ? {} : { clientIp: ip });
    await until(() => seen["o0"]!.length + seen["o1"]!.length === 4, "4 messages", 3000);
    expect(seen["o0"]!.map((m) => m["clientIp"])).toEqual(["10.0.0.1"]);
    expect(seen["o1"]!.map((m) => m["clientIp"])).toEqual(["203.0.113.1", "198.51.100.1", undefined]);
  });

  it("says in its status what its counts are: allowed, denied, and those no rule matched", async () => {
    await load({ outputMode: "allow-deny", noMatch: "deny" }, 2);
    const f = helper.getNode("f") as Receiver;
    const texts: string[] = [];
    onCall(f, "status", (st) => texts.push(String((st as { text?: string }).text)));
    for (const ip of ["10.0.0.1", "127.0.0.1", "203.0.113.1", "198.51.100.1", "junk"]) f.receive({ clientIp: ip });
    await until(() => texts.at(-1) === "allowed 2 · denied 3 · no match 2", `status "allowed 2 · denied 3 · no match 2", last ${texts.at(-1)}`, 3000);
  });

  it("lets unmatched addresses pass when no match is allow", async () => {
    const seen = await load({ outputMode: "allow-deny", noMatch: "allow" }, 2);
    (helper.getNode("f") as Receiver).receive({ clientIp: "198.51.100.1" });
    await until(() => seen["o0"]!.length === 1, "allowed message", 3000);
    expect(seen["o1"]).toHaveLength(0);
  });

  it("reads a rule's list from an environment variable at deploy", async () => {
    process.env["TRAFFIC_TEST_ALLOW"] = "198.51.100.0/24,2001:db8::/32";
    const rules = [{ name: "partners", action: "allow", vt: "env", v: "TRAFFIC_TEST_ALLOW" }];
    const seen = await load({ outputMode: "allow-deny", rules }, 2);
    const f = helper.getNode("f") as Receiver;
    f.receive({ clientIp: "198.51.100.7" });
    f.receive({ clientIp: "2001:db8::9" });
    f.receive({ clientIp: "192.0.2.1" });
    await until(() => seen["o0"]!.length + seen["o1"]!.length === 3, "3 messages", 3000);
    expect(seen["o0"]!.map((m) => m["clientIp"])).toEqual(["198.51.100.7", "2001:db8::9"]);
  });

  it("fails closed on a bad rule: nothing passes, every message errors", async () => {
    const rules = [{ name: "typo", action: "allow", vt: "cidr", v: "10.0.0.0/33" }];
    const seen = await load({ outputMode: "allow-deny", rules }, 2);
    const f = helper.getNode("f") as Receiver;
    const errors: unknown[] = [];
    onCall(f, "error", (e) => errors.push(e));
    f.receive({ clientIp: "10.0.0.1" });
    await until(() => errors.length > 0, "error", 3000);
    expect(String(errors[errors.length - 1])).toMatch(/typo/);
    expect(seen["o0"]!.length + seen["o1"]!.length).toBe(0);
  });

  it("fails closed when an environment list is not set", async () => {
    const rules = [{ name: "partners", action: "allow", vt: "env", v: "TRAFFIC_TEST_UNSET_VAR" }];
    const seen = await load({ outputMode: "allow-deny", rules }, 2);
    const f = helper.getNode("f") as Receiver;
    let error: unknown;
    onCall(f, "error", (e) => (error = e));
    f.receive({ clientIp: "10.0.0.1" });
    await until(() => error !== undefined, "error", 3000);
    expect(String(error)).toMatch(/TRAFFIC_TEST_UNSET_VAR is not set/);
    expect(seen["o0"]!.length + seen["o1"]!.length).toBe(0);
  });
});

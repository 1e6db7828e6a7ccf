/**
 * The `classify` node in a real Node-RED (scripts/node-red-env.js, this package loaded as
 * an installed module), three ways in alternating rounds: host rules without fingerprints
 * (the node's default), the same rules with JA4, JA3 and the JA3 hash in every message's
 * fields, and a JA4 rule before the host rules. What fingerprints cost a flow that
 * classifies ClientHellos, as against the sniffer chain alone in classify.bench.ts.
 *
 * The flow: an HTTP endpoint starts a round; a function node sends the hello N times
 * (uncloned) into one of the classify nodes; a counting function node answers the request
 * when the Nth classification arrives, with the time taken, how many the first rule took
 * and how many carried a JA4.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT } from "../test/rigs/root";
import { median } from "./harness";
import { freePort } from "../test/rigs/free-port";

/** Messages a round, and rounds of each way after the warm-up. */
export const MESSAGES = 5_000;
export const ROUNDS = 31;

interface NodeRedEnv {
  prepareUserDir(dir: string, options: { port: number; flows: object[] }): void;
  startNodeRed(dir: string, options: { port: number; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<{ child: import("node:child_process").ChildProcess; url: string; log(): string }>;
  stopNodeRed(child: import("node:child_process").ChildProcess, timeoutMs?: number): Promise<void>;
}


/** One way of classifying in the bench flow: host rules alone, the same with fingerprints in the fields, or a JA4 rule first. */
export type ClassifyWay = "without" | "fields" | "ja4";
const WAYS: readonly ClassifyWay[] = ["without", "fields", "ja4"];

// The generator's outputs are wired to the classify nodes in the order of WAYS.
const GENERATE = `
const n = Number(msg.req.query.n);
const to = ${JSON.stringify(WAYS)}.indexOf(msg.req.query.to);
flow.set("round", { reply: msg, n, seen: 0, first: 0, ja4: 0, start: Date.now() });
for (let i = 0; i < n; i++) {
  const out = ${JSON.stringify(WAYS.map(() => null))};
  out[to] = { payload: HELLO };
  node.send(out, false);
}
return null;`;

const COUNT = `
const r = flow.get("round");
r.seen++;
if (msg.classification.output === 0) r.first++;
if (msg.classification.fields.ja4 !== undefined) r.ja4++;
if (r.seen < r.n) return null;
const reply = r.reply;
reply.payload = { ms: Date.now() - r.start, first: r.first, ja4: r.ja4 };
return reply;`;

function benchFlow(hello: Buffer, ja4Prefix: string): object[] {
  const z = "classify-bench";
  const hostRule = { name: "web", protocols: "tls", hosts: "example.test, *.example.test" };
  const classify = (id: string, rules: object[], tlsFingerprints: "rules" | "fields") => ({ id: `${z}-${id}`, z, type: "classify", name: `${id}`, input: "auto", property: "payload", tlsFingerprints, rules, outputs: rules.length + 1, wires: rules.map(() => [`${z}-count`]).concat([[`${z}-count`]]) });
  const fn = (id: string, func: string, outputs: number, wires: string[][], initialize = "") => ({ id: `${z}-${id}`, z, type: "function", name: `${id}`, func, outputs, timeout: 0, noerr: 0, initialize, finalize: "", libs: [], wires });
  return [
    { id: z, type: "tab", label: "classify bench" },
    { id: `${z}-start`, z, type: "http in", url: "/classify-bench", method: "get", upload: false, swaggerDoc: "", wires: [[`${z}-generate`]] },
    fn("generate", `const HELLO = context.get("hello");\n${GENERATE}`, WAYS.length, WAYS.map((way) => [`${z}-${way}`]), `context.set("hello", Buffer.from("${hello.toString("hex")}", "hex"));`),
    classify("without", [hostRule], "rules"),
    classify("fields", [hostRule], "fields"),
    classify("ja4", [{ name: "by ja4", fingerprints: `${ja4Prefix}*` }, hostRule], "rules"),
    fn("count", COUNT, 1, [[`${z}-reply`]]),
    { id: `${z}-reply`, z, type: "http response", statusCode: "", headers: {}, wires: [] },
  ];
}

/** Per way: the median rate, and the median, least and greatest of each round's rate against the same round's `without`. */
export interface ClassifyNodeRates {
  readonly rate: Readonly<Record<ClassifyWay, number>>;
  readonly ratio: Readonly<Record<Exclude<ClassifyWay, "without">, { readonly median: number; readonly min: number; readonly max: number }>>;
}

/** Messages per second through three classify nodes in Node-RED, alternating rounds (ROUNDS of each, after one warm-up round). */
export async function classifyNodeRates(cases: ReadonlyArray<{ readonly hello: Buffer; readonly ja4Prefix: string }>): Promise<ClassifyNodeRates[]> {
  const env = require(path.join(ROOT, "scripts", "node-red-env.js")) as NodeRedEnv;
  const results: ClassifyNodeRates[] = [];
  for (const c of cases) {
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "tp-classify-bench-"));
    let red: Awaited<ReturnType<NodeRedEnv["startNodeRed"]>> | null = null;
    try {
      const port = await freePort();
      env.prepareUserDir(userDir, { port, flows: benchFlow(c.hello, c.ja4Prefix) });
      red = await env.startNodeRed(userDir, { port, env: { ...process.env, HOME: userDir }, timeoutMs: 90_000 });
      const url = red.url;
      const round = async (to: ClassifyWay): Promise<number> => {
        const res = await fetch(`${url}/classify-bench?to=${to}&n=${MESSAGES}`, { signal: AbortSignal.timeout(120_000) });
        if (!res.ok) throw new Error(`classify bench round: ${res.status} ${await res.text()}\n${red!.log().slice(-2000)}`);
        const { ms, first, ja4 } = (await res.json()) as { ms: number; first: number; ja4: number };
        // Every node routes every hello by its first rule (the host rule, or the JA4 rule),
        // and only the nodes that fingerprint put a JA4 into the fields.
        if (first !== MESSAGES) throw new Error(`${to}: ${MESSAGES - first} hellos not taken by the first rule`);
        if (ja4 !== (to === "without" ? 0 : MESSAGES)) throw new Error(`${to}: ${ja4} of ${MESSAGES} classifications carried a JA4`);
        return (MESSAGES * 1000) / Math.max(ms, 1);
      };
      for (const way of WAYS) await round(way);
      const rates: Record<ClassifyWay, number[]> = { without: [], fields: [], ja4: [] };
      for (let r = 0; r < ROUNDS; r++) {
        // The order turns each round, so that no way always runs right after another.
        for (let i = 0; i < WAYS.length; i++) {
          const way = WAYS[(r + i) % WAYS.length]!;
          rates[way].push(await round(way));
        }
      }
      const spread = (way: "fields" | "ja4") => {
        const each = rates[way].map((v, i) => v / rates.without[i]!);
        return { median: median(each), min: Math.min(...each), max: Math.max(...each) };
      };
      results.push({
        rate: { without: median(rates.without), fields: median(rates.fields), ja4: median(rates.ja4) },
        ratio: { fields: spread("fields"), ja4: spread("ja4") },
      });
    } finally {
      if (red !== null) await env.stopNodeRed(red.child);
      fs.rmSync(userDir, { recursive: true, force: true });
    }
  }
  return results;
}

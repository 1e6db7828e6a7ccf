/**
 * The `classify` node in a real Node-RED (scripts/node-red-env.js, this package loaded as
 * an installed module), with host rules alone and with a JA4 rule before them, in
 * alternating rounds: what a fingerprint condition costs a flow that classifies
 * ClientHellos, as against the sniffer chain alone in classify.bench.ts.
 *
 * The flow: an HTTP endpoint starts a round; a function node sends the hello N times
 * (uncloned) into one of the two classify nodes; a counting function node answers the
 * request when the Nth classification arrives, with the time taken and how many the first
 * rule took.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT } from "../test/rigs/root";
import { median } from "./harness";
import { freePort } from "../test/rigs/free-port";

const MESSAGES = 20_000;
const ROUNDS = 9;

interface NodeRedEnv {
  prepareUserDir(dir: string, options: { port: number; flows: object[] }): void;
  startNodeRed(dir: string, options: { port: number; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<{ child: import("node:child_process").ChildProcess; url: string; log(): string }>;
  stopNodeRed(child: import("node:child_process").ChildProcess, timeoutMs?: number): Promise<void>;
}


const GENERATE = `
const n = Number(msg.req.query.n);
const toJa4 = msg.req.query.to === "ja4";
flow.set("round", { reply: msg, n, seen: 0, first: 0, start: Date.now() });
for (let i = 0; i < n; i++) node.send(toJa4 ? [null, { payload: HELLO }] : [{ payload: HELLO }, null], false);
return null;`;

const COUNT = `
const r = flow.get("round");
r.seen++;
if (msg.classification.output === 0) r.first++;
if (r.seen < r.n) return null;
const reply = r.reply;
reply.payload = { ms: Date.now() - r.start, first: r.first };
return reply;`;

function benchFlow(hello: Buffer, ja4Prefix: string): object[] {
  const z = "classify-bench";
  const hostRule = { name: "web", protocols: "tls", hosts: "example.test, *.example.test" };
  const classify = (id: string, rules: object[]) => ({ id: `${z}-${id}`, z, type: "classify", name: `${id}`, input: "auto", property: "payload", tlsFingerprints: "rules", rules, outputs: rules.length + 1, wires: rules.map(() => [`${z}-count`]).concat([[`${z}-count`]]) });
  const fn = (id: string, func: string, outputs: number, wires: string[][], initialize = "") => ({ id: `${z}-${id}`, z, type: "function", name: `${id}`, func, outputs, timeout: 0, noerr: 0, initialize, finalize: "", libs: [], wires });
  return [
    { id: z, type: "tab", label: "classify bench" },
    { id: `${z}-start`, z, type: "http in", url: "/classify-bench", method: "get", upload: false, swaggerDoc: "", wires: [[`${z}-generate`]] },
    fn("generate", `const HELLO = context.get("hello");\n${GENERATE}`, 2, [[`${z}-without`], [`${z}-ja4`]], `context.set("hello", Buffer.from("${hello.toString("hex")}", "hex"));`),
    classify("without", [hostRule]),
    classify("ja4", [{ name: "by ja4", fingerprints: `${ja4Prefix}*` }, hostRule]),
    fn("count", COUNT, 1, [[`${z}-reply`]]),
    { id: `${z}-reply`, z, type: "http response", statusCode: "", headers: {}, wires: [] },
  ];
}

/** Messages per second through each of two classify nodes in Node-RED: host rules only, and a JA4 rule first. */
export async function classifyNodeRates(cases: ReadonlyArray<{ readonly hello: Buffer; readonly ja4Prefix: string }>): Promise<Array<{ readonly without: number; readonly ja4: number }>> {
  const env = require(path.join(ROOT, "scripts", "node-red-env.js")) as NodeRedEnv;
  const results: Array<{ without: number; ja4: number }> = [];
  for (const c of cases) {
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "tp-classify-bench-"));
    let red: Awaited<ReturnType<NodeRedEnv["startNodeRed"]>> | null = null;
    try {
      const port = await freePort();
      env.prepareUserDir(userDir, { port, flows: benchFlow(c.hello, c.ja4Prefix) });
      red = await env.startNodeRed(userDir, { port, env: { ...process.env, HOME: userDir }, timeoutMs: 90_000 });
      const url = red.url;
      const round = async (to: "without" | "ja4"): Promise<number> => {
        const res = await fetch(`${url}/classify-bench?to=${to}&n=${MESSAGES}`, { signal: AbortSignal.timeout(120_000) });
        if (!res.ok) throw new Error(`classify bench round: ${res.status} ${await res.text()}\n${red!.log().slice(-2000)}`);
        const { ms, first } = (await res.json()) as { ms: number; first: number };
        // Both nodes route every hello by their first rule: the host rule, or the JA4 rule.
        if (first !== MESSAGES) throw new Error(`${to}: ${MESSAGES - first} hellos not taken by the first rule`);
        return (MESSAGES * 1000) / Math.max(ms, 1);
      };
      await round("without");
      await round("ja4");
      const rates = { without: [] as number[], ja4: [] as number[] };
      for (let r = 0; r < ROUNDS; r++) {
        rates.without.push(await round("without"));
        rates.ja4.push(await round("ja4"));
      }
      results.push({ without: median(rates.without), ja4: median(rates.ja4) });
    } finally {
      if (red !== null) await env.stopNodeRed(red.child);
      fs.rmSync(userDir, { recursive: true, force: true });
    }
  }
  return results;
}

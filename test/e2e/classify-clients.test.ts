import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { Classification, ClassificationFields, classifyBytes, classifyDatagrams, StreamClassifier } from "../../src/classify";
import { loadVectors } from "../support/classify-vectors";
import { skipWithout } from "../support/system";

interface CaptureVector {
  name: string;
  program: string;
  expect: string;
  udp?: boolean;
}
const require_ = createRequire(__filename);
const capture = require_("../../scripts/capture-classify-vectors.js") as {
  VECTORS: CaptureVector[];
  record(v: CaptureVector): Promise<Buffer[]>;
};

/**
 * What stays the same from one connection of a client to the next. Ports differ from run
 * to run, and with them the Host/:authority fields. Chromium sends its TLS extensions in a
 * new random order on every connection: JA4 sorts them, JA3 keeps the order, so JA3 is
 * compared as the set of its extensions (its hash follows the order and is left out).
 */
function stable(fields: ClassificationFields): ClassificationFields {
  const { host: _host, ja3, ja3Hash: _hash, ...rest } = fields as ClassificationFields & { ja3?: string; ja3Hash?: string };
  if (typeof ja3 !== "string") return rest;
  const parts = ja3.split(",");
  parts[2] = (parts[2] ?? "").split("-").sort((a, b) => Number(a) - Number(b)).join("-");
  return { ...rest, ja3Extensions: parts.join(",") } as ClassificationFields;
}

const RECORDED = new Map([...loadVectors(), ...loadVectors("udp")].map((v) => [v.name, v]));

describe("real clients, live on loopback, classify as their recorded vectors do", () => {
  for (const v of capture.VECTORS) {
    if (v.udp === true) {
      it(`${v.name} (${v.program}, UDP)`, async (ctx) => {
        skipWithout(ctx, v.program);
        const datagrams = await capture.record(v);
        const live = classifyDatagrams(datagrams);
        expect(live.protocol).toBe(v.expect);
        const recorded = RECORDED.get(v.name);
        expect(recorded, "a committed vector for every client").toBeDefined();
        expect(stable(live.fields)).toEqual(stable(classifyDatagrams(recorded!.segments).fields));
      }, 30_000);
      continue;
    }
    it(`${v.name} (${v.program})`, async (ctx) => {
      skipWithout(ctx, v.program);
      const segments = await capture.record(v);
      const bytes = Buffer.concat(segments);
      const live = classifyBytes(bytes);
      expect(live.protocol).toBe(v.expect);
      const recorded = RECORDED.get(v.name);
      expect(recorded, "a committed vector for every client").toBeDefined();
      expect(stable(live.fields)).toEqual(stable(classifyBytes(recorded!.bytes).fields));
      // And incrementally, in the segments the server really read.
      const s = new StreamClassifier();
      let r: Classification | null = null;
      for (const seg of segments) r ??= s.push(seg);
      expect((r ?? s.end()).protocol).toBe(v.expect);
    }, 30_000);
  }
});

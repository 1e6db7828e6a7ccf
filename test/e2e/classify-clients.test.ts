import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { Classification, ClassificationFields, classifyBytes, classifyDatagrams, StreamClassifier } from "../../src/classify";
import { loadVectors } from "../support/classify-vectors";
import { systemCommand } from "../support/system";

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

// Ports differ from run to run, and with them the Host/:authority fields.
function stable(fields: ClassificationFields): ClassificationFields {
  const { host: _host, ...rest } = fields;
  return rest;
}

const RECORDED = new Map([...loadVectors(), ...loadVectors("udp")].map((v) => [v.name, v]));

describe("real clients, live on loopback, classify as their recorded vectors do", () => {
  for (const v of capture.VECTORS) {
    if (v.udp === true) {
      it(`${v.name} (${v.program}, UDP)`, async (ctx) => {
        if (systemCommand(v.program).skip) ctx.skip();
        const datagrams = await capture.record(v);
        const live = classifyDatagrams(datagrams);
        expect(live.protocol).toBe(v.expect);
        const recorded = RECORDED.get(v.name);
        expect(recorded, "a committed vector for every client").toBeDefined();
        expect(live.fields).toEqual(classifyDatagrams(recorded!.segments).fields);
      }, 30_000);
      continue;
    }
    it(`${v.name} (${v.program})`, async (ctx) => {
      if (systemCommand(v.program).skip) ctx.skip();
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

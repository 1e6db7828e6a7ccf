import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

/** A recorded vector: the first bytes a real client sent, segment by segment. */
export interface ClassifyVector {
  readonly name: string;
  readonly expect: string;
  readonly command: string;
  readonly client: string;
  readonly segments: readonly Buffer[];
  readonly bytes: Buffer;
}

const DIR = path.join(__dirname, "..", "fixtures", "classify");

/** Every vector under test/fixtures/classify (written by scripts/capture-classify-vectors.js). */
export function loadVectors(): ClassifyVector[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => {
      const raw = JSON.parse(readFileSync(path.join(DIR, f), "utf8")) as { name: string; expect: string; command: string; client: string; segments: string[] };
      const segments = raw.segments.map((h) => Buffer.from(h, "hex"));
      return { name: raw.name, expect: raw.expect, command: raw.command, client: raw.client, segments, bytes: Buffer.concat(segments) };
    });
}

/** One vector by name. */
export function vector(name: string): ClassifyVector {
  const v = loadVectors().find((x) => x.name === name);
  if (v === undefined) throw new Error(`no vector ${name}`);
  return v;
}

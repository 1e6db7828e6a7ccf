import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

/** A recorded vector: the first bytes a real client sent, segment by segment (datagram by datagram over UDP). */
export interface ClassifyVector {
  readonly name: string;
  readonly transport: "tcp" | "udp";
  readonly expect: string;
  readonly command: string;
  readonly client: string;
  readonly segments: readonly Buffer[];
  readonly bytes: Buffer;
}

const DIR = path.join(__dirname, "..", "fixtures", "classify");

/** Every vector of one transport under test/fixtures/classify (written by scripts/capture-classify-vectors.js). */
export function loadVectors(transport: "tcp" | "udp" = "tcp"): ClassifyVector[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f): ClassifyVector => {
      const raw = JSON.parse(readFileSync(path.join(DIR, f), "utf8")) as { name: string; expect: string; command: string; client: string; transport?: "udp"; segments: string[] };
      const segments = raw.segments.map((h) => Buffer.from(h, "hex"));
      return { name: raw.name, transport: raw.transport ?? "tcp", expect: raw.expect, command: raw.command, client: raw.client, segments, bytes: Buffer.concat(segments) };
    })
    .filter((v) => v.transport === transport);
}

/** One vector by name. */
export function vector(name: string): ClassifyVector {
  const v = [...loadVectors(), ...loadVectors("udp")].find((x) => x.name === name);
  if (v === undefined) throw new Error(`no vector ${name}`);
  return v;
}

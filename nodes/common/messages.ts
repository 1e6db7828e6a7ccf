import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { NodeAPI } from "node-red";

/** Values for a message's `{{name}}` placeholders. */
export type MessageVars = Readonly<Record<string, string | number>>;

/** A message of the package's catalogue (locales/<lang>/traffic.json) by key, e.g. "forward.status.active". */
export type Messages = (key: string, vars?: MessageVars) => string;

type Catalogue = { readonly [key: string]: string | Catalogue };

let english: Catalogue | null | undefined;

/**
 * The bundled English catalogue, found by walking up from this file: the same code runs
 * from nodes/ (tests) and from dist/nodes/ (installed), at different depths.
 */
function englishCatalogue(): Catalogue | null {
  if (english !== undefined) return english;
  english = null;
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const file = join(dir, "locales", "en-US", "traffic.json");
    if (existsSync(file)) {
      english = JSON.parse(readFileSync(file, "utf8")) as Catalogue;
      break;
    }
    if (dirname(dir) === dir) break;
  }
  return english;
}

/** The text at a dotted key of a catalogue, if there is one. */
export function catalogueText(catalogue: Catalogue, key: string): string | undefined {
  let at: string | Catalogue | undefined = catalogue;
  for (const part of key.split(".")) {
    if (at === undefined || typeof at === "string") return undefined;
    at = at[part];
  }
  return typeof at === "string" ? at : undefined;
}

/**
 * Messages through Node-RED's i18n, in the runtime's language. Where the runtime has no
 * catalogue for the package (it answers with the key itself, as test harnesses do), the
 * English catalogue answers: a status or an error never shows a bare key.
 */
export function messages(RED: NodeAPI): Messages {
  const translate = (key: string, vars?: MessageVars): string => {
    const text = RED._(key, vars);
    if (typeof text === "string" && text !== key) return text;
    const catalogue = englishCatalogue();
    const fallback = catalogue === null ? undefined : catalogueText(catalogue, key);
    if (fallback === undefined) return key;
    return fallback.replace(/__(\w+)__/g, (whole, name: string) => (vars?.[name] === undefined ? whole : String(vars[name])));
  };
  // A status is worded per connection ("3 active"), and a translation through i18next costs
  // tens of microseconds: a fifth of a forwarded connection's CPU. The runtime's language is
  // fixed while it runs, so a text once made is kept, a few hundred at most.
  const made = new Map<string, string>();
  return (key, vars) => {
    let id = key;
    if (vars !== undefined) for (const name in vars) id += `\u0000${name}\u0000${vars[name]!}`;
    let text = made.get(id);
    if (text === undefined) {
      text = translate(key, vars);
      if (made.size >= MADE_MAX) made.clear();
      made.set(id, text);
    }
    return text;
  };
}

/** How many worded messages each node's catalogue keeps. */
const MADE_MAX = 512;

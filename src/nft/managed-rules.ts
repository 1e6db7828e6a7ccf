import { spawn, spawnSync } from "node:child_process";
import { TrafficError } from "../errors";
import { formatIPv4, formatIPv6 } from "../net/ip";
import { maskOf, maskV6, NAMED_RANGES, parseCidr, splitList, type IpRange } from "../net/cidr";

/** Kernel rules a listener installs for itself while it runs. */
export interface RuleSpec {
  /** `redirect`: nat REDIRECT to the listener port; `tproxy`: mangle TPROXY plus policy routing. */
  readonly mode: "redirect" | "tproxy";
  /** The listener's port. */
  readonly port: number;
  /** Destination CIDRs to capture (named ranges allowed); at least one. */
  readonly destinations: string | readonly string[];
  /** Destination ports: "80, 443, 8000-8080"; empty captures every port. */
  readonly ports?: string;
  /** Transports to capture (default TCP only); UDP only in tproxy mode. */
  readonly protocols?: readonly ("tcp" | "udp")[];
  /** Packets with this mark are never captured: the package's own upstream connections carry it (SO_MARK). */
  readonly excludeMark?: number;
  /**
   * Also capture connections this host opens itself: a nat output chain for REDIRECT; for
   * TPROXY a route output chain that marks them, so policy routing loops them through `lo`
   * into prerouting, where TPROXY applies. Needs `excludeMark`, or the forwarder's own
   * upstream connections would be captured again, without end.
   */
  readonly includeLocal?: boolean;
  /** Mark TPROXY puts on captured packets, and the routing table that delivers them locally. */
  readonly tproxyMark?: number;
  readonly routeTable?: number;
  /** Per-source limits the kernel enforces on new connections before they reach the listener. */
  readonly limit?: KernelLimit;
}

/**
 * Per-source limits in nft: a token bucket per source (`limit rate` in a dynamic set, the
 * old "meter") and a cap on its tracked connections (`ct count`). Over either, the SYN is
 * dropped, so a flood costs the kernel a set lookup and never wakes the listener.
 */
export interface KernelLimit {
  /** New connections per second per source; 0 or absent: none. */
  readonly rate?: number;
  /** Bucket size in connections; default the rate. */
  readonly burst?: number;
  /** Connections per source conntrack holds at once; 0 or absent: no cap. */
  readonly maxConcurrent?: number;
  /** Sources are grouped by these prefix lengths; default 32 and 64 (one IPv6 host often holds a /64). */
  readonly v4Prefix?: number;
  readonly v6Prefix?: number;
}

/**
 * Sources one limit set holds. A full set adds no new source, and nft then lets that
 * source's packets pass: the table fails open, like HAProxy's stick tables.
 */
export const KERNEL_LIMIT_SOURCES = 65536;

/** What installRules put in place, enough to remove it. */
export interface ManagedRules {
  readonly table: string;
  readonly routing: { readonly mark: number; readonly table: number; readonly v4: boolean; readonly v6: boolean } | null;
  readonly ruleset: string;
}

/** Every table this package manages starts with this prefix; nothing else is ever touched. */
export const TABLE_PREFIX = "traffic_policy_";

/**
 * Default TPROXY mark and routing table of an owner: 0x7470xxxx with 16 bits from its
 * table name, so that two listeners' rules never share (and one's close never removes)
 * the other's `ip rule`.
 */
export function defaultRouting(owner: string): { mark: number; table: number } {
  const name = tableName(owner);
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  const value = (0x74700000 + (h & 0xffff)) >>> 0;
  return { mark: value, table: value };
}

function bad(field: string, why: string): TrafficError {
  return new TrafficError("ERR_NFT_CONFIG", why, field);
}

/** The nft table name of an owner (a node id): lower-case letters, digits and `_` only. */
export function tableName(owner: string): string {
  if (typeof owner !== "string" || !/^[A-Za-z0-9._-]{1,40}$/.test(owner)) throw bad("owner", `cannot name a table after ${JSON.stringify(String(owner).slice(0, 48))}`);
  return TABLE_PREFIX + owner.toLowerCase().replace(/[^a-z0-9]/g, "_");
}

function uint(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw bad(field, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Parses "80, 443, 8000-8080" into nft set elements; every value checked. */
export function parsePorts(text: string | undefined): string[] {
  const out: string[] = [];
  for (const item of splitList(text ?? "")) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(item);
    if (m === null) throw bad("ports", `not a port or range: ${JSON.stringify(item.slice(0, 32))}`);
    const lo = uint(Number(m[1]), "ports", 1, 65535);
    if (m[2] === undefined) {
      out.push(String(lo));
      continue;
    }
    const hi = uint(Number(m[2]), "ports", 1, 65535);
    if (hi < lo) throw bad("ports", `range runs backwards: ${item}`);
    out.push(`${lo}-${hi}`);
  }
  return out;
}

/**
 * Destination CIDRs as nft text, split by family. Each entry is parsed first (a bad one
 * throws); IPv4 is re-formatted from its parsed value (which also unwraps ::ffff: forms),
 * IPv6 is the entry itself, lower-cased, once the parser accepted it and it holds only
 * hex digits, colons, dots and the slash.
 */
function destinationTexts(list: string | readonly string[]): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const entry of splitList(list)) {
    const key = entry.toLowerCase();
    const texts = Object.hasOwn(NAMED_RANGES, key) ? NAMED_RANGES[key]! : [entry];
    for (const text of texts) {
      let range: IpRange;
      try {
        range = parseCidr(text);
      } catch (err) {
        throw bad("destinations", (err as TrafficError).reason ?? String(err));
      }
      if (range.family === 4) {
        v4.push(`${formatIPv4(range.network)}/${range.prefix}`);
      } else {
        if (!/^[0-9a-f:.]+(\/[0-9]{1,3})?$/.test(text.toLowerCase())) throw bad("destinations", `unexpected characters in ${JSON.stringify(text.slice(0, 64))}`);
        v6.push(text.includes("/") ? text.toLowerCase() : `${text.toLowerCase()}/128`);
      }
    }
  }
  return { v4, v6 };
}

/**
 * The nft ruleset for a spec. Every value in it comes out of a parser (addresses are
 * re-formatted from their parsed form, ports and marks are integers), so nothing an
 * operator typed reaches nft as text.
 */
export function buildRuleset(owner: string, spec: RuleSpec): { table: string; ruleset: string; v4: boolean; v6: boolean; mark: number; routeTable: number } {
  const table = tableName(owner);
  if (spec.mode !== "redirect" && spec.mode !== "tproxy") throw bad("mode", "must be redirect or tproxy");
  const port = uint(spec.port, "port", 1, 65535);
  const { v4, v6 } = destinationTexts(spec.destinations);
  if (v4.length + v6.length === 0) throw bad("destinations", "name at least one destination CIDR to capture (0.0.0.0/0 for all IPv4)");
  const ports = parsePorts(spec.ports);
  const exclude = spec.excludeMark === undefined ? null : uint(spec.excludeMark, "excludeMark", 1, 0xffffffff);
  const defaults = defaultRouting(owner);
  const mark = spec.tproxyMark === undefined ? defaults.mark : uint(spec.tproxyMark, "tproxyMark", 1, 0xffffffff);
  // 253-255 are the kernel's default, main and local tables.
  const routeTable = spec.routeTable === undefined ? defaults.table : uint(spec.routeTable, "routeTable", 1, 0xfffffff0);
  if (routeTable >= 253 && routeTable <= 255) throw bad("routeTable", "253-255 are the kernel's own routing tables");
  if (spec.includeLocal === true && exclude === null) {
    throw bad("excludeMark", "capturing this host's own connections needs a skip mark, set on the forward nodes too: without it their upstream connections are captured again");
  }
  const protocols = spec.protocols === undefined || spec.protocols.length === 0 ? (["tcp"] as const) : spec.protocols;
  for (const p of protocols) if (p !== "tcp" && p !== "udp") throw bad("protocols", `must be tcp or udp, got ${JSON.stringify(String(p).slice(0, 16))}`);
  if (spec.mode === "redirect" && protocols.includes("udp")) throw bad("protocols", "UDP needs tproxy: after a REDIRECT a UDP socket cannot learn the original destination");
  const transports = [...new Set(protocols)];
  const dport = (proto: string): string => (ports.length === 0 ? "" : ` ${proto} dport { ${ports.join(", ")} }`);
  const matches = (family: "ip" | "ip6", list: string[]): string[] => transports.map((proto) => `${family} daddr { ${list.join(", ")} } meta l4proto ${proto}${dport(proto)}`);
  const l4 = transports.length === 1 ? transports[0]! : `{ ${transports.join(", ")} }`;
  const lines: string[] = [`table inet ${table} {`];
  const skipOwn = exclude === null ? [] : [`    meta mark ${exclude} return`];
  if (spec.limit !== undefined) lines.push(...limitLines(spec.limit, { v4, v6, matches, skipOwn }));
  if (spec.mode === "redirect") {
    const body = (): string[] => [
      ...skipOwn,
      ...(v4.length > 0 ? matches("ip", v4).map((m) => `    ${m} redirect to :${port}`) : []),
      ...(v6.length > 0 ? matches("ip6", v6).map((m) => `    ${m} redirect to :${port}`) : []),
    ];
    lines.push("  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;", ...body(), "  }");
    if (spec.includeLocal === true) lines.push("  chain output {", "    type nat hook output priority -100; policy accept;", ...body(), "  }");
  } else {
    lines.push(
      "  chain prerouting {",
      "    type filter hook prerouting priority mangle; policy accept;",
      ...skipOwn,
      // Packets of connections a transparent socket already owns go straight to it.
      // For UDP these are a session's datagrams once its reply socket (bound to the original
      // destination) exists, and the server's replies to a source-preserving upstream socket.
      `    meta l4proto ${l4} socket transparent 1 meta mark set ${mark} accept`,
      ...(v4.length > 0 ? matches("ip", v4).map((m) => `    ${m} tproxy ip to :${port} meta mark set ${mark} accept`) : []),
      ...(v6.length > 0 ? matches("ip6", v6).map((m) => `    ${m} tproxy ip6 to :${port} meta mark set ${mark} accept`) : []),
      "  }",
    );
    if (spec.includeLocal === true) {
      // TPROXY exists only in prerouting. A locally opened connection gets the routing mark
      // here; its `ip rule` reroutes it to `lo`, it comes back in through prerouting and the
      // rules above take it. A route-type chain is what makes the kernel route again after
      // the mark changed.
      lines.push(
        "  chain output {",
        "    type route hook output priority mangle; policy accept;",
        ...skipOwn,
        ...(v4.length > 0 ? matches("ip", v4).map((m) => `    ${m} meta mark set ${mark}`) : []),
        ...(v6.length > 0 ? matches("ip6", v6).map((m) => `    ${m} meta mark set ${mark}`) : []),
        "  }",
      );
    }
  }
  lines.push("}");
  return { table, ruleset: `${lines.join("\n")}\n`, v4: v4.length > 0, v6: v6.length > 0, mark, routeTable };
}

/** The sets and the chain of a kernel limit; checked like every other value. */
function limitLines(
  limit: KernelLimit,
  ctx: { v4: string[]; v6: string[]; matches: (family: "ip" | "ip6", list: string[]) => string[]; skipOwn: string[] },
): string[] {
  const rate = limit.rate === undefined ? 0 : uint(limit.rate, "limit.rate", 0, 1_000_000);
  const burst = limit.burst === undefined ? Math.max(rate, 1) : uint(limit.burst, "limit.burst", 1, 1_000_000);
  const cap = limit.maxConcurrent === undefined ? 0 : uint(limit.maxConcurrent, "limit.maxConcurrent", 0, 1_000_000);
  if (rate === 0 && cap === 0) throw bad("limit", "set a rate, a cap on open connections, or both");
  const v4Prefix = limit.v4Prefix === undefined ? 32 : uint(limit.v4Prefix, "limit.v4Prefix", 1, 32);
  const v6Prefix = limit.v6Prefix === undefined ? 64 : uint(limit.v6Prefix, "limit.v6Prefix", 1, 128);
  const key = {
    ip: v4Prefix === 32 ? "ip saddr" : `ip saddr & ${formatIPv4(maskOf(v4Prefix))}`,
    ip6: v6Prefix === 128 ? "ip6 saddr" : `ip6 saddr & ${formatIPv6(maskV6(new Uint16Array(8).fill(0xffff), v6Prefix))}`,
  };
  const families = [...(ctx.v4.length > 0 ? (["ip"] as const) : []), ...(ctx.v6.length > 0 ? (["ip6"] as const) : [])];
  const sets: string[] = [];
  const rules: string[] = [];
  for (const family of families) {
    const type = family === "ip" ? "ipv4_addr" : "ipv6_addr";
    // One match per transport: a UDP session's first datagram is `ct state new` as a SYN is.
    const news = ctx.matches(family, family === "ip" ? ctx.v4 : ctx.v6).map((m) => `${m} ct state new`);
    if (rate > 0) {
      // Idle sources leave after a minute: by then their bucket is full again anyway.
      sets.push(`  set limit_rate_${family} { type ${type}; size ${KERNEL_LIMIT_SOURCES}; flags dynamic,timeout; timeout 60s; }`);
      for (const match of news) rules.push(`    ${match} update @limit_rate_${family} { ${key[family]} limit rate over ${rate}/second burst ${burst} packets } drop`);
    }
    if (cap > 0) {
      // After the rate: a SYN dropped for its rate must not be counted as a connection.
      sets.push(`  set limit_conn_${family} { type ${type}; size ${KERNEL_LIMIT_SOURCES}; flags dynamic; }`);
      for (const match of news) rules.push(`    ${match} add @limit_conn_${family} { ${key[family]} ct count over ${cap} } drop`);
    }
  }
  // Before capture (nat dstnat -100, TPROXY mangle -150), after conntrack (-200).
  return [...sets, "  chain conn_limit {", "    type filter hook prerouting priority mangle - 10; policy accept;", ...ctx.skipOwn, ...rules, "  }"];
}

/** How long one nft/ip command may take: the node's close must finish within Node-RED's 15 s. */
const COMMAND_TIMEOUT_MS = 5000;

/** Runs a program without a shell; rejects with its stderr, or when it hangs. */
function exec(command: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"], shell: false, timeout: COMMAND_TIMEOUT_MS, killSignal: "SIGKILL" });
    let out = "";
    let err = "";
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
    child.on("error", (e: NodeJS.ErrnoException) =>
      reject(new TrafficError("ERR_NFT_FAILED", e.code === "ENOENT" ? `${command} is not installed (Debian: apt-get install ${command === "nft" ? "nftables" : "iproute2"})` : e.message, command)),
    );
    child.on("close", (code, signal) => {
      if (code === 0) resolve(out);
      else if (signal !== null) reject(new TrafficError("ERR_NFT_FAILED", `${command} ${args.join(" ")} did not finish within ${COMMAND_TIMEOUT_MS} ms (${signal})`, command));
      else {
        const text = err.trim().split("\n").slice(0, 3).join(" ");
        const hint = /Operation not permitted|EPERM/i.test(text) ? ": managing kernel rules needs CAP_NET_ADMIN" : "";
        reject(new TrafficError("ERR_NFT_FAILED", `${command} ${args.join(" ")} failed (${code}): ${text}${hint}`, command));
      }
    });
    if (input !== undefined && child.stdin !== null) {
      // A program that exits before reading its input makes the write fail with EPIPE:
      // its exit status tells what happened, the write error must not go uncaught.
      child.stdin.on("error", () => undefined);
      child.stdin.end(input);
    }
  });
}

/** The same as exec, blocking: for a process that is about to exit and cannot wait for a callback. */
function execBlocking(command: string, args: readonly string[]): void {
  const r = spawnSync(command, args, { stdio: "ignore", shell: false, timeout: COMMAND_TIMEOUT_MS, killSignal: "SIGKILL" });
  if (r.error !== undefined || r.status !== 0) throw new TrafficError("ERR_NFT_FAILED", `${command} ${args.join(" ")} failed (${r.error?.message ?? r.status ?? r.signal})`, command);
}

const ipFamilies = (r: { v4: boolean; v6: boolean }): Array<"-4" | "-6"> => [...(r.v4 ? (["-4"] as const) : []), ...(r.v6 ? (["-6"] as const) : [])];

type Routing = NonNullable<ManagedRules["routing"]>;

/** One removal step: run it once, or (`repeat`) until it fails, as a crash may have left several copies of an ip rule. */
interface RemovalStep {
  readonly command: string;
  readonly args: readonly string[];
  readonly repeat: boolean;
}

function routingRemoval(routing: Routing): RemovalStep[] {
  return ipFamilies(routing).flatMap((f) => [
    { command: "ip", args: [f, "rule", "del", "fwmark", String(routing.mark), "lookup", String(routing.table)], repeat: true },
    { command: "ip", args: [f, "route", "flush", "table", String(routing.table)], repeat: false },
  ]);
}

/** What removes installed rules: the table first, so nothing is diverted to routing that is going away. */
function removal(rules: ManagedRules): RemovalStep[] {
  return [{ command: "nft", args: ["delete", "table", "inet", rules.table], repeat: false }, ...(rules.routing === null ? [] : routingRemoval(rules.routing))];
}

/** Runs removal steps; a missing piece is not an error. */
async function runRemoval(steps: readonly RemovalStep[]): Promise<void> {
  for (const step of steps) {
    for (let i = 0; i < (step.repeat ? 16 : 1); i++) {
      try {
        await exec(step.command, step.args);
      } catch {
        break;
      }
    }
  }
}

/**
 * The part of routing `a` that `b` lacks: the families whose ip rule and route `a` needs and
 * `b` has not (the same mark and table in that family), or null for none.
 */
function routingMinus(a: ManagedRules["routing"], b: ManagedRules["routing"]): Routing | null {
  if (a === null) return null;
  const shared = b !== null && a.mark === b.mark && a.table === b.table;
  const rest = { ...a, v4: a.v4 && !(shared && b.v4), v6: a.v6 && !(shared && b.v6) };
  return rest.v4 || rest.v6 ? rest : null;
}

async function addRouting(routing: Routing): Promise<void> {
  for (const f of ipFamilies(routing)) {
    await exec("ip", [f, "rule", "add", "fwmark", String(routing.mark), "lookup", String(routing.table)]);
    await exec("ip", [f, "route", "replace", "local", f === "-4" ? "0.0.0.0/0" : "::/0", "dev", "lo", "table", String(routing.table)]);
  }
}

/**
 * Puts `ruleset` in place of whatever table of that name exists, in one nft transaction
 * (nft -f applies a file atomically): packets meet the old rules or the new ones, never
 * none. Adding the table first makes the delete valid when there is none.
 */
async function replaceTable(table: string, ruleset: string): Promise<void> {
  await exec("nft", ["-f", "-"], `add table inet ${table}\ndelete table inet ${table}\n${ruleset}`);
}

function managedFrom(owner: string, spec: RuleSpec): ManagedRules {
  const built = buildRuleset(owner, spec);
  return { table: built.table, routing: spec.mode === "tproxy" ? { mark: built.mark, table: built.routeTable, v4: built.v4, v6: built.v6 } : null, ruleset: built.ruleset };
}

/**
 * Installs the owner's table (replacing one a crash left behind) and, for TPROXY, the
 * `ip rule`/`ip route` that deliver marked packets to local sockets. The routing comes
 * first: a packet TPROXY has marked and given a socket, but that no rule routes locally,
 * is forwarded, and the kernel drops a forwarded packet that carries a socket. All or
 * nothing: on failure whatever was added is removed again.
 */
export async function installRules(owner: string, spec: RuleSpec): Promise<ManagedRules> {
  const rules = managedFrom(owner, spec);
  try {
    if (rules.routing !== null) {
      await runRemoval(routingRemoval(rules.routing));
      await addRouting(rules.routing);
    }
    await replaceTable(rules.table, rules.ruleset);
  } catch (err) {
    await removeRules(rules).catch(() => undefined);
    throw err;
  }
  return rules;
}

/**
 * Moves an owner's installed rules to a new spec without a moment with no rules: what is
 * unchanged stays as it is; routing the new rules need is added first, the table is
 * replaced in one transaction, then routing only the old rules used is removed. On
 * failure the current rules are left in place.
 */
export async function replaceRules(current: ManagedRules, owner: string, spec: RuleSpec): Promise<ManagedRules> {
  const next = managedFrom(owner, spec);
  if (next.table !== current.table) throw bad("owner", "replaceRules moves one owner's rules; another owner's are installed separately");
  const adding = routingMinus(next.routing, current.routing);
  const dropping = routingMinus(current.routing, next.routing);
  if (adding === null && dropping === null && next.ruleset === current.ruleset) return current;
  try {
    if (adding !== null) {
      await runRemoval(routingRemoval(adding));
      await addRouting(adding);
    }
    if (next.ruleset !== current.ruleset) await replaceTable(next.table, next.ruleset);
  } catch (err) {
    if (adding !== null) await runRemoval(routingRemoval(adding));
    throw err;
  }
  if (dropping !== null) await runRemoval(routingRemoval(dropping));
  return next;
}

/** Removes what installRules added; missing pieces are not an error. */
export async function removeRules(rules: ManagedRules): Promise<void> {
  await runRemoval(removal(rules));
}

/** removeRules for a process about to exit: blocks until the commands have run. */
export function removeRulesNow(rules: ManagedRules): void {
  for (const step of removal(rules)) {
    for (let i = 0; i < (step.repeat ? 16 : 1); i++) {
      try {
        execBlocking(step.command, step.args);
      } catch {
        break;
      }
    }
  }
}

/** An nft table of this package that is installed now. */
export interface InstalledTable {
  readonly family: string;
  readonly name: string;
}

/** The package's nft tables installed now (`nft -j list tables`, names with TABLE_PREFIX). */
export async function installedTables(): Promise<InstalledTable[]> {
  const out = JSON.parse(await exec("nft", ["-j", "list", "tables"])) as { nftables?: Array<{ table?: { family?: unknown; name?: unknown } }> };
  return (out.nftables ?? [])
    .map((item) => item.table)
    .filter((t): t is { family: string; name: string } => typeof t?.name === "string" && typeof t.family === "string" && t.name.startsWith(TABLE_PREFIX))
    .map((t) => ({ family: t.family, name: t.name }));
}

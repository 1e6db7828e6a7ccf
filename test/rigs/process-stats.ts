// What a process holds, read from /proc from outside it: file descriptors by kind, the
// BPF programs, links and maps behind its fds (their kernel ids, from fdinfo, so another
// process loading programs of the same name does not count), threads and resident memory.
import fs from "node:fs";

export interface ProcessSample {
  readonly at: number;
  readonly fds: number;
  /** socket, pipe, file, bpf-prog, bpf-link, bpf-map, eventpoll, eventfd, timerfd, … */
  readonly fdKinds: Record<string, number>;
  readonly bpfProgs: number[];
  readonly bpfLinks: number[];
  readonly bpfMaps: number[];
  readonly threads: number;
  readonly rssKiB: number;
}

function kindOf(link: string): string {
  if (link.startsWith("socket:")) return "socket";
  if (link.startsWith("pipe:")) return "pipe";
  const anon = /^anon_inode:\[?([^\]]+)\]?$/.exec(link);
  if (anon !== null) return anon[1]!.replace(/_/g, "-");
  return "file";
}

/** Reads /proc/<pid>: fds (with BPF object ids), threads, VmRSS. Throws when the process is gone. */
export function sampleProcess(pid: number): ProcessSample {
  const fdKinds: Record<string, number> = {};
  const bpfProgs: number[] = [];
  const bpfLinks: number[] = [];
  const bpfMaps: number[] = [];
  const fds = fs.readdirSync(`/proc/${pid}/fd`);
  for (const fd of fds) {
    let link: string;
    try {
      link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed while we looked
    }
    const kind = kindOf(link);
    fdKinds[kind] = (fdKinds[kind] ?? 0) + 1;
    if (!kind.startsWith("bpf")) continue;
    let info = "";
    try {
      info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8");
    } catch {
      continue;
    }
    const id = (name: string): number | null => {
      const m = new RegExp(`^${name}:\\s*(\\d+)`, "m").exec(info);
      return m === null ? null : Number(m[1]);
    };
    const prog = id("prog_id");
    const linkId = id("link_id");
    const map = id("map_id");
    // A link's fdinfo names the program it holds too: count it as a link only.
    if (linkId !== null) bpfLinks.push(linkId);
    else if (prog !== null) bpfProgs.push(prog);
    else if (map !== null) bpfMaps.push(map);
  }
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return {
    at: Date.now(),
    fds: fds.length,
    fdKinds,
    bpfProgs: bpfProgs.sort((a, b) => a - b),
    bpfLinks: bpfLinks.sort((a, b) => a - b),
    bpfMaps: bpfMaps.sort((a, b) => a - b),
    threads: fs.readdirSync(`/proc/${pid}/task`).length,
    rssKiB: rss === null ? 0 : Number(rss[1]),
  };
}

/** One line for a report: "fds 61 (socket 20, …) threads 11 rss 95.1 MiB bpf 5 prog / 5 link / 7 map". */
export function describeSample(s: ProcessSample): string {
  const kinds = Object.entries(s.fdKinds)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
  return `fds ${s.fds} (${kinds}) threads ${s.threads} rss ${(s.rssKiB / 1024).toFixed(1)} MiB bpf ${s.bpfProgs.length} prog / ${s.bpfLinks.length} link / ${s.bpfMaps.length} map`;
}

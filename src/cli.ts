import { parseArgs } from "node:util";
import { formatCapabilityReport } from "./doctor";
import { doctorReport } from "./flow/features";
import { FlowSource, type FlowMode } from "./flow/source";

const USAGE = `usage: traffic-policy <command> [options]

commands:
  flows    print every TCP connection event of this host as NDJSON (one JSON object per line)
           --mode auto|ebpf|sockdiag   capture (default auto: eBPF when permitted)
           --ports 80,443              service ports only
           --cidrs 10.0.0.0/8,...      remote addresses only
           --side client|server        one side only
           --cgroup <id>               one cgroup v2 id only
           --state                     also every TCP state change
           --no-open / --no-close      leave those events out
           --ring-kib <n>              eBPF ring buffer size (power of two, default 4096)
           --first-bytes <n>           first payload bytes each way on close events (eBPF, ≤ 512)
           --duration <seconds>        stop after this long (default: until Ctrl-C)
  doctor   which capture and forwarding features work on this host, and why not
           --json                      as JSON
`;

function list(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(/[\s,]+/).filter((s) => s !== "");
}

function doctor(args: string[]): number {
  const { values } = parseArgs({ args, options: { json: { type: "boolean" } } });
  const { capabilities, flow } = doctorReport();
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ capabilities, flow }, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`Privileged features:\n${formatCapabilityReport(capabilities)}\n\nFlow capture:\n${formatCapabilityReport(flow)}\n`);
  return 0;
}

function flows(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      mode: { type: "string", default: "auto" },
      ports: { type: "string" },
      cidrs: { type: "string" },
      side: { type: "string", default: "any" },
      cgroup: { type: "string" },
      state: { type: "boolean" },
      "no-open": { type: "boolean" },
      "no-close": { type: "boolean" },
      "ring-kib": { type: "string", default: "4096" },
      "first-bytes": { type: "string", default: "0" },
      duration: { type: "string" },
    },
  });
  const mode = values.mode as FlowMode;
  if (!["auto", "ebpf", "sockdiag"].includes(mode)) throw new Error(`--mode must be auto, ebpf or sockdiag`);
  const source = new FlowSource(
    {
      mode,
      ports: list(values.ports).map(Number),
      cidrs: list(values.cidrs),
      side: values.side as "any" | "client" | "server",
      cgroupId: values.cgroup ?? null,
      state: values.state === true,
      open: values["no-open"] !== true,
      close: values["no-close"] !== true,
      ringBytes: Number(values["ring-kib"]) * 1024,
      firstBytes: Number(values["first-bytes"]),
    },
    (events) => {
      let out = "";
      for (const e of events) out += `${JSON.stringify(e)}\n`;
      process.stdout.write(out);
    },
  );
  const status = source.start();
  process.stderr.write(`flows: capturing with ${status.mode}${status.ebpfUnavailable !== null && mode !== "sockdiag" ? ` (eBPF unavailable: ${status.ebpfUnavailable})` : ""}${status.degraded !== null ? ` (without: ${status.degraded})` : ""}\n`);
  return new Promise((resolve) => {
    const finish = (): void => {
      source.stop();
      resolve(0);
    };
    process.once("SIGINT", finish);
    process.once("SIGTERM", finish);
    // A closed pipe (`| head`) ends the capture instead of crashing on EPIPE.
    process.stdout.on("error", finish);
    if (values.duration !== undefined) setTimeout(finish, Number(values.duration) * 1000);
  });
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === "doctor") return doctor(rest);
    if (command === "flows") return await flows(rest);
    process.stderr.write(USAGE);
    return command === undefined || command === "help" || command === "--help" ? 0 : 2;
  } catch (err) {
    process.stderr.write(`traffic-policy ${command}: ${(err as Error).message}\n`);
    return 1;
  }
}

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { BenchModule, BenchReport, formatRate } from "./harness";

/** Benchmarks that take minutes (the soak): run by `npm run bench <name>` only, never by a bare `npm run bench`. */
const ONLY_WHEN_NAMED = new Set(["soak"]);

/**
 * `npm run bench [name…]`: runs every bench/<name>.bench.ts (compiled to dist/bench),
 * or the named ones (ONLY_WHEN_NAMED only so), and prints each figure beside the anchor measured in the same run.
 * The JSON report goes to bench-results/latest.json; the exit status is 1 when a bar is missed.
 */
async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const files = fs
    .readdirSync(__dirname)
    .filter((f) => f.endsWith(".bench.js"))
    .filter((f) => {
      const name = f.replace(/\.bench\.js$/, "");
      return only.length === 0 ? !ONLY_WHEN_NAMED.has(name) : only.includes(name);
    })
    .sort();
  console.log(`bench: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}, node ${process.version}`);
  const reports: BenchReport[] = [];
  let failedBars = 0;
  for (const file of files) {
    const mod = (await import(path.join(__dirname, file))) as BenchModule;
    const report = await mod.run();
    reports.push(report);
    console.log(`\n## ${report.name}`);
    for (const row of report.rows) {
      const anchor = row.anchor === undefined ? "" : `  ${row.anchorName} ${formatRate(row.anchor)}  ratio ${row.ratio!.toFixed(2)}×`;
      const bar = row.bar === undefined ? "" : `  bar ${row.bar}: ${row.pass ? "met" : "NOT MET"}`;
      if (row.pass === false) failedBars++;
      console.log(`  ${row.case.padEnd(40)} ${formatRate(row.ours).padStart(9)} ${row.unit}${anchor}${bar}`);
    }
    for (const note of report.notes ?? []) console.log(`  note: ${note}`);
  }
  const out = path.resolve(__dirname, "..", "..", "bench-results");
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, "latest.json"), JSON.stringify({ at: new Date().toISOString(), reports }, null, 2));
  console.log(`\nbench: ${failedBars === 0 ? "every bar met" : `${failedBars} bar(s) not met`}; report in bench-results/latest.json`);
  if (failedBars > 0) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

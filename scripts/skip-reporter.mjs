// A vitest reporter that writes every skipped test, with the reason its skip gave
// (ctx.skip(reason)), to the JSON file named by TRAFFIC_SKIP_REPORT: scripts/test.js
// lists them, and under CI=true fails the run for them. vitest's JSON report has no
// skip reasons.
import fs from "node:fs";
import path from "node:path";

export default class SkipReporter {
  onTestRunEnd(testModules) {
    const out = process.env.TRAFFIC_SKIP_REPORT;
    if (!out) return;
    const skipped = [];
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        const result = test.result();
        if (result.state !== "skipped") continue;
        skipped.push({
          file: path.relative(process.cwd(), mod.moduleId),
          name: test.fullName,
          reason: result.note ?? "",
        });
      }
    }
    fs.writeFileSync(out, JSON.stringify(skipped));
  }
}

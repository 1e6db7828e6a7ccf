import { createRequire } from "node:module";

const require_ = createRequire(__filename);
const { findCommand } = require_("../../scripts/system-deps.js") as { findCommand: (c: string) => string | null };

/** True when tests run under CI, where nothing may skip for a missing dependency. */
export const IN_CI = process.env["CI"] === "true" || process.env["CI"] === "1";

/**
 * Path of a system program a suite needs. Outside CI a missing program makes the suite
 * skip (scripts/test.js has already said how to install it); under CI it is a failure.
 */
export function systemCommand(command: string): { path: string | null; skip: boolean; reason: string } {
  const found = findCommand(command);
  if (found !== null) return { path: found, skip: false, reason: "" };
  if (IN_CI) throw new Error(`${command} is not installed, and under CI=true nothing may skip`);
  const reason = `${command} is not installed`;
  console.warn(`SKIP: ${reason}`);
  return { path: null, skip: true, reason };
}

/**
 * Skips the running test, with the reason, when a system program it needs is missing
 * (under CI that throws instead); returns the program's path.
 */
export function skipWithout(ctx: { skip(condition: boolean, note?: string): void }, command: string): string {
  const found = systemCommand(command);
  ctx.skip(found.skip, found.reason);
  return found.path!;
}

/** True when the process runs as root (the kernel suites need it). */
export const IS_ROOT = process.getuid?.() === 0;

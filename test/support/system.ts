import { createRequire } from "node:module";

const require_ = createRequire(__filename);
const { findCommand } = require_("../../scripts/system-deps.js") as { findCommand: (c: string) => string | null };

/** True when tests run under CI, where nothing may skip for a missing dependency. */
export const IN_CI = process.env["CI"] === "true" || process.env["CI"] === "1";

/**
 * Path of a system program a suite needs. Outside CI a missing program makes the suite
 * skip (scripts/test.js has already said how to install it); under CI it is a failure.
 */
export function systemCommand(command: string): { path: string | null; skip: boolean } {
  const found = findCommand(command);
  if (found !== null) return { path: found, skip: false };
  if (IN_CI) throw new Error(`${command} is not installed, and under CI=true nothing may skip`);
  console.warn(`SKIP: ${command} is not installed`);
  return { path: null, skip: true };
}

/** True when the process runs as root (the kernel suites need it). */
export const IS_ROOT = process.getuid?.() === 0;

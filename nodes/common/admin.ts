import os from "node:os";
import type { NodeAPI } from "node-red";
import { capabilityReport } from "../../src/doctor";

/** Base path of the package's admin endpoints (under Node-RED's httpAdminRoot). */
export const ADMIN_BASE = "/traffic-policy";

/** One address of a local interface, as the dialogs offer them. */
export interface InterfaceAddress {
  readonly interface: string;
  readonly address: string;
  readonly family: 4 | 6;
  readonly cidr: string | null;
  readonly internal: boolean;
}

/** The host's interface addresses. */
export function interfaceAddresses(): InterfaceAddress[] {
  const out: InterfaceAddress[] = [];
  for (const [name, list] of Object.entries(os.networkInterfaces())) {
    for (const a of list ?? []) {
      out.push({ interface: name, address: a.address, family: a.family === "IPv6" ? 6 : 4, cidr: a.cidr ?? null, internal: a.internal });
    }
  }
  return out;
}

/**
 * Registers the endpoints the edit dialogs use. Every one needs `traffic-policy.read`,
 * which Node-RED grants to users with `read` or `*` when adminAuth is on.
 */
export function registerAdminEndpoints(RED: NodeAPI): void {
  const read = RED.auth.needsPermission("traffic-policy.read");
  RED.httpAdmin.get(`${ADMIN_BASE}/capabilities`, read, (_req, res) => {
    res.json({ host: os.hostname(), features: capabilityReport() });
  });
  RED.httpAdmin.get(`${ADMIN_BASE}/interfaces`, read, (_req, res) => {
    res.json(interfaceAddresses());
  });
}

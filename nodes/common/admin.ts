import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { NodeAPI } from "node-red";
import { capabilityReport } from "../../src/doctor";
import { TrafficError } from "../../src/errors";
import { installedTables } from "../../src/nft/managed-rules";
import { liveFeed } from "../../src/observe/live";
import { trafficMetrics } from "../../src/observe/metrics";
import { connectionTable } from "../../src/connection-table";

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

  const metrics = trafficMetrics();
  metrics.setLiveCounts(() => connectionTable().countByOwner());
  RED.httpAdmin.get(`${ADMIN_BASE}/metrics`, read, (_req, res) => {
    metrics.text().then(
      (text) => {
        res.set("Content-Type", metrics.registry.contentType);
        res.send(text);
      },
      (err: Error) => res.status(500).send(err.message),
    );
  });
  // A deploy that deleted nodes ends their series; an edited node keeps its id and its counts.
  RED.events.on("flows:started", () => metrics.retainNodes((id) => RED.nodes.getNode(id) !== null));

  // The sidebar asks for the live feed while it is open; snapshots go over the editor's comms.
  const feed = liveFeed();
  feed.publishTo((snapshot) => RED.comms.publish(LIVE_TOPIC, snapshot as unknown as object, false));
  RED.httpAdmin.post(`${ADMIN_BASE}/live/watch`, read, (_req, res) => {
    feed.watch();
    res.json({ topic: LIVE_TOPIC });
  });
  RED.httpAdmin.get(`${ADMIN_BASE}/nft-tables`, read, (_req, res) => {
    installedTables().then(
      (tables) => res.json({ tables }),
      (err: TrafficError) => res.json({ tables: [], error: err.message }),
    );
  });
  RED.httpAdmin.get(`${ADMIN_BASE}/schemas/:name`, read, (req, res) => {
    const name = String(req.params.name ?? "");
    if (!/^[a-z-]+\.json$/.test(name)) {
      res.status(404).end();
      return;
    }
    res.sendFile(path.join(SCHEMAS_DIR, name), (err) => {
      if (err) res.status(404).end();
    });
  });

  const port = metricsPort(RED.settings as { trafficPolicy?: { metricsPort?: unknown } }, process.env);
  if (port !== null) serveMetrics(port, RED);
}

/** The comms topic of live snapshots (RED.comms.subscribe in the editor). */
export const LIVE_TOPIC = "traffic-policy/live";

const SCHEMAS_DIR = path.resolve(__dirname, "..", "..", "..", "schemas");

/**
 * The port of the scrape-only metrics listener: `trafficPolicy.metricsPort` in settings.js,
 * else TRAFFIC_POLICY_METRICS_PORT; null when neither is set. Throws ERR_METRICS_CONFIG.
 */
export function metricsPort(settings: { trafficPolicy?: { metricsPort?: unknown } }, env: NodeJS.ProcessEnv): number | null {
  const value = settings.trafficPolicy?.metricsPort ?? env.TRAFFIC_POLICY_METRICS_PORT;
  if (value === undefined || value === "") return null;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new TrafficError("ERR_METRICS_CONFIG", `must be a port from 0 to 65535, got ${JSON.stringify(value)}`, "trafficPolicy.metricsPort");
  return n;
}

/**
 * Serves GET /metrics on its own port for scrapers that hold no Node-RED token: on
 * 127.0.0.1 unless `trafficPolicy.metricsHost` (or TRAFFIC_POLICY_METRICS_HOST) says
 * otherwise, since nothing there asks who is scraping.
 */
function serveMetrics(port: number, RED: NodeAPI): void {
  const host = (RED.settings as { trafficPolicy?: { metricsHost?: string } }).trafficPolicy?.metricsHost ?? process.env.TRAFFIC_POLICY_METRICS_HOST ?? "127.0.0.1";
  const metrics = trafficMetrics();
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    metrics.text().then(
      (text) => res.writeHead(200, { "Content-Type": metrics.registry.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
  server.on("error", (err) => RED.log.error(`traffic-policy metrics on ${host}:${port}: ${err.message}`));
  server.listen(port, host, () => {
    const a = server.address();
    RED.log.info(`traffic-policy metrics on http://${host}:${typeof a === "object" && a !== null ? a.port : port}/metrics`);
  });
  server.unref();
}

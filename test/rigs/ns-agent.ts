// A helper the load rig (test/rigs/load-rig.ts) runs inside the gateway namespace, where
// Node-RED's Admin API and its embedded MQTT broker listen on that namespace's loopback.
// Commands are JSON lines on stdin, answers JSON lines on stdout with the same `id`:
//   {id, op:"fetch", url, method?, headers?, body?} → {id, status, body}
//   {id, op:"subscribe", url, topic}                → {id, ok}; counts every message by its
//                                                       JSON `type`, keeps the newest mqtt-stats
//   {id, op:"counts"}                               → {id, byType, stats, connects}
import http from "node:http";
import readline from "node:readline";
import { connect, type MqttClient } from "mqtt";

interface Command {
  id: number;
  op: "fetch" | "subscribe" | "counts";
  url?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  topic?: string;
}

const out = (event: object): void => void process.stdout.write(`${JSON.stringify(event)}\n`);
const byType: Record<string, number> = {};
/** The newest mqtt-stats event per publishing node (its `node` field, else the topic). */
const stats: Record<string, unknown> = {};
let connects = 0;
let client: MqttClient | null = null;

/**
 * One HTTP request on a connection of its own, closed after the answer: a kept-alive
 * connection would show up among Node-RED's fds for seconds after each call.
 */
function request(cmd: Command): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(cmd.url!, { method: cmd.method ?? "GET", headers: { ...(cmd.headers ?? {}), connection: "close" }, agent: false, timeout: 60_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end(cmd.body);
  });
}

async function handle(cmd: Command): Promise<object> {
  switch (cmd.op) {
    case "fetch":
      return request(cmd);
    case "subscribe": {
      // Reconnects quickly: a full deploy restarts the embedded broker.
      client = connect(cmd.url!, { reconnectPeriod: 100, connectTimeout: 2000, clean: false, clientId: `load-agent-${process.pid}` });
      client.on("connect", () => {
        connects++;
        client!.subscribe(cmd.topic!, { qos: 1 });
      });
      client.on("error", () => undefined);
      client.on("message", (topic, payload) => {
        let type = "unparsed";
        try {
          const event = JSON.parse(payload.toString()) as { type?: string };
          type = event.type ?? "untyped";
          if (type === "mqtt-stats") stats[topic] = event;
        } catch {
          // counted as unparsed
        }
        byType[type] = (byType[type] ?? 0) + 1;
      });
      return { ok: true };
    }
    case "counts":
      return { byType, stats, connects };
  }
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line) as Command;
  handle(cmd).then(
    (answer) => out({ id: cmd.id, ...answer }),
    (err: Error) => out({ id: cmd.id, error: err.message }),
  );
});
process.stdin.on("end", () => {
  client?.end(true);
  process.exit(0);
});

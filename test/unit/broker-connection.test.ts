// The broker connection without Node-RED: an embedded aedes broker on a free port, kept
// running across a close-and-reopen with the same owner (a redeploy), stopped when the
// owner is removed; a refused external broker and a bad config named in the state.
import { connect } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { BrokerConnection, type BrokerConnectionSettings, type BrokerLogKey, type BrokerState, type BrokerTexts } from "../../src/mqtt/broker";
import { freePort } from "../support/net";
import { until } from "../support/wait";

function recorder(): { texts: BrokerTexts; logs: Array<{ level: string; key: BrokerLogKey; params: Record<string, string | number> }>; states: BrokerState[]; user: { id: string; brokerState(s: BrokerState): void } } {
  const logs: Array<{ level: string; key: BrokerLogKey; params: Record<string, string | number> }> = [];
  const states: BrokerState[] = [];
  return {
    texts: { status: (key, params) => (params === undefined ? key : `${key} ${JSON.stringify(params)}`), log: (level, key, params) => logs.push({ level, key, params }) },
    logs,
    states,
    user: { id: "user-1", brokerState: (s) => states.push(s) },
  };
}

const settingsFor = (id: string, port: number, embedded: boolean): BrokerConnectionSettings => ({
  id,
  url: `mqtt://127.0.0.1:${port}`,
  embedded: embedded ? { host: "127.0.0.1", port } : null,
  options: { clientId: `test-${id}`, reconnectPeriod: 200, connectTimeout: 2000 },
  agentHost: "edge-1",
  statusTopic: "traffic/edge-1/status",
});

const open: BrokerConnection[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) await c.close(true);
});

describe("BrokerConnection", () => {
  it("runs an embedded broker, keeps it (and its subscribers) across a close and reopen, stops it when removed", async () => {
    const port = await freePort();
    const id = `broker-${port}`;
    const first = recorder();
    const a = new BrokerConnection(settingsFor(id, port, true), first.texts);
    open.push(a);
    a.register(first.user);
    await until(() => a.currentState().state === "connected", "first connection", 5000);
    expect(first.states.map((s) => s.state)).toEqual(["disconnected", "connecting", "connected"]);
    expect(first.logs.map((l) => l.key)).toEqual(["embeddedListening"]);

    // A subscriber of the broker, as `mosquitto_sub` would be, sees the agent status.
    const sub = connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    const seen: string[] = [];
    sub.on("message", (_topic, payload) => seen.push(JSON.parse(payload.toString()).status));
    await sub.subscribeAsync("traffic/edge-1/status");
    await until(() => seen.includes("online"), "retained online status", 5000);

    open.splice(open.indexOf(a), 1);
    await a.close(false);
    await until(() => seen.includes("offline"), "offline status at close", 5000);
    const second = recorder();
    const b = new BrokerConnection(settingsFor(id, port, true), second.texts);
    open.push(b);
    b.register(second.user);
    await until(() => b.currentState().state === "connected", "second connection", 5000);
    expect(second.logs.map((l) => l.key)).toEqual(["embeddedKept"]);
    expect(sub.connected, "the subscriber stayed connected across the reopen").toBe(true);
    await until(() => seen.filter((s) => s === "online").length === 2, "online again", 5000);

    open.splice(open.indexOf(b), 1);
    await b.close(true);
    await until(() => !sub.connected, "the removed broker ends its clients", 5000);
    sub.end(true);
  });

  it("names a refused external broker once, however often it retries", async () => {
    const port = await freePort();
    const r = recorder();
    const c = new BrokerConnection(settingsFor(`ext-${port}`, port, false), r.texts);
    open.push(c);
    c.register(r.user);
    await until(() => r.states.filter((s) => s.state === "error").length >= 2, "two refused attempts", 5000);
    expect(c.currentState().text).toBe("refused");
    expect(r.logs.filter((l) => l.key === "failed")).toHaveLength(1);
    expect(r.logs[0]!.params["url"]).toBe(`mqtt://127.0.0.1:${port}`);
  });

  it("says bad config and connects nowhere when the settings were invalid", async () => {
    const r = recorder();
    const c = new BrokerConnection(null, r.texts);
    open.push(c);
    c.register(r.user);
    await until(() => c.currentState().state === "error", "error state", 1000);
    expect(c.currentState().text).toBe("badConfig");
    expect(r.logs).toEqual([]);
  });
});

import { hostname } from "node:os";
import type { Node, NodeStatus } from "node-red";
import { describe, expect, it } from "vitest";
import { throttledStatus } from "../../nodes/common/status";
import { eventHost, makeEvent } from "../../src/events/make";

/** A stand-in for the one Node method the throttle calls: it records what it is given. */
function recordingNode(): { node: Node; shown: NodeStatus[] } {
  const shown: NodeStatus[] = [];
  return { node: { status: (s: NodeStatus) => shown.push(s) } as unknown as Node, shown };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("throttledStatus", () => {
  it("shows the first status at once, then at most one per interval, and always the last", async () => {
    const { node, shown } = recordingNode();
    const status = throttledStatus(node, 50);
    for (let i = 1; i <= 100; i++) status.set({ fill: "green", shape: "dot", text: `n ${i}` });
    expect(shown.map((s) => s.text)).toEqual(["n 1"]);
    await sleep(120);
    expect(shown.map((s) => s.text)).toEqual(["n 1", "n 100"]);
  });

  it("makes a status given as a function only when it is shown, from the state at that time", async () => {
    const { node, shown } = recordingNode();
    const status = throttledStatus(node, 50);
    let count = 0;
    let made = 0;
    const make = (): NodeStatus => {
      made++;
      return { fill: "green", shape: "dot", text: `count ${count} and more text than fits` };
    };
    for (let i = 0; i < 1000; i++) {
      count++;
      status.set(make);
    }
    // The first set shows at once; the other 999 wait for one flush.
    expect(made).toBe(1);
    count = 5000;
    await sleep(120);
    expect(made).toBe(2);
    // Shortened to the editor's width like a plain status.
    expect(shown.map((s) => s.text)).toEqual(["count 1 and more t…", "count 5000 and mor…"]);
  });

  it("clear drops a pending status, made or not", async () => {
    const { node, shown } = recordingNode();
    const status = throttledStatus(node, 30);
    status.set({ text: "first" });
    let made = 0;
    status.set(() => {
      made++;
      return { text: "never" };
    });
    status.clear();
    await sleep(80);
    expect([made, shown.map((s) => s.text)]).toEqual([0, ["first"]]);
  });
});

describe("event host", () => {
  it("is this host's name, in every event", () => {
    expect(eventHost()).toBe(hostname());
    const e = makeEvent({ type: "lost", source: "js", count: 1, reason: "test" } as never) as unknown as { host: string };
    expect(e.host).toBe(hostname());
  });
});

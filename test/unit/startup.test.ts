import { EventEmitter } from "node:events";
import type { NodeAPI } from "node-red";
import { describe, expect, it } from "vitest";
import { watchFlowStarts, whenFlowsStarted } from "../../nodes/common/startup";

function runtime(): { RED: NodeAPI; events: EventEmitter } {
  const events = new EventEmitter();
  return { RED: { events } as unknown as NodeAPI, events };
}

describe("whenFlowsStarted", () => {
  it("holds callbacks until flows:started, with one listener however many wait", () => {
    const { RED, events } = runtime();
    watchFlowStarts(RED);
    watchFlowStarts(RED);
    const ran: number[] = [];
    events.emit("flows:starting");
    for (let i = 0; i < 50; i++) whenFlowsStarted(RED, () => ran.push(i));
    expect(events.listenerCount("flows:started")).toBe(1);
    expect(ran).toEqual([]);
    events.emit("flows:started");
    expect(ran).toHaveLength(50);
    events.emit("flows:started");
    expect(ran).toHaveLength(50);
  });

  it("runs on the next tick once the flows run, and waits again during a redeploy", async () => {
    const { RED, events } = runtime();
    watchFlowStarts(RED);
    events.emit("flows:started");
    let ran = 0;
    whenFlowsStarted(RED, () => ran++);
    expect(ran).toBe(0);
    await new Promise((r) => setTimeout(r, 5));
    expect(ran).toBe(1);
    events.emit("flows:starting");
    whenFlowsStarted(RED, () => ran++);
    await new Promise((r) => setTimeout(r, 5));
    expect(ran).toBe(1);
    events.emit("flows:started");
    expect(ran).toBe(2);
  });

  it("gives up waiting after maxWaitMs", async () => {
    const { RED } = runtime();
    watchFlowStarts(RED);
    let ran = 0;
    whenFlowsStarted(RED, () => ran++, 20);
    await new Promise((r) => setTimeout(r, 60));
    expect(ran).toBe(1);
  });
});

// Handing a running listener from one owner instance to the next (a redeploy), in this
// process on loopback (plain mode: no rules, no privilege): the socket keeps serving while
// parked, what arrives meanwhile waits for the successor, reconfigure keeps the socket only
// when the new settings need the same one, and what nobody takes is released.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parkListener, releaseParked, releaseParkedNow, takeParkedListener } from "../../src/listener/parked-listener";
import { TransparentListener } from "../../src/listener/transparent-listener";
import { connectionTable } from "../../src/connection-table";
import { dialLoopback, freePort } from "../support/net";
import { until } from "../support/wait";

const open: TransparentListener[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  releaseParkedNow();
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(open.splice(0).map((l) => l.close()));
});

let nextName = 0;
async function listening(): Promise<{ l: TransparentListener; port: number; owner: string }> {
  const port = await freePort();
  const owner = `handover-${nextName++}`;
  const l = new TransparentListener({ port, address: "127.0.0.1", mode: "plain", unclaimedTimeoutMs: 0 }, owner);
  open.push(l);
  await l.start();
  return { l, port, owner };
}

const dial = (port: number): Promise<net.Socket | string> => dialLoopback(port, sockets);

describe("listener handover", () => {
  it("a parked listener keeps accepting; its successor gets the socket and the connections that waited", async () => {
    const { l, port, owner } = await listening();
    const announced: string[] = [];
    l.on("connection", (info) => announced.push(info.id));
    const before = await dial(port);
    await until(() => announced.length === 1, "the first connection");
    parkListener(owner, l, null, 60_000);
    // Announced to the stopped owner and unclaimed: ended like at a close.
    await until(() => connectionTable().info(announced[0]!) === undefined, "the announced connection to end");
    expect(before).toBeInstanceOf(net.Socket);
    const during = await dial(port);
    expect(during).toBeInstanceOf(net.Socket);
    await until(() => connectionTable().count(owner) === 1, "the parked listener to accept");
    const handed = takeParkedListener(owner);
    expect(handed?.listener).toBe(l);
    expect(handed?.waiting.map((i) => i.remotePort)).toEqual([(during as net.Socket).localPort]);
    expect(takeParkedListener(owner)).toBeUndefined();
    // Same socket settings: kept, and the rest applies to the next connections.
    expect(l.reconfigure({ port, address: "127.0.0.1", mode: "plain", sniffBytes: 2, unclaimedTimeoutMs: 0 })).toBe(true);
    expect(l.settings.sniffBytes).toBe(2);
    expect(l.reconfigure({ port, address: "127.0.0.1", mode: "redirect" })).toBe(false);
    expect(l.settings.mode).toBe("plain");
    expect(() => l.reconfigure({ port: 0 })).toThrow(/port/);
  });

  it("releases what nobody takes: when asked, and after the grace period", async () => {
    const first = await listening();
    parkListener(first.owner, first.l, null, 60_000);
    expect(await dial(first.port)).toBeInstanceOf(net.Socket);
    await releaseParked();
    expect(takeParkedListener(first.owner)).toBeUndefined();
    expect(await dial(first.port)).toBe("ECONNREFUSED");

    const second = await listening();
    parkListener(second.owner, second.l, null, 50);
    await new Promise((r) => setTimeout(r, 200));
    expect(await dial(second.port)).toBe("ECONNREFUSED");
    expect(takeParkedListener(second.owner)).toBeUndefined();
  });
});

// The limit core with real sockets, no Node-RED: the concurrency cap holds exactly at
// 5,000 open connections of one client, released through the connection table's end
// notification as connections close.
import net from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import type { ConnectionInfo } from "../../src/connection";
import { addressKey, Limiter, LIMIT_DEFAULTS } from "../../src/limit";
import { ConnectionTable } from "../../src/connection-table";

const CAP = 5000;
const clients: net.Socket[] = [];
let server: net.Server | null = null;

afterAll(() => {
  for (const c of clients.splice(0)) c.destroy();
  server?.close();
});

/** Opens `count` connections from `from`; resolves when each is open or refused (reset). */
async function open(port: number, from: string, count: number): Promise<{ open: net.Socket[]; reset: number }> {
  const out: net.Socket[] = [];
  let reset = 0;
  // Batches stay under the accept backlog, so no SYN is dropped and retried.
  for (let done = 0; done < count; ) {
    const batch = Math.min(500, count - done);
    await Promise.all(
      Array.from({ length: batch }, () =>
        new Promise<void>((resolve) => {
          const c = net.connect({ port, host: "127.0.0.1", localAddress: from });
          clients.push(c);
          const settle = (): void => resolve();
          c.on("error", (e: NodeJS.ErrnoException) => {
            if (e.code === "ECONNRESET") reset++;
            settle();
          });
          // Open means the server kept it: it answers each connection it keeps with one byte.
          c.once("data", () => {
            out.push(c);
            settle();
          });
        }),
      ),
    );
    done += batch;
  }
  return { open: out, reset };
}

describe("limit with real sockets", () => {
  it(`caps one client at exactly ${CAP} open connections and admits again as they close`, async () => {
    const table = new ConnectionTable();
    const limiter = new Limiter({ ...LIMIT_DEFAULTS, rate: 0, burst: 0, maxConcurrent: CAP });
    const grouping = { v4Prefix: 32, v6Prefix: 64 };
    let seq = 0;
    server = net.createServer((socket) => {
      socket.on("error", () => undefined);
      const info: ConnectionInfo = {
        id: `c${++seq}`,
        mode: "plain",
        family: 4,
        localAddress: socket.localAddress!,
        localPort: socket.localPort!,
        remoteAddress: socket.remoteAddress!,
        remotePort: socket.remotePort!,
        acceptedAt: Date.now(),
      };
      table.add(socket, info, { listener: "test", replay: Buffer.alloc(0), unclaimedTimeoutMs: 0, unclaimedAction: "close" });
      const admission = limiter.admit(addressKey(info.remoteAddress, grouping)!);
      if (!admission.allowed) {
        socket.resetAndDestroy();
        return;
      }
      table.whenGone(info.id, admission.release);
      socket.write("k");
    });
    await new Promise<void>((r) => server!.listen({ port: 0, host: "127.0.0.1", backlog: 4096 }, r));
    const port = (server.address() as net.AddressInfo).port;

    const first = await open(port, "127.0.0.5", CAP + 100);
    expect(first.open).toHaveLength(CAP);
    expect(first.reset).toBe(100);
    expect(limiter.openOf("127.0.0.5")).toBe(CAP);
    // Another client is not held back by this one's cap.
    expect((await open(port, "127.0.0.6", 10)).open).toHaveLength(10);

    for (const c of first.open.slice(0, 10)) c.destroy();
    const deadline = Date.now() + 5000;
    while (limiter.openOf("127.0.0.5") > CAP - 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(limiter.openOf("127.0.0.5")).toBe(CAP - 10);
    const again = await open(port, "127.0.0.5", 20);
    expect(again.open).toHaveLength(10);
    expect(again.reset).toBe(10);
    expect(limiter.stats()).toMatchObject({ rejectedConcurrency: 110, evictions: 0 });
  }, 60_000);
});

// A live connection classified while its bytes arrive, without Node-RED: a plain listener
// on loopback accepts, the connection table gives more of the client's first bytes, and
// StreamClassifier.readFrom decides once a sniffer can (a request split over writes), at
// the byte cap, at the client's end, or when a silent client's server-first wait is over.
import net from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ConnectionInfo } from "../../src/connection";
import { connectionTable } from "../../src/connection-table";
import { StreamClassifier } from "../../src/classify";
import { TransparentListener } from "../../src/listener/transparent-listener";
import { nativeAvailability } from "../../src/native";
import { freePort } from "../support/net";
import { until } from "../support/wait";

const native = nativeAvailability();
const listeners: TransparentListener[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(listeners.splice(0).map((l) => l.close()));
});

/** A listener and one client connected to it; resolves with the client and the accepted connection's id. */
async function accepted(): Promise<{ client: net.Socket; id: string }> {
  const port = await freePort();
  const l = new TransparentListener({ port, address: "127.0.0.1", mode: "plain", unclaimedTimeoutMs: 0 }, `classify-live-${port}`);
  listeners.push(l);
  const infos: ConnectionInfo[] = [];
  l.on("connection", (i) => infos.push(i));
  await l.start();
  const client = net.connect(port, "127.0.0.1");
  client.on("error", () => undefined);
  sockets.push(client);
  await until(() => infos.length === 1, "the connection");
  return { client, id: infos[0]!.id };
}

describe("StreamClassifier.readFrom a live connection", () => {
  beforeEach((ctx) => ctx.skip(!native.available, native.available ? "" : `the listener needs the native addon: ${native.reason}`));

  it("waits for the rest of a request head written in pieces", async () => {
    const { client, id } = await accepted();
    client.write("GET /inde");
    const stream = new StreamClassifier({ timeoutMs: 10_000 });
    const result = stream.readFrom(connectionTable(), id);
    await new Promise((r) => setTimeout(r, 50));
    client.write("x.html HTTP/1.1\r\nHost: example.com\r\n\r\n");
    const c = await result;
    expect(c.protocol).toBe("http1");
    expect(c.fields.host).toBe("example.com");
    expect(stream.classification).toBe(c);
  });

  it("decides at the byte cap without waiting for more", async () => {
    const { client, id } = await accepted();
    client.write(Buffer.alloc(64, 0x41));
    const stream = new StreamClassifier({ maxBytes: 16, timeoutMs: 600_000 });
    const c = await stream.readFrom(connectionTable(), id);
    expect(c.bytes).toBe(16);
    expect(stream.bytes).toEqual(Buffer.alloc(16, 0x41));
  });

  it("decides with what came when the client ends", async () => {
    const { client, id } = await accepted();
    client.end("GET /a");
    const stream = new StreamClassifier({ timeoutMs: 600_000 });
    const c = await stream.readFrom(connectionTable(), id);
    expect(["incomplete", "unknown"]).toContain(c.protocol);
    expect(c.bytes).toBe(6);
  });

  it("a client that sends nothing is server-first once that wait is over", async () => {
    const { id } = await accepted();
    const stream = new StreamClassifier({ serverFirstMs: 50, timeoutMs: 600_000 });
    const c = await stream.readFrom(connectionTable(), id);
    expect(c.protocol).toBe("server-first");
  });
});

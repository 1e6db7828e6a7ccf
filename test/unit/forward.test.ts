// The forwarding core in this process on loopback: a plain-mode listener hands each
// connection to forwardConnection/rejectConnection, real upstream servers answer. Every
// behaviour runs through both pumps (the addon's splice thread and Node streams).
import crypto from "node:crypto";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectionInfo } from "../../src/connection";
import { forwardConnection, holdUnclaimedForward, rejectConnection, type ForwardOptions, type ForwardSummary } from "../../src/forward";
import { TransparentListener } from "../../src/listener/transparent-listener";
import { parseProxyHeader } from "../../src/proxy-protocol";
import { connectionTable } from "../../src/connection-table";
import { until } from "../support/wait";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let nextName = 0;
/** A plain listener on loopback whose connections are forwarded with `options` (or rejected). */
async function gateway(handle: (info: ConnectionInfo) => Promise<ForwardSummary>, sniffBytes = 0): Promise<{ port: number; name: string; summaries: ForwardSummary[] }> {
  const name = `fwd-unit-${nextName++}`;
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const free = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const l = new TransparentListener({ port: free, address: "127.0.0.1", mode: "plain", sniffBytes, sniffTimeoutMs: 200, unclaimedTimeoutMs: 0 }, name);
  const summaries: ForwardSummary[] = [];
  l.on("connection", (info: ConnectionInfo) => {
    void handle(info).then((s) => summaries.push(s));
  });
  await l.start();
  cleanups.push(() => l.close());
  return { port: l.address()!.port, name, summaries };
}

function forwardVia(options: ForwardOptions): (info: ConnectionInfo) => Promise<ForwardSummary> {
  return (info) => forwardConnection(connectionTable().claim(info.id, "test")!, options).done;
}

async function server(onConnection: (s: net.Socket) => void): Promise<number> {
  const accepted: net.Socket[] = [];
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    s.on("error", () => undefined);
    onConnection(s);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  cleanups.push(() => new Promise((r) => srv.close(r)));
  cleanups.push(() => {
    for (const s of accepted) s.destroy();
  });
  return (srv.address() as net.AddressInfo).port;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => resolve(s));
    s.once("error", reject);
    cleanups.push(() => s.destroy());
  });
}

function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on("data", (c: Buffer) => parts.push(c));
    s.once("end", () => resolve(Buffer.concat(parts)));
    s.once("error", reject);
  });
}

for (const pump of ["native", "js"] as const) {
  describe(`forward on loopback, ${pump} pump`, () => {
    it("replays the sniffed bytes first, then carries both directions and half-close", async () => {
      // The server answers only after the client's FIN: the answer must still arrive.
      const upstreamPort = await server((s) => {
        void readAll(s).then((got) => s.end(`got:${got.toString()}`));
      });
      const { port, summaries } = await gateway(forwardVia({ target: { address: "127.0.0.1", port: upstreamPort }, pump }), 5);
      const c = await connect(port);
      c.write("hello ");
      await new Promise((r) => setTimeout(r, 50));
      c.end("world");
      expect((await readAll(c)).toString()).toBe("got:hello world");
      await until(() => summaries.length === 1, "summary");
      expect(summaries[0]).toMatchObject({ action: "forward", end: "closed", pump, bytesToUpstream: 11, bytesToClient: 15, target: { address: "127.0.0.1", port: upstreamPort } });
    });

    it("carries 1 GiB with equal checksums end to end", async () => {
      const size = 1024 * 1024 * 1024;
      const chunk = crypto.randomBytes(1 << 20);
      const upstreamPort = await server((s) => {
        const h = crypto.createHash("sha256");
        s.on("data", (c: Buffer) => h.update(c));
        s.once("end", () => s.end(h.digest("hex")));
      });
      const { port, summaries } = await gateway(forwardVia({ target: { address: "127.0.0.1", port: upstreamPort }, pump }));
      const c = await connect(port);
      const sent = crypto.createHash("sha256");
      const answer = readAll(c);
      for (let i = 0; i < size / chunk.length; i++) {
        sent.update(chunk);
        if (!c.write(chunk)) await new Promise((r) => c.once("drain", r));
      }
      c.end();
      expect((await answer).toString()).toBe(sent.digest("hex"));
      await until(() => summaries.length === 1, "summary");
      expect(summaries[0]!.bytesToUpstream).toBe(size);
      expect(summaries[0]!.bytesToClient).toBe(64);
      // Hashing 1 GiB twice takes most of the time: a loaded machine or a sanitized build needs more than the default.
    }, 180_000);

    it("a slow reader holds the upstream back (memory stays bounded)", async () => {
      let accepted = 0;
      let stop = false;
      const block = Buffer.alloc(1 << 16, 7);
      const upstreamPort = await server((s) => {
        const pushMore = (): void => {
          while (!stop && s.write(block, () => (accepted += block.length)));
          if (!stop) s.once("drain", pushMore);
        };
        pushMore();
      });
      const { port } = await gateway(forwardVia({ target: { address: "127.0.0.1", port: upstreamPort }, pump }));
      const c = await connect(port);
      c.pause();
      const rssBefore = process.memoryUsage().rss;
      await new Promise((r) => setTimeout(r, 1500));
      stop = true;
      // Only socket buffers sit between the server and the paused client (a few MiB on
      // loopback); without backpressure the server could push gigabytes in that time.
      expect(accepted).toBeLessThan(48 * 1024 * 1024);
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1024 * 1024);
      let got = 0;
      c.on("data", (d: Buffer) => (got += d.length));
      c.resume();
      await until(() => got >= 1 << 20, "data flows once the client reads");
    });

    it("a refused upstream closes the client and says ECONNREFUSED", async () => {
      const dead = await server(() => undefined);
      await Promise.all(cleanups.splice(-2).reverse().map((c) => c()));
      const { port, summaries } = await gateway(forwardVia({ target: { address: "127.0.0.1", port: dead }, pump }));
      const c = await connect(port);
      expect((await readAll(c)).length).toBe(0);
      await until(() => summaries.length === 1, "summary");
      expect(summaries[0]).toMatchObject({ end: "connect-failed", error: { code: "ECONNREFUSED" } });
      expect(summaries[0]!.error!.message).toMatch(/refused/);
    });

    it("a client reset mid-stream resets the upstream and is reported", async () => {
      let upstreamError = "";
      const upstreamPort = await server((s) => {
        s.on("error", (e: NodeJS.ErrnoException) => (upstreamError = e.code ?? ""));
        s.resume();
        const block = Buffer.alloc(1 << 16);
        const more = (): void => {
          while (!s.destroyed && s.write(block));
          if (!s.destroyed) s.once("drain", more);
        };
        more();
      });
      const { port, summaries } = await gateway(forwardVia({ target: { address: "127.0.0.1", port: upstreamPort }, pump }));
      const c = await connect(port);
      let got = 0;
      await new Promise<void>((r) => c.on("data", (d: Buffer) => ((got += d.length) > 1 << 20 ? r() : undefined)));
      c.resetAndDestroy();
      await until(() => summaries.length === 1, "summary");
      expect(["client-reset", "upstream-reset"]).toContain(summaries[0]!.end);
      expect(summaries[0]!.end).toBe("client-reset");
      await until(() => upstreamError === "ECONNRESET", "upstream sees the reset");
    });

    it("PROXY v2 with authority and ALPN TLVs reaches the upstream before the replayed bytes", async () => {
      let first: Buffer = Buffer.alloc(0);
      const upstreamPort = await server((s) => {
        void readAll(s).then((b) => {
          first = b;
          s.end();
        });
      });
      const { port, summaries } = await gateway(
        forwardVia({ target: { address: "127.0.0.1", port: upstreamPort }, pump, identity: "proxy-v2", authority: "a.example", alpn: "h2" }),
        3,
      );
      const c = await connect(port);
      const clientPort = c.localPort;
      c.end("abcdef");
      await readAll(c);
      await until(() => summaries.length === 1, "summary");
      const parsed = parseProxyHeader(first);
      expect(parsed.kind).toBe("header");
      if (parsed.kind !== "header") return;
      expect(parsed.header).toMatchObject({ version: 2, sourceAddress: "127.0.0.1", sourcePort: clientPort, authority: "a.example", alpn: "h2" });
      expect(first.subarray(parsed.header.length).toString()).toBe("abcdef");
      expect(summaries[0]!.bytesToUpstream).toBe(6);
    });

    it("a listener ending its claimed connections moves no byte to the next client", async () => {
      const got: string[] = [];
      const up = await server((s) => {
        const idx = got.push("") - 1;
        s.once("data", () => {
          // A reply after the listener's close: a stale pump would still carry it.
          const late = setTimeout(() => s.write(`u${idx}:late;`), 200);
          s.once("close", () => clearTimeout(late));
        });
        s.on("data", (c: Buffer) => {
          got[idx] += c.toString();
          s.write(`u${idx}:${c.toString()};`);
        });
      });
      const { port, name, summaries } = await gateway(forwardVia({ target: { address: "127.0.0.1", port: up }, pump }));
      const first = await connect(port);
      const firstSaw: Buffer[] = [];
      first.on("data", (c: Buffer) => firstSaw.push(c));
      first.on("error", () => undefined);
      first.write("hello-1");
      await until(() => Buffer.concat(firstSaw).toString() === "u0:hello-1;", "first echo");
      // The second client's own socket is made first, so the fd number the close frees goes
      // to the connection the listener accepts next.
      const dialing = connect(port);
      expect(connectionTable().closeListener(name, false)).toBe(1);
      const second = await dialing;
      const secondSaw: Buffer[] = [];
      second.on("data", (c: Buffer) => secondSaw.push(c));
      second.write("secret-2");
      await until(() => got.some((g) => g.includes("secret-2")), "the secret upstream");
      // A stale pump carries the secret to upstream 0, and upstream 0's late reply here.
      await until(() => Buffer.concat(secondSaw).toString().includes("late"), "the late reply");
      expect(got[0]).toBe("hello-1");
      expect(got[1]).toBe("secret-2");
      expect(Buffer.concat(secondSaw).toString()).toBe("u1:secret-2;u1:late;");
      await until(() => summaries.length >= 1, "first summary");
      expect(summaries[0]!.end).toBe("stopped");
      second.end();
    });

    it("keeps every connection's bytes its own while ends from JS and new clients interleave", async () => {
      const TOTAL = 1000;
      const PARALLEL = 48;
      const mixed: string[] = [];
      const up = await server((s) => {
        let own: string | null = null;
        let seen = "";
        s.on("data", (c: Buffer) => {
          seen += c.toString();
          for (const t of seen.split(";").slice(0, -1)) {
            own ??= t;
            if (t !== own) mixed.push(`upstream of ${own} got ${t}`);
          }
          seen = seen.slice(seen.lastIndexOf(";") + 1);
          s.write(c);
        });
        s.on("end", () => s.end());
      });
      const ends: Array<Promise<void>> = [];
      const { port } = await gateway((info) => {
        const session = forwardConnection(connectionTable().claim(info.id, "test")!, { target: { address: "127.0.0.1", port: up }, pump });
        // About a third are ended from JS while their bytes flow.
        if (Math.random() < 0.35) {
          ends.push(new Promise((r) => setTimeout(() => {
            connectionTable().destroy(info.id);
            r();
          }, Math.floor(Math.random() * 15))));
        }
        return session.done;
      });
      const one = (i: number): Promise<void> =>
        new Promise((resolve) => {
          const token = `T${String(i).padStart(6, "0")}`;
          const s = net.connect({ port, host: "127.0.0.1" });
          let seen = "";
          let rounds = 0;
          const timer = setTimeout(() => s.destroy(), 5000);
          s.on("error", () => undefined);
          s.on("close", () => {
            clearTimeout(timer);
            resolve();
          });
          s.on("connect", () => s.write(`${token};`));
          s.on("data", (c: Buffer) => {
            seen += c.toString();
            for (const t of seen.split(";").slice(0, -1)) if (t !== token) mixed.push(`client ${token} got ${t}`);
            seen = seen.slice(seen.lastIndexOf(";") + 1);
            if (++rounds < 4) s.write(`${token};`);
            else s.end();
          });
        });
      let next = 0;
      await Promise.all(Array.from({ length: PARALLEL }, async () => {
        while (next < TOTAL) await one(next++);
      }));
      await Promise.all(ends);
      expect(mixed).toEqual([]);
    }, 90_000);

    it("idle timeout ends a silent connection", async () => {
      const upstreamPort = await server((s) => s.resume());
      const { port, summaries } = await gateway(forwardVia({ target: { address: "127.0.0.1", port: upstreamPort }, pump, idleTimeoutMs: 300 }));
      const c = await connect(port);
      c.write("x");
      await readAll(c);
      await until(() => summaries.length === 1, "summary");
      expect(summaries[0]).toMatchObject({ end: "idle-timeout", error: { code: "ETIMEDOUT" } });
    });
  });
}

describe("forward decisions", () => {
  it("forwards over IPv6, both pumps, with a PROXY v1 header naming the IPv6 client", async () => {
    for (const pump of ["native", "js"] as const) {
      let first: Buffer = Buffer.alloc(0);
      const srv = net.createServer({ allowHalfOpen: true }, (s) => {
        void readAll(s).then((all) => {
          first = all;
          s.end("v6");
        });
      });
      await new Promise<void>((r) => srv.listen(0, "::1", r));
      cleanups.push(() => new Promise((r) => srv.close(r)));
      const probe = net.createServer();
      await new Promise<void>((r) => probe.listen(0, "::1", r));
      const free = (probe.address() as net.AddressInfo).port;
      await new Promise((r) => probe.close(r));
      const l = new TransparentListener({ port: free, address: "::1", family: "ipv6", mode: "plain", unclaimedTimeoutMs: 0 }, `unit-v6-${pump}`);
      const summaries: ForwardSummary[] = [];
      l.on("connection", (info: ConnectionInfo) => {
        void forwardConnection(connectionTable().claim(info.id, "t")!, { target: { address: "[::1]", port: (srv.address() as net.AddressInfo).port }, identity: "proxy-v1", pump }).done.then((x) => summaries.push(x));
      });
      await l.start();
      cleanups.push(() => l.close());
      const c = net.connect({ port: free, host: "::1" });
      cleanups.push(() => c.destroy());
      const clientPort = await new Promise<number>((r) => c.once("connect", () => r(c.localPort!)));
      c.end("hi");
      expect((await readAll(c)).toString()).toBe("v6");
      expect(first.toString()).toMatch(new RegExp(`^PROXY TCP6 ::1 ::1 ${clientPort} ${free}\r\nhi$`));
      await until(() => summaries.length === 1, "summary");
      expect(summaries[0]).toMatchObject({ end: "closed", pump, target: { address: "::1" } });
    }
  });

  it("refuses a target equal to the listener itself", async () => {
    let listenerPort = 0;
    const { port, summaries } = await gateway((info) => forwardConnection(connectionTable().claim(info.id, "t")!, { target: { address: "127.0.0.1", port: listenerPort } }).done);
    listenerPort = port;
    const c = await connect(port);
    await readAll(c);
    await until(() => summaries.length === 1, "summary");
    expect(summaries[0]).toMatchObject({ end: "loop", error: { code: "ERR_FORWARD_LOOP" }, pump: null });
  });

  it("without an original destination, forwarding to it fails with a clear reason", async () => {
    const { port, summaries } = await gateway(forwardVia({ target: "original" }));
    const c = await connect(port);
    await readAll(c);
    await until(() => summaries.length === 1, "summary");
    expect(summaries[0]).toMatchObject({ end: "no-target", error: { code: "ERR_FORWARD_TARGET" } });
  });

  it("reject with FIN ends the client orderly; with RST resets it", async () => {
    const fin = await gateway((info) => rejectConnection(connectionTable().claim(info.id, "t")!, "fin"));
    const a = await connect(fin.port);
    a.write("some bytes the gateway never reads");
    expect((await readAll(a)).length).toBe(0);
    a.end();
    const rst = await gateway((info) => rejectConnection(connectionTable().claim(info.id, "t")!, "rst"));
    // The reset may come before Node reports the connect: the error is what counts.
    const b = net.connect({ port: rst.port, host: "127.0.0.1" });
    cleanups.push(() => b.destroy());
    const err = await new Promise<NodeJS.ErrnoException>((r) => b.once("error", r));
    expect(err.code).toBe("ECONNRESET");
    await until(() => fin.summaries.length === 1 && rst.summaries.length === 1, "summaries");
    expect(fin.summaries[0]).toMatchObject({ action: "reject", end: "rejected" });
  });

  it("while held, the table's unclaimed action forward hands connections to the forwarder", async () => {
    const summaries: ForwardSummary[] = [];
    expect(connectionTable().canDo("forward")).toBe(false);
    const release = holdUnclaimedForward("unit", { connectTimeoutMs: 1000 }, (s) => summaries.push(s));
    cleanups.push(release);
    expect(connectionTable().canDo("forward")).toBe(true);
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const free = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const l = new TransparentListener({ port: free, address: "127.0.0.1", mode: "plain", unclaimedTimeoutMs: 100, unclaimedAction: "forward" }, "unit-unclaimed");
    await l.start();
    cleanups.push(() => l.close());
    const c = await connect(free);
    await readAll(c);
    // Plain mode has no original destination: the forwarder says so instead of holding the client.
    await until(() => summaries.length === 1, "summary");
    expect(summaries[0]).toMatchObject({ end: "no-target", error: { code: "ERR_FORWARD_TARGET" } });
    release();
    expect(connectionTable().canDo("forward")).toBe(false);
  });
});

// Every exported native function called with what JS can wrongly hand it: wrong types,
// negative, fractional and huge numbers, closed fds, fds that are not sockets (a file, a
// pipe), strings with NUL. Each call must throw an Error with a `code` (argument errors
// ERR_INVALID_ARG_VALUE, system call errors the errno name) and the process must go on.
// npm run test:sanitize runs this file against the ASan/UBSan build too.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadFlowAddon, type FlowAddon } from "../../src/flow/native";
import { loadNative, type NativeAddon } from "../../src/native/index";

const BAD_NUMBERS: ReadonlyArray<[string, unknown]> = [
  ["undefined", undefined],
  ["null", null],
  ["-1", -1],
  ["1.5", 1.5],
  ["NaN", NaN],
  ["Infinity", Infinity],
  ["-Infinity", -Infinity],
  ["2^31", 2 ** 31],
  ["2^53", 2 ** 53],
  ["-2^31", -(2 ** 31)],
  ["a numeric string", "3"],
  ["a bigint", 3n],
  ["an object", {}],
  ["an array", [3]],
  ["a function", () => 3],
  ["a symbol", Symbol("fd")],
  ["a string with NUL", "3\u0000"],
];

/** Calls fn; it must throw an Error with a string code. Returns that error. */
function expectCoded(fn: () => unknown): Error & { code: string } {
  let thrown: unknown = null;
  let result: unknown;
  try {
    result = fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `the call must throw: ${fn.toString()} returned ${String(result)}`).toBeInstanceOf(Error);
  expect(typeof (thrown as { code?: unknown }).code, `code of: ${(thrown as Error).message}`).toBe("string");
  return thrown as Error & { code: string };
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traffic-args-"));
let fileFd = -1;
let pipeRead = -1;
let pipeWrite = -1;
let native: NativeAddon;
let flow: FlowAddon;

/** The fds that are not open sockets, each with the errno the addon must report. */
function badFds(): ReadonlyArray<[string, number, string]> {
  // Closed just now, so no other open in between can have reused the number.
  const closedFd = fs.openSync(path.join(tmp, "not-a-socket"), "r");
  fs.closeSync(closedFd);
  return [
    ["a closed fd", closedFd, "EBADF"],
    ["INT_MAX", 2 ** 31 - 1, "EBADF"],
    ["a regular file", fileFd, "ENOTSOCK"],
    ["a pipe", pipeRead, "ENOTSOCK"],
  ];
}

beforeAll(() => {
  native = loadNative();
  flow = loadFlowAddon();
  const file = path.join(tmp, "not-a-socket");
  fs.writeFileSync(file, "x");
  fileFd = fs.openSync(file, "r");
  // A pipe whose fds Node does not own: a FIFO opened non-blocking at both ends.
  const fifo = path.join(tmp, "fifo");
  execFileSync("mkfifo", [fifo]);
  pipeRead = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  pipeWrite = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
});

afterAll(() => {
  for (const fd of [fileFd, pipeRead, pipeWrite]) if (fd >= 0) fs.closeSync(fd);
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("traffic_native: invalid arguments give typed errors", () => {
  const FD_FUNCTIONS = ["getOriginalDst", "getLocalAddress", "getPeerAddress", "socketOptions", "setNoDelay", "discardInput", "closeFd"] as const;

  for (const name of FD_FUNCTIONS) {
    it(`${name}: every wrong fd value is ERR_INVALID_ARG_VALUE`, () => {
      const fn = native[name] as (...args: unknown[]) => unknown;
      expect(expectCoded(() => fn()).code).toBe("ERR_INVALID_ARG_VALUE");
      for (const [, value] of BAD_NUMBERS) expect(expectCoded(() => fn(value)).code).toBe("ERR_INVALID_ARG_VALUE");
    });

    it(`${name}: fds that are closed or not sockets give the errno name, and nothing is closed`, () => {
      const fn = native[name] as (fd: number) => unknown;
      for (const [label, fd, code] of badFds()) expect(expectCoded(() => fn(fd)).code, label).toBe(code);
      // closeFd refuses non-sockets: the file and the pipe are still open.
      expect(fs.fstatSync(fileFd).isFile()).toBe(true);
      expect(fs.fstatSync(pipeRead).isFIFO()).toBe(true);
    });
  }

  it("acceptedInfo: wrong fds, a missing or non-boolean flag, a listening (unconnected) socket", async () => {
    for (const [, value] of BAD_NUMBERS) expect(expectCoded(() => native.acceptedInfo(value as number, true)).code).toBe("ERR_INVALID_ARG_VALUE");
    for (const [label, fd, code] of badFds()) expect(expectCoded(() => native.acceptedInfo(fd, false)).code, label).toBe(code);
    for (const flag of [undefined, 1, "true", null]) expect(expectCoded(() => native.acceptedInfo(fileFd, flag as unknown as boolean)).code).toBe("ERR_INVALID_ARG_VALUE");
    const fd = native.createListener({ address: "127.0.0.1", port: 0 });
    try {
      expect(expectCoded(() => native.acceptedInfo(fd, true)).code).toBe("ENOTCONN");
      expect(expectCoded(() => native.getPeerAddress(fd)).code).toBe("ENOTCONN");
      expect(native.getLocalAddress(fd).address).toBe("127.0.0.1");
    } finally {
      native.closeFd(fd);
    }
  });

  it("describeErrno: errno outside 1..4095 or not an integer, syscall not a string", () => {
    for (const [, value] of BAD_NUMBERS) expect(expectCoded(() => native.describeErrno(value as number, "x")).code).toBe("ERR_INVALID_ARG_VALUE");
    for (const errno of [0, 4096]) expect(expectCoded(() => native.describeErrno(errno, "x")).code).toBe("ERR_INVALID_ARG_VALUE");
    for (const syscall of [undefined, 1, {}, null]) expect(expectCoded(() => native.describeErrno(2, syscall as string)).code).toBe("ERR_INVALID_ARG_VALUE");
    // A NUL in the text is carried, not cut: it is only ever a message.
    expect(native.describeErrno(2, "a\u0000b").message.startsWith("a\u0000b failed: ENOENT")).toBe(true);
  });

  it("createListener: every malformed option is ERR_INVALID_ARG_VALUE and leaves no socket behind", () => {
    const fdsBefore = fs.readdirSync("/proc/self/fd").length;
    const create = native.createListener as (o: unknown) => number;
    for (const options of [undefined, null, 5, "127.0.0.1", [], Symbol("o")]) expect(expectCoded(() => create(options)).code).toBe("ERR_INVALID_ARG_VALUE");
    const base = { address: "127.0.0.1", port: 0 };
    const cases: unknown[] = [
      { port: 0 },
      { ...base, address: 127 },
      { ...base, address: "127.0.0.1\u0000" },
      { ...base, address: "127.0.0.1\u0000.5" },
      { ...base, address: "::1\u0000" },
      { ...base, address: "localhost" },
      { ...base, address: "1".repeat(100_000) },
      { ...base, address: "" },
      { ...base, port: 65536 },
      { ...base, port: "80" },
      ...BAD_NUMBERS.filter(([label]) => label !== "undefined").map(([, port]) => ({ ...base, port })),
      ...BAD_NUMBERS.filter(([label]) => label !== "undefined").map(([, backlog]) => ({ ...base, backlog })),
      { ...base, backlog: 0 },
      ...["transparent", "freebind", "reuseAddr", "reusePort", "v6Only"].flatMap((k) => [1, "true", null, {}].map((v) => ({ ...base, [k]: v }))),
    ];
    for (const options of cases) expect(expectCoded(() => create(options)).code, JSON.stringify(options, (_k, v: unknown) => (typeof v === "bigint" || typeof v === "symbol" ? String(v) : v))?.slice(0, 80)).toBe("ERR_INVALID_ARG_VALUE");
    // A throwing getter is the caller's error, passed through as it is.
    const getter = { port: 0, get address(): string { throw Object.assign(new Error("boom"), { code: "EBOOM" }); } };
    expect(expectCoded(() => create(getter)).code).toBe("EBOOM");
    expect(fs.readdirSync("/proc/self/fd").length).toBe(fdsBefore);
  });

  it("createListener: kernel refusals are errno names (a foreign address without freebind, a port in use)", async () => {
    expect(expectCoded(() => native.createListener({ address: "192.0.2.1", port: 0 })).code).toBe("EADDRNOTAVAIL");
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as net.AddressInfo).port;
      expect(expectCoded(() => native.createListener({ address: "127.0.0.1", port, reuseAddr: false })).code).toBe("EADDRINUSE");
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe("traffic_native: the ClientHello key refuses what is malformed and reads only inside the buffer", () => {
  const DONE = 15;
  // Ranges in a 64-byte buffer: ciphers, extensions (one empty SNI), no other list.
  function place(s: Int32Array): Int32Array {
    s.fill(-1);
    s.set([0x0303, 0, 0, 0, 10, 14], 0);
    s[12] = 20;
    s[13] = 24;
    return s;
  }
  const hello = Buffer.alloc(64);
  hello.writeUInt16BE(0x1301, 10);
  hello.writeUInt16BE(0x1302, 12);

  it("helloKey: anything but a Buffer is ERR_INVALID_ARG_VALUE", () => {
    const s = place(native.helloKeyInit());
    expect(s).toBeInstanceOf(Int32Array);
    expect(s.length).toBe(20);
    for (const bad of [undefined, null, 3, "x", {}, [1]]) {
      expect(expectCoded(() => native.helloKey(bad as Buffer)).code).toBe("ERR_INVALID_ARG_VALUE");
    }
  });

  it("helloKey: a range outside the buffer, backwards or past its end, gives no key; the slots survive a detached view", () => {
    const s = place(native.helloKeyInit());
    native.helloKey(hello);
    expect(s[DONE]).toBe(1);
    const key = Array.from(s.subarray(16, 20));
    // The same hello gives the same key; another cipher another one.
    place(s);
    native.helloKey(Buffer.from(hello));
    expect(Array.from(s.subarray(16, 20))).toEqual(key);
    const other = Buffer.from(hello);
    other.writeUInt16BE(0x1303, 12);
    place(s);
    native.helloKey(other);
    expect(Array.from(s.subarray(16, 20))).not.toEqual(key);
    for (const [slot, value] of [
      [5, 65],
      [5, 2 ** 31 - 1],
      [4, 15],
      [7, 65],
      [13, 2 ** 31 - 1],
      [11, 65],
    ] as const) {
      place(s);
      if (slot === 7 || slot === 11) s[slot - 1] = 0;
      s[slot] = value;
      native.helloKey(hello);
      expect(s[DONE], `slot ${slot} = ${value}`).toBe(0);
    }
    // An extension header whose length points far past the block ends the walk.
    const long = Buffer.from(hello);
    long.writeUInt16BE(0xffff, 22);
    place(s);
    native.helloKey(long);
    expect(s[DONE]).toBe(1);
    // A view whose buffer is taken away (or refused to be): the memory stays the addon's,
    // a new view reads and writes it.
    try {
      structuredClone(s.buffer, { transfer: [s.buffer] });
    } catch {
      // not transferable: as good
    }
    native.helloKey(hello);
    const again = place(native.helloKeyInit());
    native.helloKey(hello);
    expect([again[DONE], ...again.subarray(16, 20)]).toEqual([1, ...key]);
  });
});

describe("traffic_native: the pump and the upstream connect refuse what is malformed", () => {
  type PumpCtor = new (...args: unknown[]) => { stop(): void };
  const noop = (): void => undefined;

  async function socketPair(): Promise<{ a: net.Socket; b: net.Socket; close: () => Promise<void> }> {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const accepted = new Promise<net.Socket>((r) => server.once("connection", r));
    const a = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
    const b = await accepted;
    return { a, b, close: async () => { a.destroy(); b.destroy(); await new Promise((r) => server.close(r)); } };
  }

  it("SplicePump: wrong fds, options, sizes, buffers or callbacks are ERR_INVALID_ARG_VALUE or the errno name; no fd leaks", async () => {
    const Pump = native.SplicePump as unknown as PumpCtor;
    const pair = await socketPair();
    try {
      const fdA = (pair.a as unknown as { _handle: { fd: number } })._handle.fd;
      const fdB = (pair.b as unknown as { _handle: { fd: number } })._handle.fd;
      const fdsBefore = fs.readdirSync("/proc/self/fd").length;
      const empty = Buffer.alloc(0);
      const malformed: unknown[][] = [
        [],
        [fdA],
        [fdA, fdB, 0, empty],
        [fdA, fdB, 0, "bytes", noop],
        [fdA, fdB, "0", empty, noop],
        [fdA, "b", 0, empty, noop],
        [fdA, fdA, 0, empty, noop],
        ...BAD_NUMBERS.map(([, v]) => [v, fdB, 0, empty, noop]),
        ...badFds().map(([, fd]) => [fd, fdB, 0, empty, noop]),
        ...badFds().map(([, fd]) => [fdA, fd, 0, empty, noop]),
        [fdA, {}, 0, empty, noop],
        [fdA, { address: "localhost", port: 80 }, 0, empty, noop],
        [fdA, { address: "127.0.0.1", port: 0 }, 0, empty, noop],
        [fdA, { address: "127.0.0.1", port: 70000 }, 0, empty, noop],
        [fdA, { address: "127.0.0.1", port: 80, timeoutMs: -1 }, 0, empty, noop],
        [fdA, { address: "127.0.0.1", port: 80, mark: 2 ** 32 }, 0, empty, noop],
        [fdA, { address: "127.0.0.1", port: 80, localAddress: "::1" }, 0, empty, noop],
        [fdA, { address: "127.0.0.1\u0000", port: 80 }, 0, empty, noop],
      ];
      for (const args of malformed) {
        const label = args.map((a) => (typeof a === "object" && a !== null && !Buffer.isBuffer(a) ? JSON.stringify(a) : String(a))).join(", ").slice(0, 100);
        let code: unknown = "nothing thrown";
        try {
          new Pump(...args);
        } catch (err) {
          code = (err as { code?: unknown }).code;
        }
        expect(["ERR_INVALID_ARG_VALUE", "EBADF", "ENOTSOCK"], label).toContain(code);
      }
      const connect = native.connectUpstream as (o: unknown) => Promise<unknown>;
      for (const options of [undefined, 5, { port: 80 }, { address: "127.0.0.1", port: 80, localPort: -1 }]) {
        expect(expectCoded(() => connect(options)).code).toBe("ERR_INVALID_ARG_VALUE");
      }
      expect(fs.readdirSync("/proc/self/fd").length).toBe(fdsBefore);
    } finally {
      await pair.close();
    }
  });

  it("SplicePump with connect options: a refused upstream comes back through the callback, unconnected, and its socket is closed", async () => {
    const pair = await socketPair();
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    const port = (dead.address() as net.AddressInfo).port;
    await new Promise((r) => dead.close(r));
    try {
      const fdA = (pair.b as unknown as { _handle: { fd: number } })._handle.fd;
      pair.b.pause();
      type Outcome = { err: (Error & { code?: string; syscall?: string; side?: string }) | null; result: { connected: boolean; aToB: number; bToA: number } };
      const attempt = (): Promise<Outcome> =>
        new Promise<Outcome>((resolve) => {
          new native.SplicePump(fdA, { address: "127.0.0.1", port, timeoutMs: 2000 }, 0, Buffer.from("hi"), (err, result) => resolve({ err, result }));
        });
      // The first pump starts the shared workers and fills the pipe pool: count after it.
      await attempt();
      const fdsBefore = fs.readdirSync("/proc/self/fd").length;
      let outcome = await attempt();
      for (let i = 0; i < 20; i++) outcome = await attempt();
      expect(outcome.err?.code).toBe("ECONNREFUSED");
      expect(outcome.err?.side).toBe("b");
      expect(outcome.result).toMatchObject({ connected: false, aToB: 0, bToA: 0 });
      // The pump's own upstream socket is gone again; the client socket is still the caller's.
      expect(fs.readdirSync("/proc/self/fd").length).toBe(fdsBefore);
      expect(native.getPeerAddress(fdA).port).toBe(pair.a.localPort);
    } finally {
      await pair.close();
    }
  });
  it("connectUpstream: a refused upstream rejects with ECONNREFUSED from connect, and its socket is closed", async () => {
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    const port = (dead.address() as net.AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const fdsBefore = fs.readdirSync("/proc/self/fd").length;
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, () => native.connectUpstream({ address: "127.0.0.1", port, timeoutMs: 2000 }).then(() => null, (err: Error & { code?: string; syscall?: string }) => err)),
    );
    for (const err of outcomes) expect(err).toMatchObject({ code: "ECONNREFUSED", syscall: "connect" });
    expect(fs.readdirSync("/proc/self/fd").length).toBe(fdsBefore);
  });
});

describe("flow: invalid arguments give typed errors", () => {
  it("diagDump: wrong family or state mask", () => {
    const dump = flow.diagDump as (...a: unknown[]) => Buffer;
    expect(expectCoded(() => dump()).code).toBe("ERR_INVALID_ARG_VALUE");
    for (const [, value] of BAD_NUMBERS) {
      expect(expectCoded(() => dump(value, 2)).code).toBe("ERR_INVALID_ARG_VALUE");
      // 2^31 is a valid 32-bit mask; everything else in the table is not.
      if (value !== 2 ** 31) expect(expectCoded(() => dump(2, value)).code).toBe("ERR_INVALID_ARG_VALUE");
    }
    expect(expectCoded(() => dump(2, 2 ** 32)).code).toBe("ERR_INVALID_ARG_VALUE");
    for (const family of [0, 1, 3, 17, 255, 256]) expect(expectCoded(() => dump(family, 0xfff)).code).toBe("ERR_INVALID_ARG_VALUE");
    expect(Buffer.isBuffer(dump(2, 0xffffffff))).toBe(true);
  });

  it("DiagDestroyListener: start without a function, twice, stop twice", () => {
    const listener = new flow.DiagDestroyListener();
    const start = listener.start.bind(listener) as (f: unknown) => void;
    for (const [, value] of BAD_NUMBERS.filter(([label]) => label !== "a function")) expect(expectCoded(() => start(value)).code).toBe("ERR_INVALID_ARG_VALUE");
    listener.start(() => undefined);
    try {
      expect(expectCoded(() => listener.start(() => undefined)).code).toBe("ERR_ALREADY_STARTED");
    } finally {
      listener.stop();
      listener.stop();
    }
    expect(listener.stats()).toMatchObject({ jsLost: 0 });
  });

  it("BpfCapture.start: every malformed option is refused before anything is loaded", () => {
    const capture = new flow.BpfCapture();
    const start = capture.start.bind(capture) as (o: unknown, f: unknown) => unknown;
    const expected = flow.ebpfBuilt ? "ERR_INVALID_ARG_VALUE" : "ENOTSUP";
    for (const [, value] of BAD_NUMBERS.filter(([label]) => label !== "an object" && label !== "an array" && label !== "a function")) {
      expect(expectCoded(() => start(value, () => undefined)).code).toBe(expected);
    }
    expect(expectCoded(() => start({}, 5)).code).toBe(expected);
    const bad: unknown[] = [
      { ringBytes: 0 },
      { ringBytes: 3000 },
      { ringBytes: 4096 * 3 },
      { ringBytes: 2 ** 31 },
      { ringBytes: 2 ** 40 },
      { ringBytes: "4096" },
      { events: -1 },
      { events: 2 ** 32 },
      { sides: 1.5 },
      { firstBytes: NaN },
      { ownerFromIo: "yes" },
      { cgroupId: 5 },
      { cgroupId: -1n },
      { cgroupId: 2n ** 64n },
      { cgroupPath: 7 },
      { cgroupPath: "/sys/fs/cgroup\u0000/x", firstBytes: 16 },
      { ports: 80 },
      { ports: [0] },
      { ports: [-1] },
      { ports: [65536] },
      { ports: [2 ** 32 + 80] },
      { ports: ["80"] },
      { ports: [null] },
      { ports: [80.5] },
      { cidrs: {} },
      { cidrs: [5] },
      { cidrs: [null] },
      { cidrs: [{ address: "192.0.2.0", prefix: 24 }] },
      { cidrs: [{ address: Buffer.alloc(3), prefix: 8 }] },
      { cidrs: [{ address: Buffer.alloc(4), prefix: 33 }] },
      { cidrs: [{ address: Buffer.alloc(16), prefix: 129 }] },
      { cidrs: [{ address: Buffer.alloc(4), prefix: -1 }] },
      { cidrs: [{ address: Buffer.alloc(4) }] },
    ];
    for (const options of bad) {
      const label = JSON.stringify(options, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
      expect(expectCoded(() => start(options, () => undefined)).code, label).toBe(expected);
    }
    // Nothing started: stop is a no-op and nothing was counted.
    capture.stop();
    expect(capture.stats()).toEqual({ kernelLost: 0, kernelSkipped: 0, closeAtDestroy: 0, jsLost: 0, delivered: 0, batches: 0 });
  });

  it("methods called on a foreign receiver are V8's TypeError 'Illegal invocation', not a crash", () => {
    const calls: Array<() => unknown> = [
      () => (flow.BpfCapture.prototype.stats as () => unknown).call({}),
      () => (flow.BpfCapture.prototype.stop as () => unknown).call(5),
      () => (flow.DiagDestroyListener.prototype.start as (f: unknown) => unknown).call({}, () => undefined),
      () => (flow.DiagDestroyListener.prototype.stats as () => unknown).call(null),
    ];
    for (const call of calls) expect(call).toThrow(/Illegal invocation/);
    expect(() => (flow.BpfCapture as unknown as () => unknown)()).toThrow(TypeError);
  });

  it("the process is still whole: the addons still answer", () => {
    expect(native.describeErrno(9, "close").code).toBe("EBADF");
    expect(typeof flow.clocks().boottimeNs).toBe("bigint");
  });
});

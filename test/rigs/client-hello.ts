// ClientHello surgery for the fingerprint tests and the classify benchmark.

/** A one-record ClientHello with its extensions taken apart: the bytes before and after them, and each extension whole. */
export interface HelloExtensions {
  readonly head: Buffer;
  readonly extensions: readonly Buffer[];
  readonly tail: Buffer;
}

/** Splits a one-record ClientHello (record header, handshake header, body) around its extensions. */
export function helloExtensions(hello: Buffer): HelloExtensions {
  // Record (5) and handshake (4) headers, then version (2) and random (32).
  let p = 9 + 34;
  p += 1 + hello[p]!; // session id
  p += 2 + hello.readUInt16BE(p); // cipher suites
  p += 1 + hello[p]!; // compression methods
  const start = p + 2;
  const end = start + hello.readUInt16BE(p);
  const extensions: Buffer[] = [];
  for (let q = start; q < end; q += 4 + hello.readUInt16BE(q + 2)) extensions.push(hello.subarray(q, q + 4 + hello.readUInt16BE(q + 2)));
  return { head: hello.subarray(0, start), extensions, tail: hello.subarray(end) };
}

/** The same ClientHello with its extensions in the given order (the lengths stay the same). */
export function withExtensions(parts: HelloExtensions, extensions: readonly Buffer[]): Buffer {
  return Buffer.concat([parts.head, ...extensions, parts.tail]);
}

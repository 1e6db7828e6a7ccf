// The request and answer of the load rig's client and upstream server: plain HTTP/1.1 so
// `classify` names it http1, with a body that depends on the request id so a byte
// delivered to the wrong connection, lost or repeated is noticed.

/** The request a load client sends on connection `id`. */
export function requestFor(id: string): string {
  return `GET /${id} HTTP/1.1\r\nHost: load.test\r\nUser-Agent: traffic-load\r\nConnection: close\r\n\r\n`;
}

/** `bytes` bytes of a pattern seeded by `id`. */
export function bodyFor(id: string, bytes: number): Buffer {
  const unit = Buffer.from(`${id};`, "latin1");
  const body = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += unit.length) unit.copy(body, i, 0, Math.min(unit.length, bytes - i));
  return body;
}

/** The upstream's full answer, naming the peer it saw (the proxy, or the client when not proxied). */
export function responseFor(id: string, bytes: number, peer: string): Buffer {
  const head = `HTTP/1.1 200 OK\r\nContent-Length: ${bytes}\r\nX-Peer: ${peer}\r\nConnection: close\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, "latin1"), bodyFor(id, bytes)]);
}

/** Checks a received answer for request `id`: null when every byte is right, else what is wrong. */
export function checkResponse(id: string, bytes: number, received: Buffer): { error: string | null; peer: string | null } {
  const end = received.indexOf("\r\n\r\n");
  if (end < 0) return { error: "no header", peer: null };
  const head = received.subarray(0, end).toString("latin1");
  const peer = /\r\nX-Peer: ([^\r]*)/.exec(head)?.[1] ?? null;
  if (!head.startsWith("HTTP/1.1 200 ")) return { error: `status ${head.split("\r\n")[0]}`, peer };
  const body = received.subarray(end + 4);
  if (body.length < bytes) return { error: `short body: ${body.length} of ${bytes} bytes`, peer };
  if (body.length > bytes) return { error: `long body: ${body.length} of ${bytes} bytes`, peer };
  if (!body.equals(bodyFor(id, bytes))) return { error: "body bytes differ", peer };
  return { error: null, peer };
}

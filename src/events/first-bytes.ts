// What a classifier reads from the payloads this package's nodes send: the ends of a
// connection (for rules on destination and client), and a flow event's captured first
// bytes. Pure: no I/O.

/** The connection ends a classify rule can match on. */
export interface ClassifyEndpoints {
  destinationAddress?: string;
  destinationPort?: number;
  clientAddress?: string;
}

/**
 * Destination and client of a connection message's payload or a flow event (either naming):
 * the original destination when the listener knew it, else the local end; the remote end is the client.
 */
export function endpointsOf(info: Record<string, unknown>): ClassifyEndpoints {
  const out: ClassifyEndpoints = {};
  const dst = info["originalDst"] as { address?: unknown; port?: unknown } | undefined;
  const address = dst?.address ?? info["localAddress"] ?? info["localIp"];
  const port = dst?.port ?? info["localPort"];
  const client = info["remoteAddress"] ?? info["remoteIp"];
  if (typeof address === "string") out.destinationAddress = address;
  if (typeof port === "number") out.destinationPort = port;
  if (typeof client === "string") out.clientAddress = client;
  return out;
}

/**
 * The client's first bytes and the connection's ends from a flow source event (`flow-close`
 * with first-bytes capture on, `firstBytes` base64 per direction), or null for anything else.
 * The client's bytes are what a client socket sent, or what an accepted socket received; the
 * destination is the remote end of a client socket and the local end of an accepted one.
 */
export function flowFirstBytes(info: Record<string, unknown>): { bytes: Buffer; endpoints: ClassifyEndpoints } | null {
  const fb = info["firstBytes"];
  if (typeof info["flowId"] !== "string" || fb === null || typeof fb !== "object" || Buffer.isBuffer(fb) || Array.isArray(fb)) return null;
  const side = info["side"];
  const text = (fb as { sent?: unknown; received?: unknown })[side === "server" ? "received" : "sent"];
  const bytes = typeof text === "string" ? Buffer.from(text, "base64") : Buffer.alloc(0);
  const accepted = side === "server";
  const endpoints: ClassifyEndpoints = {};
  const dst = info[accepted ? "localIp" : "remoteIp"];
  const dport = info[accepted ? "localPort" : "remotePort"];
  const src = info[accepted ? "remoteIp" : "localIp"];
  if (typeof dst === "string") endpoints.destinationAddress = dst;
  if (typeof dport === "number") endpoints.destinationPort = dport;
  if (typeof src === "string") endpoints.clientAddress = src;
  return { bytes, endpoints };
}

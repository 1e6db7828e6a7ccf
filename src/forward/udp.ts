import { TrafficError } from "../errors";
import { isSystemCallError, type UdpSessionEnd } from "../native";
import { udpSessions, type ClaimedUdpSession } from "../udp-table";
import { clientOf, describeConnectError, loopReason, resolveTarget, type ForwardOptions, type ForwardSession, type ForwardSummary } from "./forward";

/** How a rejected UDP session is refused: `drop` (silence: a browser falls back from QUIC to TCP) or `icmp` (port unreachable). */
export type UdpRejectMode = "drop" | "icmp";

function summaryOf(session: ClaimedUdpSession, startedAt: number, fields: Pick<ForwardSummary, "action" | "target" | "identity" | "end"> & { error?: ForwardSummary["error"]; upstreamLocalPort?: number }, end: UdpSessionEnd | null): ForwardSummary {
  return {
    id: session.id,
    client: clientOf(session.info),
    pump: fields.target === null ? null : "native",
    // A rejected session sent nothing on: what its client sent is in datagramsDropped.
    bytesToUpstream: fields.action === "reject" ? 0 : (end?.bytesFromClient ?? 0),
    bytesToClient: end?.bytesToClient ?? 0,
    startedAt,
    durationMs: Date.now() - startedAt,
    protocol: "udp",
    datagramsToUpstream: end === null ? 0 : end.datagramsFromClient - end.dropped,
    datagramsToClient: end?.datagramsToClient ?? 0,
    datagramsDropped: end?.dropped ?? 0,
    ...fields,
  };
}

/** How a session's end reads in a summary: idled out, or ended by a node or listener closing. */
function endOf(end: UdpSessionEnd): ForwardSummary["end"] {
  return end.reason === "idle" ? "idle-timeout" : "stopped";
}

/**
 * Forwards a claimed UDP session: the addon relays its datagrams to the target and the
 * answers back, until the session idles out (the listener's idle time). With identity
 * `transparent` the upstream socket is bound to the client's address (and port, with
 * keepClientPort), so the server sees the client; its replies must route back through
 * this host. The summary comes when the session ends.
 */
export function forwardUdpSession(session: ClaimedUdpSession, options: ForwardOptions): ForwardSession {
  const startedAt = Date.now();
  const identity = options.identity ?? "none";
  const table = udpSessions();
  let settle: (s: ForwardSummary) => void = () => undefined;
  const done = new Promise<ForwardSummary>((resolve) => (settle = resolve));
  let target: { address: string; port: number } | null = null;
  let localPort: number | undefined;
  const fail = (end: ForwardSummary["end"], code: string, message: string): void => {
    // Settled first: ending the session reports its end too, which must not win as `stopped`.
    settle(summaryOf(session, startedAt, { action: "forward", target, identity, end, error: { code, message } }, null));
    table.destroy(session.id);
  };
  table.onEnd(session.id, session.owner, (end) => {
    settle(summaryOf(session, startedAt, { action: "forward", target, identity, end: endOf(end), ...(localPort === undefined ? {} : { upstreamLocalPort: localPort }) }, end));
  });
  void (async () => {
    if (identity === "proxy-v1" || identity === "proxy-v2") {
      fail("error", "ERR_FORWARD_CONFIG", "a PROXY header has no place in UDP datagrams: forward UDP sessions with identity none or transparent");
      return;
    }
    try {
      target = await resolveTarget(session.info, options.target);
    } catch (err) {
      const e = err as TrafficError;
      fail("no-target", e.code, e.message);
      return;
    }
    const loop = loopReason(session.info, target);
    if (loop !== null) {
      fail("loop", "ERR_FORWARD_LOOP", loop);
      return;
    }
    const client = clientOf(session.info);
    const transparent = identity === "transparent";
    try {
      const r = session.relay.forward(session.nativeId, {
        address: target.address,
        port: target.port,
        ...(transparent ? { localAddress: client.address, localPort: options.keepClientPort === true ? client.port : 0, transparent: true } : {}),
        ...(options.mark !== undefined && options.mark > 0 ? { mark: options.mark } : {}),
      });
      // false: the session idled out while the target was looked up; its end was reported.
      if (r !== false) localPort = r.localPort;
    } catch (err) {
      const e = err as Error & { code?: string };
      const message = isSystemCallError(err) ? describeConnectError(e as { code: string; message: string }, target, identity, client) : e.message;
      fail("connect-failed", e.code ?? "error", message);
    }
  })();
  return { id: session.id, done, stop: () => table.destroy(session.id) };
}

/**
 * Rejects a claimed UDP session: its datagrams are dropped (or answered with ICMP port
 * unreachable) until it idles out; the summary comes then, with what was refused.
 */
export function rejectUdpSession(session: ClaimedUdpSession, mode: UdpRejectMode): Promise<ForwardSummary> {
  const startedAt = Date.now();
  const table = udpSessions();
  return new Promise((resolve) => {
    const registered = table.onEnd(session.id, session.owner, (end) => resolve(summaryOf(session, startedAt, { action: "reject", target: null, identity: "none", end: "rejected" }, end)));
    if (!registered || !session.relay.reject(session.nativeId, mode === "icmp")) {
      resolve(summaryOf(session, startedAt, { action: "reject", target: null, identity: "none", end: "rejected" }, null));
    }
  });
}

import type { Node, NodeAPI, NodeDef } from "node-red";
import { isTrafficSession, type ConnectionInfo, type OriginalDstMethod } from "../../src/connection";
import { TrafficError } from "../../src/errors";
import { getLocalAddress, getOriginalDst, socketFd, type SocketAddress } from "../../src/native";
import { connectionTable } from "../../src/connection-table";
import { formatEndpoint } from "../../src/net/ip";
import { udpSessions } from "../../src/udp-table";
import { messages } from "../common/messages";
import { throttledStatus } from "../common/status";

interface OriginalDstDef extends NodeDef {
  /** `auto`: the local address for connections accepted in tproxy mode, SO_ORIGINAL_DST otherwise. */
  method: "auto" | "so_original_dst" | "local-address";
  /** msg property that receives the result. */
  property: string;
}

/** `msg.originalDst`: where the client meant to go, and how that was found out. */
export interface OriginalDstResult {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
  readonly method: OriginalDstMethod;
}

/** Reads the original destination of a live connection from the kernel. */
export function lookupOriginalDst(id: string, method: OriginalDstDef["method"]): OriginalDstResult {
  const udp = udpSessions().info(id);
  if (udp !== undefined) {
    // A UDP session has no socket of its own to ask: the kernel told the destination with
    // each datagram (IP_RECVORIGDSTADDR), and the listener kept the first one's.
    if (udp.originalDst === undefined) {
      const why = udp.originalDstError?.message ?? `a UDP session in mode ${udp.mode} has none (only TPROXY tells it)`;
      throw new TrafficError("ERR_BAD_ADDRESS", `no original destination for UDP session ${id}: ${why}`, "msg._session");
    }
    const d = udp.originalDst;
    return { address: d.address, port: d.port, family: d.family, method: d.method };
  }
  const table = connectionTable();
  const socket = table.socketOf(id);
  const info: ConnectionInfo | undefined = table.info(id);
  if (socket === undefined || info === undefined) {
    throw new TrafficError("ERR_BAD_ADDRESS", `connection ${id} is gone (closed, or it belongs to another Node-RED process)`, "msg._session");
  }
  const useLocal = method === "local-address" || (method === "auto" && info.mode === "tproxy");
  const fd = socketFd(socket);
  const found: SocketAddress = useLocal ? getLocalAddress(fd) : getOriginalDst(fd);
  return { address: found.address, port: found.port, family: found.family, method: useLocal ? "tproxy-local-address" : "so_original_dst" };
}

/** Catalogue keys of the status texts, by error code. */
const STATUS: Record<string, string> = {
  ENOENT: "original-dst.status.notRedirected",
  ENOPROTOOPT: "original-dst.status.noConntrack",
  EBADF: "original-dst.status.connectionGone",
  ENOTCONN: "original-dst.status.connectionGone",
  ERR_NO_FD: "original-dst.status.connectionGone",
  ERR_NATIVE_UNAVAILABLE: "original-dst.status.addonMissing",
};

export default function register(RED: NodeAPI): void {
  const _ = messages(RED);
  function OriginalDstNode(this: Node, config: OriginalDstDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const status = throttledStatus(node);
    const method = config.method || "auto";
    const property = config.property || "originalDst";

    node.on("input", (msg, send, done) => {
      try {
        const session = (msg as { _session?: unknown })._session;
        if (!isTrafficSession(session)) {
          throw new TrafficError("ERR_BAD_ADDRESS", _("original-dst.error.noConnection"), "msg._session");
        }
        const result = lookupOriginalDst(session.id, method);
        RED.util.setMessageProperty(msg, property, result, true);
        status.set({ fill: "green", shape: "dot", text: formatEndpoint(result.address, result.port) });
        send(msg);
        done();
      } catch (err) {
        const e = err as Error & { code?: string };
        status.set({ fill: "red", shape: "ring", text: _(STATUS[e.code ?? ""] ?? "original-dst.status.error") });
        done(e);
      }
    });
    node.on("close", () => status.clear());
  }
  RED.nodes.registerType("original dst", OriginalDstNode);
}

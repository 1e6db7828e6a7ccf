import net from "node:net";
import { formatEndpoint } from "../net/ip";
import type { NativeAddon, NativeConnectOptions, SystemCallError } from "../native";
import type { ForwardEnd, ForwardIdentity } from "../events/types";

/** How one forward ended, as its summary tells it. */
export interface Ending {
  readonly end: ForwardEnd;
  readonly error?: { readonly code?: string; readonly message: string };
}

/** The connection's own state the strategies and pumps share: whether it was stopped, and how to stop what runs now. */
export interface ForwardControl {
  /** Set by the session's stop(); the steps read it. */
  stopped: boolean;
  /** Set by whatever runs (a connect, a pump) to end it at once; null when nothing needs ending. */
  stopper: (() => void) | null;
}

/** Where to connect and as whom: enough for any connect strategy. */
export interface UpstreamPlan {
  readonly target: { readonly address: string; readonly port: number };
  /** The client as the upstream should see it. */
  readonly who: { readonly address: string; readonly port: number };
  readonly identity: ForwardIdentity;
  /** For the addon: bind (transparent) and mark. */
  readonly native: NativeConnectOptions;
  readonly timeoutMs: number;
}

/** A connected upstream socket, or why there is none. */
export type Connected = { readonly upstream: net.Socket; readonly localPort: number | undefined } | Ending;

export function isEnding(value: object): value is Ending {
  return "end" in value;
}

/** Words a failed connect for an operator: what the errno means here and what to do. */
export function describeConnectError(err: { code?: string; message: string }, target: { address: string; port: number }, identity: ForwardIdentity, client: { address: string }): string {
  const to = formatEndpoint(target.address, target.port);
  switch (err.code) {
    case "ECONNREFUSED":
      return `upstream ${to} refused the connection (nothing listens there)`;
    case "ETIMEDOUT":
      return identity === "transparent"
        ? `no answer from upstream ${to}: with source preservation its replies go to ${client.address}, so they must be routed back through this host ` +
            "(the upstream's route to the client must point at this gateway, and the TPROXY rules that deliver packets of transparent sockets locally must be in place)"
        : `no answer from upstream ${to} within the connect timeout`;
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return `upstream ${to} is unreachable from this host (${err.code}): no route`;
    case "EPERM":
    case "EACCES":
      return identity === "transparent"
        ? "binding the client's address (IP_TRANSPARENT) and marking sockets (SO_MARK) need CAP_NET_ADMIN (or CAP_NET_RAW): run Node-RED with AmbientCapabilities=CAP_NET_ADMIN, or use identity none/PROXY"
        : `connecting to ${to} was not permitted (${err.code}): SO_MARK needs CAP_NET_ADMIN (or CAP_NET_RAW), or a firewall rule rejects it`;
    case "EADDRNOTAVAIL":
      return `cannot bind ${client.address} for ${to}: address not available (EADDRNOTAVAIL)`;
    default:
      return `connecting to ${to} failed: ${err.message}`;
  }
}

/** The ending of a connect that failed with `err`. */
export function connectFailed(err: { code?: string; message: string }, plan: UpstreamPlan): Ending {
  return { end: "connect-failed", error: { code: err.code ?? "ERR_FORWARD", message: describeConnectError(err, plan.target, plan.identity, plan.who) } };
}

const CLIENT_GONE: Ending = { end: "client-reset", error: { code: "ECONNRESET", message: "the client went away while connecting upstream" } };

/** The addon connects (a bind to the client's address, a mark), then Node takes the fd as a socket. */
export async function connectWithAddon(native: NativeAddon, plan: UpstreamPlan, client: net.Socket, control: ForwardControl): Promise<Connected> {
  let fd: number;
  let localPort: number;
  try {
    ({ fd, localPort } = await native.connectUpstream(plan.native));
  } catch (err) {
    return connectFailed(err as SystemCallError, plan);
  }
  if (control.stopped || client.destroyed) {
    native.closeFd(fd);
    return control.stopped ? { end: "stopped" } : CLIENT_GONE;
  }
  return { upstream: new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true }), localPort };
}

/** A plain connect through libuv: no bind, no mark, the cheapest way to an upstream. */
export async function connectWithNode(plan: UpstreamPlan, client: net.Socket, control: ForwardControl): Promise<Connected> {
  const upstream = net.connect({ host: plan.target.address, port: plan.target.port, allowHalfOpen: true });
  // Errors after the connect phase belong to the pump; none may go uncaught in between.
  upstream.on("error", () => undefined);
  let failure: Ending | null = null;
  const ok = await new Promise<boolean>((resolve) => {
    const timer = plan.timeoutMs > 0 ? setTimeout(() => upstream.destroy(Object.assign(new Error("connect timed out"), { code: "ETIMEDOUT" })), plan.timeoutMs) : null;
    control.stopper = () => upstream.destroy();
    const settle = (connected: boolean): void => {
      if (timer !== null) clearTimeout(timer);
      // The connect phase's listeners go once it is over: a later error (a reset) is the pump's.
      upstream.off("connect", onConnect);
      upstream.off("close", onClose);
      upstream.off("error", onError);
      resolve(connected);
    };
    const onConnect = (): void => settle(true);
    const onClose = (): void => settle(false);
    const onError = (err: NodeJS.ErrnoException): void => {
      failure = connectFailed({ code: err.code ?? "ERR_FORWARD", message: err.message }, plan);
      settle(false);
    };
    upstream.once("connect", onConnect);
    upstream.once("close", onClose);
    upstream.once("error", onError);
  });
  if (!ok) {
    if (control.stopped) return { end: "stopped" };
    return failure ?? { end: "connect-failed", error: { code: "ECONNABORTED", message: `connecting to ${formatEndpoint(plan.target.address, plan.target.port)} was aborted` } };
  }
  if (client.destroyed) {
    upstream.destroy();
    return CLIENT_GONE;
  }
  return { upstream, localPort: upstream.localPort };
}

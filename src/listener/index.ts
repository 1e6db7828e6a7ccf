/** Library API of the transparent listener: usable without Node-RED. */
export { TransparentListener, type ListenerCounters, type RejectReason, type TransparentListenerEvents } from "./transparent-listener";
export { ManagedCapture, HANDOVER_GRACE_MS, type CaptureRules } from "./managed-capture";
export { listenerSettings, MAX_SNIFF_BYTES, type ListenerFamily, type ListenerMode, type ListenerSettings, type ProxyProtocolMode, type TransparentListenerConfig } from "./options";
export {
  createListenerFd,
  getLocalAddress,
  getOriginalDst,
  getPeerAddress,
  isSystemCallError,
  nativeAvailability,
  socketFd,
  socketOptions,
  type NativeListenOptions,
  type SocketAddress,
  type SystemCallError,
} from "../native";
export { connectionTable, ConnectionTable, type ClaimedConnection, type UnclaimedAction, type UnclaimedHandler } from "../connection-table";

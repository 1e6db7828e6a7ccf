import type { NodeAPI } from "node-red";
import registerFlowSource from "./flow-source/flow-source";
import registerIpFilter from "./ip-filter/ip-filter";
import registerRealIp from "./real-ip/real-ip";

/** Registers every node type of the package with the Node-RED runtime. */
export default function register(RED: NodeAPI): void {
  registerRealIp(RED);
  registerIpFilter(RED);
  registerFlowSource(RED);
}

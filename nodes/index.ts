import type { NodeAPI } from "node-red";
import registerIpFilter from "./ip-filter/ip-filter";
import registerMqttEvents from "./mqtt-events/mqtt-events";
import registerRealIp from "./real-ip/real-ip";
import registerTrafficBroker from "./traffic-broker/traffic-broker";

/** Registers every node type of the package with the Node-RED runtime. */
export default function register(RED: NodeAPI): void {
  registerRealIp(RED);
  registerIpFilter(RED);
  registerTrafficBroker(RED);
  registerMqttEvents(RED);
}

import type { NodeAPI } from "node-red";
import { registerAdminEndpoints } from "./common/admin";
import registerClassify from "./classify/classify";
import registerFlowSource from "./flow-source/flow-source";
import registerForward from "./forward/forward";
import registerIpFilter from "./ip-filter/ip-filter";
import registerLimit from "./limit/limit";
import registerMqttEvents from "./mqtt-events/mqtt-events";
import registerOriginalDst from "./original-dst/original-dst";
import registerRealIp from "./real-ip/real-ip";
import registerTrafficBroker from "./traffic-broker/traffic-broker";
import registerTransparentIn from "./transparent-in/transparent-in";

/** Registers every node type of the package with the Node-RED runtime. */
export default function register(RED: NodeAPI): void {
  registerAdminEndpoints(RED);
  registerRealIp(RED);
  registerIpFilter(RED);
  registerClassify(RED);
  registerLimit(RED);
  registerTransparentIn(RED);
  registerOriginalDst(RED);
  registerFlowSource(RED);
  registerTrafficBroker(RED);
  registerMqttEvents(RED);
  registerForward(RED);
}

import type { NodeAPI } from "node-red";
import registerClassify from "./classify/classify";
import registerForward from "./forward/forward";
import registerIpFilter from "./ip-filter/ip-filter";
import registerOriginalDst from "./original-dst/original-dst";
import registerRealIp from "./real-ip/real-ip";
import registerTransparentIn from "./transparent-in/transparent-in";

/** Registers every node type of the package with the Node-RED runtime. */
export default function register(RED: NodeAPI): void {
  registerRealIp(RED);
  registerIpFilter(RED);
  registerClassify(RED);
  registerTransparentIn(RED);
  registerOriginalDst(RED);
  registerForward(RED);
}

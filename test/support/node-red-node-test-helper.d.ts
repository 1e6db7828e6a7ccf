declare module "node-red-node-test-helper" {
  import type { Node, NodeAPI } from "node-red";
  type RegisterFn = (RED: NodeAPI) => void | Promise<void>;
  interface LogSpy {
    args: unknown[][];
  }
  interface NodeTestHelper {
    init(runtimePath: string, userSettings?: Record<string, unknown>): void;
    load(nodes: RegisterFn | RegisterFn[], flow: object[], credentials?: Record<string, unknown>): Promise<void>;
    unload(): Promise<void>;
    getNode(id: string): Node;
    clearFlows(): Promise<void>;
    startServer(): Promise<void>;
    stopServer(): Promise<void>;
    url(): string;
    log(): LogSpy;
  }
  const helper: NodeTestHelper;
  export default helper;
}

// The one config reader of the nodes: empty means the default, numbers come as strings or
// numbers, and anything else is a TrafficError with the node's code naming the field.
import { describe, expect, it } from "vitest";
import { configReader } from "../../nodes/common/config";
import { forwardOptionsFrom } from "../../nodes/forward/forward";
import { listenerConfigFrom, kernelLimitOf } from "../../nodes/transparent-in/transparent-in";
import { optionsFromConfig } from "../../nodes/flow-source/flow-source";
import { TrafficError } from "../../src/errors";

const thrown = (f: () => unknown): TrafficError => {
  try {
    f();
  } catch (err) {
    return err as TrafficError;
  }
  throw new Error("did not throw");
};

describe("configReader", () => {
  const read = configReader("ERR_LISTENER_CONFIG");

  it("reads integers from numbers and strings, empty as the default", () => {
    expect(read.int("42", "n", { fallback: 7, min: 0, max: 100 })).toBe(42);
    expect(read.int(42, "n", { fallback: 7, min: 0, max: 100 })).toBe(42);
    expect(read.int(" ", "n", { fallback: 7, min: 0, max: 100 })).toBe(7);
    expect(read.int(undefined, "n", { fallback: 7, min: 0, max: 100 })).toBe(7);
    expect(read.optionalInt("", "n", { min: 0, max: 1 })).toBeUndefined();
  });

  it.each(["abc", "1.5", "101", "-1", "NaN", "Infinity", "0x10"])("refuses %j as an integer 0-100 with the reader's code and the field", (v) => {
    const e = thrown(() => read.int(v, "maxConnections", { fallback: 0, min: 0, max: 100 }));
    expect(e).toBeInstanceOf(TrafficError);
    expect(e.code).toBe("ERR_LISTENER_CONFIG");
    expect(e.message).toMatch(/^maxConnections: must be an integer from 0 to 100/);
  });

  it("turns seconds into milliseconds and refuses text, negatives and too much", () => {
    expect(read.seconds("1.5", "t", { fallbackMs: 9, max: 10 })).toBe(1500);
    expect(read.seconds("", "t", { fallbackMs: 9, max: 10 })).toBe(9);
    for (const v of ["soon", "-1", "11"]) expect(thrown(() => read.seconds(v, "t", { fallbackMs: 9, max: 10 })).code).toBe("ERR_LISTENER_CONFIG");
  });

  it("reads port lists and enums", () => {
    expect(read.ports("80, 443 8080", "ports")).toEqual([80, 443, 8080]);
    expect(read.ports("", "ports")).toEqual([]);
    expect(thrown(() => read.ports("80,http", "ports")).message).toMatch(/^ports: must be ports 1-65535/);
    expect(thrown(() => read.ports("70000", "ports")).message).toMatch(/^ports: /);
    expect(read.oneOf("udp", "protocol", ["tcp", "udp"] as const, "tcp")).toBe("udp");
    expect(read.oneOf("", "protocol", ["tcp", "udp"] as const, "tcp")).toBe("tcp");
    expect(thrown(() => read.oneOf("sctp", "protocol", ["tcp", "udp"] as const, "tcp")).message).toMatch(/^protocol: must be one of tcp, udp/);
  });
});

describe("nodes read their config through it", () => {
  it("transparent in: a time or count written as text is named, never passed on as NaN or text", () => {
    for (const [field, value] of [["sniffTimeout", "1s"], ["udpIdleTimeout", "x"], ["maxConnections", "many"], ["port", "http"]] as const) {
      const e = thrown(() => listenerConfigFrom({ port: 15001, [field]: value } as never));
      expect(e.code, field).toBe("ERR_LISTENER_CONFIG");
      expect(e.message, field).toMatch(new RegExp(`^${field}: `));
    }
    expect(thrown(() => kernelLimitOf({ ruleLimitRate: "fast", ruleLimitBurst: "", ruleLimitConcurrent: "" })).code).toBe("ERR_NFT_CONFIG");
  });

  it("forward and flow source use their own codes", () => {
    expect(thrown(() => forwardOptionsFrom({ connectTimeout: "ten" } as never)).code).toBe("ERR_FORWARD_CONFIG");
    expect(thrown(() => forwardOptionsFrom({ mark: "red" } as never)).code).toBe("ERR_FORWARD_CONFIG");
    expect(thrown(() => optionsFromConfig({ firstBytes: "lots" })).code).toBe("ERR_FLOW_CONFIG");
  });
});

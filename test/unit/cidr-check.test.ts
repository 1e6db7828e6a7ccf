import fc from "fast-check";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { compileIpFilter } from "../../src/ipfilter/rules";
import { isValidRangeEntry, parseCidr } from "../../src/net/cidr";
import { parseIp } from "../../src/net/ip";
import { buildRuleset } from "../../src/nft/managed-rules";
import { compileTrust } from "../../src/realip/trust";

const require_ = createRequire(__filename);
const editor = require_("../../resources/cidr-check.js") as {
  entryError(entry: string): string | null;
  listError(text: string): string | null;
};

const RUNS = Number(process.env["FUZZ_RUNS"] ?? 20_000);

// Pieces that build near-miss addresses: the interesting inputs are almost valid.
const piece = fc.constantFrom(
  "0", "1", "01", "10", "127", "192", "255", "256", "999", "ffff", "FFFF", "db8", "2001", "fe80", "12345", "g", "",
  ".", ":", "::", "/", "%", "%eth0", "/0", "/8", "/24", "/32", "/33", "/64", "/96", "/104", "/128", "/129", "/08",
  "::ffff:", "1.2.3.4", "0.0.0.0", "255.255.255.0", "255.0.0.0", "/255.255.0.0", "loopback", "private", "Any", "constructor", "__proto__", " ",
);

describe("editor CIDR check agrees with the runtime", () => {
  it.each([
    "10.0.0.0/8", "10.0.0.1/8", "192.0.2.1", "2001:db8::/32", "2001:db8::1/32", "::/0", "::", "::1", "1::", "::ffff:10.0.0.0/104",
    "::ffff:10.0.0.0/95", "::ffff:10.0.0.1/128", "fe80::1%eth0", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4", "1::2::3", "12345::", "loopback", "LinkLocal", "constructor", "10/8", "0.0.0.0/0",
    "10.0.0.1/255.255.255.0", "10.0.0.0/255.255.255.0", "10.0.0.0/255.0.255.0", "::ffff:10.0.0.0/255.0.0.0", "10.0.0.0/0.0.0.0",
    "10.0.0.2/26", "::1.2.3.4/96", "::127.0.0.1",
  ])("%s", (entry) => {
    expect(editor.entryError(entry) === null).toBe(isValidRangeEntry(entry));
  });

  it("on generated near-miss entries", () => {
    fc.assert(
      fc.property(fc.array(piece, { minLength: 1, maxLength: 9 }), (parts) => {
        const entry = parts.join("");
        if (/[\s,]/.test(entry) || entry === "") return;
        expect(editor.entryError(entry) === null, entry).toBe(isValidRangeEntry(entry));
      }),
      { numRuns: RUNS },
    );
  });

  it("lists report the first bad entry", () => {
    expect(editor.listError("loopback, 10.0.0.0/8\n2001:db8::/32")).toBeNull();
    expect(editor.listError("loopback, 10.0.0.1/8")).toMatch(/host bits/);
  });
});

describe("shared CIDR rules", () => {
  it("accept netmask notation in the runtime and the editor alike", () => {
    expect(parseCidr("10.0.0.0/255.255.255.0")).toMatchObject({ family: 4, prefix: 24 });
    expect(parseCidr("10.0.0.0/255.255.255.255")).toMatchObject({ prefix: 32 });
    expect(editor.entryError("10.0.0.0/255.255.255.0")).toBeNull();
    expect(compileIpFilter([{ action: "deny", ranges: "198.51.100.0/255.255.255.0" }])("198.51.100.77").action).toBe("deny");
    expect(compileTrust("10.0.0.0/255.0.0.0")(parseIp("10.9.9.9"), 0)).toBe(true);
    expect(buildRuleset("n1", { mode: "redirect", port: 15001, destinations: "198.51.100.0/255.255.255.128" }).ruleset).toContain("198.51.100.0/25");
    expect(() => parseCidr("10.0.0.0/255.0.255.0")).toThrow(/netmask/);
    expect(editor.entryError("10.0.0.0/255.0.255.0")).toMatch(/netmask/);
  });

  it("name the network that was probably meant when host bits are set", () => {
    expect(() => parseCidr("10.0.0.2/26")).toThrow(/did you mean 10\.0\.0\.0\/26\?/);
    expect(editor.entryError("10.0.0.2/26")).toMatch(/did you mean 10\.0\.0\.0\/26\?/);
    expect(() => parseCidr("10.0.0.1/255.255.255.0")).toThrow(/did you mean 10\.0\.0\.0\/24\?/);
    expect(editor.entryError("2001:db8::1/32")).toMatch(/did you mean 2001:db8::\/32\?/);
    expect(() => parseCidr("2001:db8::1/32")).toThrow(/did you mean 2001:db8::\/32\?/);
  });

  it("read ::a.b.c.d (IPv4-compatible) as IPv6, not as IPv4", () => {
    expect(parseCidr("::127.0.0.1")).toMatchObject({ family: 6, prefix: 128 });
    expect(editor.entryError("::1.2.3.4/104")).toMatch(/host bits/);
    expect(() => parseCidr("::1.2.3.4/104")).toThrow(/host bits/);
  });
});

/*
 * Address-list validation for the editor dialogs, so a bad CIDR is flagged as the user
 * types. The runtime validates with src/net/cidr.ts; test/unit/cidr-check.test.ts checks
 * that both accept exactly the same entries.
 */
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.trafficCidrCheck = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";
  var NAMED = { loopback: 1, linklocal: 1, uniquelocal: 1, private: 1, any: 1 };

  function ipv4(text) {
    var parts = text.split(".");
    if (parts.length !== 4) return null;
    var value = 0;
    for (var i = 0; i < 4; i++) {
      if (!/^(0|[1-9][0-9]{0,2})$/.test(parts[i])) return null;
      var n = Number(parts[i]);
      if (n > 255) return null;
      value = value * 256 + n;
    }
    return value;
  }

  // Returns eight 16-bit groups, or null.
  function ipv6(text) {
    var zone = text.indexOf("%");
    if (zone >= 0) {
      if (!/^%[0-9a-z]+$/i.test(text.slice(zone))) return null;
      text = text.slice(0, zone);
    }
    var halves = text.split("::");
    if (halves.length > 2) return null;
    function groups(part, allowV4Tail) {
      if (part === "") return [];
      var items = part.split(":");
      var out = [];
      for (var i = 0; i < items.length; i++) {
        var item = items[i];
        if (allowV4Tail && i === items.length - 1 && item.indexOf(".") >= 0) {
          var v4 = ipv4(item);
          if (v4 === null) return null;
          out.push(Math.floor(v4 / 65536), v4 % 65536);
        } else if (/^[0-9a-f]{1,4}$/i.test(item)) out.push(parseInt(item, 16));
        else return null;
      }
      return out;
    }
    if (halves.length === 1) {
      var all = groups(halves[0], true);
      return all !== null && all.length === 8 ? all : null;
    }
    var head = groups(halves[0], false);
    var tail = groups(halves[1], true);
    if (head === null || tail === null || head.length + tail.length > 7) return null;
    var fill = [];
    for (var k = head.length + tail.length; k < 8; k++) fill.push(0);
    return head.concat(fill, tail);
  }

  function isMapped(g) {
    return g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff;
  }

  function hostBitsClear(words, bitsPerWord, prefix) {
    for (var i = 0; i < words.length; i++) {
      var start = i * bitsPerWord;
      var keep = Math.max(0, Math.min(bitsPerWord, prefix - start));
      var low = bitsPerWord - keep;
      if (low > 0 && words[i] % Math.pow(2, low) !== 0) return false;
    }
    return true;
  }

  /** Why `entry` is not a valid CIDR, address or named range; null when it is. */
  function entryError(entry) {
    if (NAMED.hasOwnProperty(entry.toLowerCase())) return null;
    var slash = entry.indexOf("/");
    var addr = slash >= 0 ? entry.slice(0, slash) : entry;
    var prefixText = slash >= 0 ? entry.slice(slash + 1) : null;
    if (prefixText !== null && !/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return "bad prefix length in " + entry;
    var v4 = ipv4(addr);
    var prefix;
    if (v4 !== null) {
      prefix = prefixText === null ? 32 : Number(prefixText);
      if (prefix > 32) return "IPv4 prefix must be 0-32 in " + entry;
      return hostBitsClear([v4], 32, prefix) ? null : "host bits set beyond the prefix in " + entry;
    }
    if (addr.indexOf("%") >= 0) return "a zone index has no place in a range: " + entry;
    var g = addr.indexOf(":") >= 0 ? ipv6(addr) : null;
    // "::192.0.2.1" (deprecated IPv4-compatible form) is read as IPv4-mapped, as the runtime does.
    if (g !== null && /^::[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/.test(addr)) g[5] = 0xffff;
    if (g === null) return "not an address or CIDR: " + entry;
    if (isMapped(g)) {
      prefix = prefixText === null ? 128 : Number(prefixText);
      if (prefix < 96 || prefix > 128) return "IPv4-mapped prefix must be 96-128 in " + entry;
      return hostBitsClear([g[6] * 65536 + g[7]], 32, prefix - 96) ? null : "host bits set beyond the prefix in " + entry;
    }
    prefix = prefixText === null ? 128 : Number(prefixText);
    if (prefix > 128) return "IPv6 prefix must be 0-128 in " + entry;
    return hostBitsClear(g, 16, prefix) ? null : "host bits set beyond the prefix in " + entry;
  }

  /** Splits a list the way the runtime does: commas, spaces and new lines. */
  function splitList(text) {
    return String(text || "")
      .split(/[\s,]+/)
      .filter(function (s) {
        return s !== "";
      });
  }

  /** The first problem in a CIDR list, or null when every entry is valid. */
  function listError(text) {
    var entries = splitList(text);
    for (var i = 0; i < entries.length; i++) {
      var err = entryError(entries[i]);
      if (err !== null) return err;
    }
    return null;
  }

  return { entryError: entryError, listError: listError, splitList: splitList };
});

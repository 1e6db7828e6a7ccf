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

  // The words with the host bits below `prefix` cleared.
  function networkOf(words, bitsPerWord, prefix) {
    var out = [];
    for (var i = 0; i < words.length; i++) {
      var keep = Math.max(0, Math.min(bitsPerWord, prefix - i * bitsPerWord));
      var unit = Math.pow(2, bitsPerWord - keep);
      out.push(Math.floor(words[i] / unit) * unit);
    }
    return out;
  }

  function v4Text(v) {
    return [Math.floor(v / 16777216), Math.floor(v / 65536) % 256, Math.floor(v / 256) % 256, v % 256].join(".");
  }

  // RFC 5952 text, as the runtime's formatIPv6.
  function v6Text(g) {
    var best = -1, bestLen = 1;
    for (var i = 0; i < 8; ) {
      if (g[i] !== 0) { i++; continue; }
      var j = i;
      while (j < 8 && g[j] === 0) j++;
      if (j - i > bestLen) { best = i; bestLen = j - i; }
      i = j;
    }
    var out = "";
    for (var k = 0; k < 8; k++) {
      if (k === best) { out += k === 0 ? "::" : ":"; k += bestLen - 1; continue; }
      out += g[k].toString(16);
      if (k < 7) out += ":";
    }
    return out;
  }

  function hostBitsError(entry, words, bitsPerWord, prefix, text) {
    var net = networkOf(words, bitsPerWord, prefix);
    for (var i = 0; i < words.length; i++) {
      if (net[i] !== words[i]) return "host bits set beyond the prefix (did you mean " + text(net) + "/" + prefix + "?) in " + entry;
    }
    return null;
  }

  // The prefix length of a contiguous netmask ("255.255.255.0" is 24), or -1.
  function netmaskPrefix(v) {
    for (var p = 0; p <= 32; p++) if (v === 4294967296 - Math.pow(2, 32 - p)) return p;
    return -1;
  }

  /** Why `entry` is not a valid CIDR, address or named range; null when it is. */
  function entryError(entry) {
    if (Object.hasOwn(NAMED, entry.toLowerCase())) return null;
    var slash = entry.indexOf("/");
    var addr = slash >= 0 ? entry.slice(0, slash) : entry;
    var prefixText = slash >= 0 ? entry.slice(slash + 1) : null;
    var v4 = ipv4(addr);
    var prefix;
    if (prefixText !== null && prefixText.indexOf(".") >= 0) {
      // Netmask notation ("10.0.0.0/255.255.255.0"), IPv4 only.
      var g4 = v4 === null && addr.indexOf(":") >= 0 && addr.indexOf("%") < 0 ? ipv6(addr) : null;
      if (v4 === null && g4 === null) return addr.indexOf("%") >= 0 ? "a zone index has no place in a range: " + entry : "not an address or CIDR: " + entry;
      if (v4 === null) return "a netmask applies to IPv4 addresses only in " + entry;
      var m = ipv4(prefixText);
      prefix = m === null ? -1 : netmaskPrefix(m);
      if (prefix < 0) return "bad netmask (its one bits must be contiguous) in " + entry;
      return hostBitsError(entry, [v4], 32, prefix, function (w) { return v4Text(w[0]); });
    }
    if (prefixText !== null && !/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return "bad prefix length in " + entry;
    if (v4 !== null) {
      prefix = prefixText === null ? 32 : Number(prefixText);
      if (prefix > 32) return "IPv4 prefix must be 0-32 in " + entry;
      return hostBitsError(entry, [v4], 32, prefix, function (w) { return v4Text(w[0]); });
    }
    if (addr.indexOf("%") >= 0) return "a zone index has no place in a range: " + entry;
    var g = addr.indexOf(":") >= 0 ? ipv6(addr) : null;
    if (g === null) return "not an address or CIDR: " + entry;
    if (isMapped(g)) {
      prefix = prefixText === null ? 128 : Number(prefixText);
      if (prefix < 96 || prefix > 128) return "IPv4-mapped prefix must be 96-128 in " + entry;
      return hostBitsError(entry, [g[6] * 65536 + g[7]], 32, prefix - 96, function (w) { return v4Text(w[0]); });
    }
    prefix = prefixText === null ? 128 : Number(prefixText);
    if (prefix > 128) return "IPv6 prefix must be 0-128 in " + entry;
    return hostBitsError(entry, g, 16, prefix, v6Text);
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

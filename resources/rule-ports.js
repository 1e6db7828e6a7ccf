/*
 * Keeps wires on their rules when a rule dialog removes, reorders or adds rules. Node-RED
 * moves wires when a dialog's `outputs` input holds a JSON map of old port -> new port
 * (-1: removed; a non-numeric key: a new port), the way the core switch node does; a plain
 * count would leave each wire on its old port number, now another rule's.
 */
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.trafficRulePorts = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";
  /**
   * origins: for each rule in its new order, its port before editing (a number) or null
   * for a rule added in the dialog. oldRules: the rule count before editing. The port after
   * the rules (other, no match) follows the last rule.
   */
  function portMap(origins, oldRules) {
    var map = {};
    for (var i = 0; i < oldRules; i++) map[i] = -1;
    for (var pos = 0; pos < origins.length; pos++) {
      if (typeof origins[pos] === "number") map[origins[pos]] = pos;
      else map["new" + pos] = pos;
    }
    map[oldRules] = origins.length;
    return JSON.stringify(map);
  }
  return { portMap: portMap };
});

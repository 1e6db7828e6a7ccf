/*
 * Field checks shared by every dialog of this package. Each validator takes (value, opt)
 * and returns true or a message: Node-RED (3.1 and later) reads a two-argument validator's
 * string as the reason, and `watch` prints that reason under the field as the user types,
 * so a red border never comes without a why.
 */
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory(root);
  else root.trafficDialog = factory(root);
})(typeof self !== "undefined" ? self : this, function (root) {
  "use strict";
  var NS = "@traffic-policy/node-red-traffic-policy/traffic:dialog.validation.";

  /** The catalogue's message; the key and its values where no editor is around (unit tests). */
  function say(key, values) {
    if (root && root.RED && root.RED._) return root.RED._(NS + key, values);
    return key + (values ? " " + JSON.stringify(values) : "");
  }
  function blank(v) {
    return v === "" || v === undefined || v === null || String(v).trim() === "";
  }
  function items(v) {
    return String(v || "").split(/[\s,]+/).filter(function (s) { return s !== ""; });
  }

  /** Whole numbers from min to max (Infinity: no upper bound); blank is allowed when optional (the runtime's default). */
  function intIn(min, max, optional) {
    return function (v, opt) {
      if (blank(v)) return optional ? true : say("required");
      if (!/^\s*\d+\s*$/.test(String(v))) return say("wholeNumber");
      var n = Number(v);
      if (n >= min && n <= max) return true;
      return max === Infinity ? say("atLeast", { min: min }) : say("range", { min: min, max: max });
    };
  }
  /** An unsigned 64-bit id in decimal (a cgroup id): compared as BigInt, since a Number rounds above 2^53. */
  function uint64(optional) {
    return function (v, opt) {
      if (blank(v)) return optional ? true : say("required");
      var text = String(v).trim();
      if (!/^\d+$/.test(text)) return say("wholeNumber");
      if (text.length > 20 || BigInt(text) > BigInt("18446744073709551615")) return say("range", { min: 0, max: "18446744073709551615" });
      return true;
    };
  }
  /** A duration in seconds (fractions allowed) from min to max; blank means the default. */
  function secondsIn(min, max) {
    return function (v, opt) {
      if (blank(v)) return true;
      if (!/^\s*\d+(\.\d+)?\s*$/.test(String(v))) return say("number");
      var n = Number(v);
      return n >= min && n <= max ? true : say("range", { min: min, max: max });
    };
  }
  /** A power of two from min to max (ring buffer sizes). */
  function powerOfTwoIn(min, max) {
    return function (v, opt) {
      var n = Number(v);
      if (blank(v) || !/^\s*\d+\s*$/.test(String(v)) || n < min || n > max || (n & (n - 1)) !== 0) return say("powerOfTwo", { min: min, max: max });
      return true;
    };
  }
  /** One entry of a port list: a port, or low-high when ranges are allowed. */
  function portEntryError(entry, ranges) {
    var m = (ranges ? /^(\d{1,5})(?:-(\d{1,5}))?$/ : /^(\d{1,5})()$/).exec(entry);
    var low = m ? Number(m[1]) : NaN;
    var high = m && m[2] !== "" && m[2] !== undefined ? Number(m[2]) : low;
    if (!m || low < (ranges ? 0 : 1) || high > 65535 || low > high) return ranges ? say("portRange", { port: entry }) : say("port", { port: entry });
    return null;
  }
  /** The first bad entry of a comma- or space-separated port list, or null. */
  function portListError(v, ranges) {
    var list = items(v);
    for (var i = 0; i < list.length; i++) {
      var e = portEntryError(list[i], ranges);
      if (e) return e;
    }
    return null;
  }
  function portList(ranges) {
    return function (v, opt) { return portListError(v, ranges) || true; };
  }
  /** An address list (resources/cidr-check.js says what is wrong); blank is allowed unless required. */
  function cidrList(required) {
    return function (v, opt) {
      if (blank(v)) return required ? say("required") : true;
      var check = root && root.trafficCidrCheck;
      return (check && check.listError(v)) || true;
    };
  }
  /** A host name or an IP address literal. */
  function hostName(v, opt) {
    return /^[A-Za-z0-9.:[\]-]+$/.test(String(v || "")) ? true : say("host");
  }
  /** A broker host, or a whole URL with a scheme mqtt.js dials (as the core mqtt-broker takes). */
  function brokerHost(v, opt) {
    v = String(v || "").trim();
    if (v === "") return say("required");
    if (v.indexOf("://") >= 0) return /^(mqtts?|wss?):\/\/[^\s]+$/.test(v) ? true : say("brokerUrl");
    return hostName(v) === true ? true : say("brokerHost");
  }
  /**
   * The check of a node's rule list: true, or the first bad rule's name (else its number,
   * by the catalogue key `unnamedKey`) and what `ruleError(rule, _)` says is wrong with it.
   */
  function ruleList(ruleError, unnamedKey) {
    return function (rules, opt) {
      if (!Array.isArray(rules)) return false;
      for (var i = 0; i < rules.length; i++) {
        var e = ruleError(rules[i], this._);
        if (e !== null) return (rules[i].name || this._(unnamedKey, { number: i + 1 })) + ": " + e;
      }
      return true;
    };
  }
  /**
   * The port each row of the dialog's rule list had when the dialog opened (the row's
   * data.i), null for a row added since: what trafficRulePorts.portMap maps wires by.
   */
  function ruleOrigins() {
    var $ = root.jQuery;
    var origins = [];
    $("#node-input-rule-container").editableList("items").each(function () {
      var data = $(this).data("data") || {};
      origins.push(typeof data.i === "number" ? data.i : null);
    });
    return origins;
  }
  /** Gives the rule list the height the dialog's other rows leave (for oneditresize), at least `min` pixels. */
  function fitRuleList(size, min) {
    var $ = root.jQuery;
    var height = size.height;
    $("#dialog-form>div:not(.node-input-rule-container-row)").each(function () { height -= $(this).outerHeight(true); });
    $("#node-input-rule-container").editableList("height", Math.max(min, height - 30));
  }
  /**
   * Marks one field the editor does not check itself (a field of an editableList row): the
   * red border on `field` and the reason in `line` below it, or neither when `message` is
   * empty. The line takes the look of the dialog's other field messages.
   */
  function mark(field, line, message) {
    var text = message || "";
    field.toggleClass("input-error", text !== "").attr("aria-invalid", text !== "" ? "true" : null);
    line.addClass("traffic-field-error").text(text).toggle(text !== "");
  }
  /** Applies `check` only while `when()` holds (the field is in use). */
  function onlyWhen(when, check) {
    return function (v, opt) { return when.call(this) ? check.call(this, v, opt) : true; };
  }

  /**
   * The value a field has in the open dialog, else the saved one: while a dialog is open
   * its choices count (a field's check depends on another field's choice).
   */
  function current(node, prop, prefix) {
    var $ = root.jQuery;
    var field = $ ? $("#" + (prefix || "node-input") + "-" + prop) : [];
    if (field.length === 0) return node[prop];
    return field.attr("type") === "checkbox" ? field.prop("checked") : field.val();
  }

  /**
   * Shows the default the runtime applies in each select whose property the node lacks (a
   * flow saved before that setting existed): the editor would leave the select blank.
   */
  function selectDefaults(node, prefix) {
    var $ = root.jQuery;
    var defaults = node._def.defaults;
    Object.keys(defaults).forEach(function (prop) {
      var select = $("#" + (prefix || "node-input") + "-" + prop);
      if (!select.is("select") || node[prop] !== undefined || defaults[prop].value === undefined) return;
      if (select.val() === null || select.val() === "") select.val(String(defaults[prop].value));
    });
  }

  /**
   * Readies an open dialog (call from oneditprepare): labels get room for their words
   * (traffic-dialog in resources' style), and each checked field prints its reason under
   * its row as the user types. One message line per field, inside the field's row and
   * hidden when empty, so a valid dialog keeps its rows tight. Ids: #traffic-<property>-error.
   */
  function prepare(node, prefix) {
    var $ = root.jQuery;
    prefix = prefix || "node-input";
    var form = $(prefix === "node-config-input" ? "#node-config-dialog-edit-form" : "#dialog-form").addClass("traffic-dialog");
    selectDefaults(node, prefix);
    var defaults = node._def.defaults;
    var fields = [];
    Object.keys(defaults).forEach(function (prop) {
      if (typeof defaults[prop].validate !== "function") return;
      var input = $("#" + prefix + "-" + prop);
      if (input.length === 0 || input.attr("type") === "hidden") return;
      var row = input.closest(".form-row");
      if (row.length === 0) return;
      var box = row.children(".traffic-field-errors");
      if (box.length === 0) box = $("<div>", { class: "traffic-field-errors" }).appendTo(row);
      var line = $("<div>", { id: "traffic-" + prop + "-error", class: "traffic-field-error" }).hide().appendTo(box);
      fields.push({ prop: prop, input: input, line: line, box: box });
    });
    function check() {
      fields.forEach(function (f) {
        var result;
        try {
          result = defaults[f.prop].validate.call(node, current(node, f.prop, prefix), {});
        } catch (err) {
          result = String(err && err.message);
        }
        var text = result === true ? "" : typeof result === "string" ? result : say("invalid");
        f.line.text(text).toggle(text !== "");
      });
      fields.forEach(function (f) { f.box.toggle(f.box.children(".traffic-field-error").filter(function () { return $(this).text() !== ""; }).length > 0); });
    }
    form.on("input change keyup", check);
    check();
    return check;
  }

  return {
    say: say,
    items: items,
    intIn: intIn,
    uint64: uint64,
    secondsIn: secondsIn,
    powerOfTwoIn: powerOfTwoIn,
    portEntryError: portEntryError,
    portListError: portListError,
    portList: portList,
    cidrList: cidrList,
    brokerHost: brokerHost,
    hostName: hostName,
    onlyWhen: onlyWhen,
    ruleList: ruleList,
    ruleOrigins: ruleOrigins,
    fitRuleList: fitRuleList,
    mark: mark,
    selectDefaults: selectDefaults,
    current: current,
    prepare: prepare
  };
});

// The editor's "traffic" sidebar tab: what this Node-RED can capture (the doctor report)
// and its installed nft tables, the live connections of the connection table, counters per
// node and the top talkers of a running flow source. Live snapshots come over Node-RED's
// comms (topic traffic-policy/live) while the tab is open: the runtime sends them only
// while an editor renews its watch, at most twice a second.
/* global RED, $ */
(function () {
  "use strict";
  var NS = "@traffic-policy/node-red-traffic-policy/traffic:";
  var LIVE_TOPIC = "traffic-policy/live";
  /** The runtime publishes every 500 ms; the view never redraws faster either. */
  var RENDER_INTERVAL_MS = 500;
  /** A watch lasts 30 s on the runtime; renewing every 10 s keeps it while the tab is open. */
  var RENEW_MS = 10000;
  var SCHEMAS = ["connection-accepted", "classification", "forward-summary", "flow-open", "flow-state", "flow-close", "lost", "agent-status", "mqtt-stats", "event"];
  /** Counters shown per node: metric name and its catalogue key. */
  var COUNTERS = [
    ["traffic_connections_accepted_total", "common.sidebar.counter.accepted"],
    ["traffic_connections_live", "common.sidebar.counter.live"],
    ["traffic_connections_total", "common.sidebar.counter.finished"],
    ["traffic_bytes_total", "common.sidebar.counter.bytes"],
    ["traffic_classify_results_total", "common.sidebar.counter.classified"],
    ["traffic_ip_filter_verdicts_total", "common.sidebar.counter.verdicts"],
    ["traffic_untrusted_headers_total", "common.sidebar.counter.untrusted"],
    ["traffic_flow_events_total", "common.sidebar.counter.flowEvents"],
    ["traffic_flow_lost_total", "common.sidebar.counter.flowLost"],
    ["traffic_mqtt_sent_total", "common.sidebar.counter.mqttSent"],
    ["traffic_mqtt_queued", "common.sidebar.counter.mqttQueued"],
    ["traffic_mqtt_dropped_total", "common.sidebar.counter.mqttDropped"],
  ];

  function _(key, opts) {
    return RED._(NS + key, opts);
  }

  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1073741824) return (n / 1048576).toFixed(1) + " MiB";
    return (n / 1073741824).toFixed(1) + " GiB";
  }

  function age(ms) {
    var s = Math.floor(ms / 1000);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    return Math.floor(s / 3600) + " h";
  }

  function nodeLabel(id) {
    var n = RED.nodes.node(id);
    return n ? RED.utils.getNodeLabel(n, n.type) : id;
  }

  function section(parent, titleKey) {
    var box = $('<div class="traffic-sidebar-section">').appendTo(parent);
    $("<h4>").text(_(titleKey)).css({ margin: "10px 0 4px" }).appendTo(box);
    return $("<div>").appendTo(box);
  }

  var content = $('<div class="traffic-sidebar" style="padding: 6px 10px; overflow-y: auto; height: 100%; box-sizing: border-box;">');
  var capsBox = section(content, "common.sidebar.capabilities");
  var nftBox = section(content, "common.sidebar.nftTables");
  var liveHead = section(content, "common.sidebar.connections");
  var filter = $('<input type="text" class="traffic-sidebar-filter" style="width: 100%; box-sizing: border-box;">')
    .attr("placeholder", _("common.sidebar.filter"))
    .appendTo(liveHead);
  var shown = $('<div class="traffic-sidebar-shown" style="font-size: 0.9em; margin: 4px 0;">').appendTo(liveHead);
  // The sidebar is narrow: the table scrolls sideways rather than squeezing its columns.
  var scroller = $('<div style="overflow-x: auto;">').appendTo(liveHead);
  var table = $('<table class="red-ui-info-table traffic-sidebar-connections" style="width: 100%; font-size: 0.85em; white-space: nowrap;">').appendTo(scroller);
  $("<thead>")
    .append(
      $("<tr>").append(
        [
          "common.sidebar.column.client",
          "common.sidebar.column.destination",
          "common.sidebar.column.protocol",
          "common.sidebar.column.node",
          "common.sidebar.column.up",
          "common.sidebar.column.down",
          "common.sidebar.column.age",
        ].map(function (key) {
          return $("<th>").text(_(key));
        }),
      ),
    )
    .appendTo(table);
  var tbody = $("<tbody>").appendTo(table);
  var countersBox = section(content, "common.sidebar.counters");
  var talkersBox = section(content, "common.sidebar.talkers");
  var schemasBox = section(content, "common.sidebar.schemas");
  SCHEMAS.forEach(function (name) {
    $("<a>", { href: "traffic-policy/schemas/" + name + ".json", target: "_blank", class: "traffic-sidebar-schema" })
      .text(name)
      .css({ marginRight: "8px", display: "inline-block" })
      .appendTo(schemasBox);
  });

  var last = null;
  var updates = 0;
  var renderTimer = null;
  var lastRender = 0;

  function matches(row, text) {
    if (text === "") return true;
    var hay = [row.client, row.destination, row.protocol, row.sni, nodeLabel(row.node), row.node].join(" ").toLowerCase();
    return hay.indexOf(text) >= 0;
  }

  function renderConnections() {
    var text = String(filter.val() || "").trim().toLowerCase();
    var rows = last.rows.filter(function (r) {
      return matches(r, text);
    });
    tbody.empty();
    rows.forEach(function (r) {
      var proto = r.protocol === null ? "–" : r.sni ? r.protocol + " " + r.sni : r.protocol;
      $("<tr>", { class: "traffic-sidebar-row", "data-id": r.id, "data-node": r.node, title: _("common.sidebar.reveal") })
        .css({ cursor: "pointer" })
        .append($("<td class='traffic-client'>").text(r.client))
        .append($("<td class='traffic-destination'>").text(r.destination === null ? "–" : r.destination))
        .append($("<td class='traffic-protocol'>").text(proto))
        .append($("<td class='traffic-node'>").text(nodeLabel(r.node)))
        .append($("<td class='traffic-up'>").text(bytes(r.bytesToUpstream)))
        .append($("<td class='traffic-down'>").text(bytes(r.bytesToClient)))
        .append($("<td class='traffic-age'>").text(age(r.ageMs)))
        .on("click", function () {
          RED.view.reveal(r.node);
        })
        .appendTo(tbody);
    });
    shown.text(_("common.sidebar.shown", { shown: rows.length, total: last.total }));
  }

  function renderCounters() {
    countersBox.empty();
    var nodes = {};
    COUNTERS.forEach(function (c) {
      var byNode = last.counters[c[0]] || {};
      Object.keys(byNode).forEach(function (id) {
        (nodes[id] = nodes[id] || []).push([c, byNode[id]]);
      });
    });
    Object.keys(nodes).forEach(function (id) {
      var box = $('<div class="traffic-sidebar-node" style="margin-bottom: 4px; cursor: pointer;">')
        .attr("data-node", id)
        .on("click", function () {
          RED.view.reveal(id);
        })
        .appendTo(countersBox);
      $("<b>").text(nodeLabel(id)).appendTo(box);
      $("<span>")
        .text(
          " " +
            nodes[id]
              .map(function (e) {
                return _(e[0][1]) + " " + (e[0][0] === "traffic_bytes_total" ? bytes(e[1]) : e[1]);
              })
              .join(" · "),
        )
        .appendTo(box);
    });
  }

  function renderTalkers() {
    talkersBox.empty();
    if (last.talkers.length === 0) {
      $("<i>").text(_("common.sidebar.noTalkers")).appendTo(talkersBox);
      return;
    }
    var t = $('<table class="red-ui-info-table traffic-sidebar-talkers" style="width: 100%;">').appendTo(talkersBox);
    last.talkers.forEach(function (x) {
      $("<tr>")
        .append($("<td>").text(x.remote))
        .append($("<td>").text(x.comm || "–"))
        .append($("<td>").text(bytes(x.bytes)))
        .append($("<td>").text(String(x.connections)))
        .appendTo(t);
    });
  }

  function render() {
    renderTimer = null;
    if (last === null) return;
    lastRender = Date.now();
    updates++;
    content.attr("data-updates", String(updates));
    renderConnections();
    renderCounters();
    renderTalkers();
  }

  /** Redraws at most every RENDER_INTERVAL_MS, whatever arrives. */
  function scheduleRender() {
    if (renderTimer !== null) return;
    renderTimer = setTimeout(render, Math.max(0, lastRender + RENDER_INTERVAL_MS - Date.now()));
  }

  filter.on("input", function () {
    if (last !== null) renderConnections();
  });

  RED.comms.subscribe(LIVE_TOPIC, function (_topic, snapshot) {
    last = snapshot;
    scheduleRender();
  });

  function loadStatic() {
    $.getJSON("traffic-policy/capabilities", function (report) {
      capsBox.empty();
      $("<div>").text(_("common.sidebar.host", { host: report.host })).appendTo(capsBox);
      var t = $('<table class="red-ui-info-table traffic-sidebar-capabilities" style="width: 100%;">').appendTo(capsBox);
      report.features.forEach(function (f) {
        $("<tr>")
          .append($("<td>").text(f.available ? "✓" : "✗").css({ color: f.available ? "#5a8" : "#c33", width: "1.5em" }))
          .append($("<td>").text(f.feature).attr("title", f.detail))
          .appendTo(t);
      });
    });
    $.getJSON("traffic-policy/nft-tables", function (res) {
      nftBox.empty();
      if (res.error) $("<i>").text(_("common.sidebar.nftError", { error: res.error })).appendTo(nftBox);
      else if (res.tables.length === 0) $("<i>").text(_("common.sidebar.noTables")).appendTo(nftBox);
      res.tables.forEach(function (t) {
        $('<div class="traffic-sidebar-table">').text(t.family + " " + t.name).appendTo(nftBox);
      });
    });
  }

  var renewTimer = null;
  function watch() {
    $.post("traffic-policy/live/watch");
  }

  RED.sidebar.addTab({
    id: "traffic-policy",
    label: _("common.sidebar.label"),
    name: _("common.sidebar.name"),
    iconClass: "fa fa-exchange",
    content: content,
    enableOnEdit: true,
    onchange: function () {
      loadStatic();
      watch();
      if (renewTimer !== null) clearInterval(renewTimer);
      // Renewed only while the tab is on screen: a hidden tab lets the runtime stop.
      renewTimer = setInterval(function () {
        if (content.is(":visible")) watch();
        else {
          clearInterval(renewTimer);
          renewTimer = null;
        }
      }, RENEW_MS);
    },
  });
})();

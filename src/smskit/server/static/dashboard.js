/* smskit dashboard: draws the charts from the JSON the server embedded in the page.
 * Every number is already in the HTML; this file only adds the three charts (uPlot, vendored).
 * Sets <body data-charts="ready"> once drawn, or "error" (with a console error) if it could not.
 */
(function () {
  "use strict";

  var COLORS = {
    sent: "#2563eb", delivered: "#16a34a", failed: "#dc2626",
    replies: "#7c3aed", optOuts: "#ea580c", clicks: "#0891b2"
  };
  var PALETTE = ["#2563eb", "#16a34a", "#ea580c", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
  var HEIGHT = 220;

  function parseDay(text) {
    var p = text.split("-");
    return Date.UTC(+p[0], +p[1] - 1, +p[2]);
  }

  function isoDay(ms) {
    return new Date(ms).toISOString().slice(0, 10);
  }

  function allDays(range) {
    var days = [];
    var end = parseDay(range.end);
    for (var t = parseDay(range.start); t <= end; t += 86400000) {
      days.push(isoDay(t));
    }
    return days;
  }

  function label(day) {
    return day.slice(8, 10) + "/" + day.slice(5, 7);
  }

  var intFormat = new Intl.NumberFormat("pt-BR", { maximumFractionDigits: 0 });
  var moneyFormat = new Intl.NumberFormat("pt-BR", {
    style: "currency", currency: "BRL", minimumFractionDigits: 2, maximumFractionDigits: 2
  });

  function byDay(days, rows, key, value) {
    var index = {};
    days.forEach(function (d, i) { index[d] = i; });
    var out = days.map(function () { return 0; });
    rows.forEach(function (row) {
      var i = index[row.day];
      if (i !== undefined && (key === null || key(row))) {
        out[i] += value(row);
      }
    });
    return out;
  }

  function series(labelText, color, format) {
    return {
      label: labelText, stroke: color, width: 2, fill: color + "14",
      points: { show: true, size: 5 },
      value: function (u, v) { return v == null ? "\u2013" : format(v); }
    };
  }

  function draw(el, days, lines, format) {
    var xs = days.map(function (d, i) { return i; });
    var opts = {
      width: Math.max(el.clientWidth, 280),
      height: HEIGHT,
      scales: {
        x: { time: false, range: function (u, min, max) { return [min - 0.5, max + 0.5]; } },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } }
      },
      axes: [
        {
          space: 48, incrs: [1, 2, 5, 7, 14, 30, 61, 91],
          values: function (u, splits) {
            return splits.map(function (v) {
              return Number.isInteger(v) && days[v] ? label(days[v]) : "";
            });
          }
        },
        { size: 64, values: function (u, splits) { return splits.map(format); } }
      ],
      cursor: { drag: { x: false, y: false } },
      series: [{
        label: "Dia",
        value: function (u, v) { return v == null || !days[v] ? "\u2013" : label(days[v]); }
      }].concat(lines.map(function (l) { return series(l.label, l.color, format); }))
    };
    var data = [xs].concat(lines.map(function (l) { return l.values; }));
    return new uPlot(opts, data, el);
  }

  function main() {
    var source = document.getElementById("smskit-stats");
    var stats = JSON.parse(source.textContent);
    var days = allDays(stats.range);
    var everyRow = null;
    var charts = [];

    charts.push(draw(document.getElementById("chart-volume"), days, [
      { label: "Enviadas", color: COLORS.sent,
        values: byDay(days, stats.days, everyRow, function (r) { return r.sent; }) },
      { label: "Entregues", color: COLORS.delivered,
        values: byDay(days, stats.days, everyRow, function (r) { return r.delivered; }) },
      { label: "Falhas", color: COLORS.failed,
        values: byDay(days, stats.days, everyRow, function (r) { return r.failed; }) }
    ], function (v) { return intFormat.format(v); }));

    var providers = stats.providers.map(function (p) { return p.provider; });
    if (providers.length === 0) {
      providers = [""];
    }
    charts.push(draw(document.getElementById("chart-cost"), days, providers.map(function (p, i) {
      return {
        label: p || "(nenhum)", color: PALETTE[i % PALETTE.length],
        values: byDay(days, stats.days, function (r) { return r.provider === p; },
                      function (r) { return parseFloat(r.cost); })
      };
    }), function (v) { return moneyFormat.format(v); }));

    charts.push(draw(document.getElementById("chart-engagement"), days, [
      { label: "Respostas", color: COLORS.replies,
        values: byDay(days, stats.days, everyRow, function (r) { return r.replies; }) },
      { label: "Descadastros", color: COLORS.optOuts,
        values: byDay(days, stats.opt_outs, everyRow, function (r) { return r.count; }) },
      { label: "Cliques", color: COLORS.clicks,
        values: byDay(days, stats.clicks, everyRow, function (r) { return r.count; }) }
    ], function (v) { return intFormat.format(v); }));

    var pending = null;
    window.addEventListener("resize", function () {
      if (pending !== null) {
        window.clearTimeout(pending);
      }
      pending = window.setTimeout(function () {
        charts.forEach(function (chart) {
          chart.setSize({ width: Math.max(chart.root.parentNode.clientWidth, 280),
                          height: HEIGHT });
        });
      }, 150);
    });
    document.body.setAttribute("data-charts", "ready");
  }

  document.addEventListener("DOMContentLoaded", function () {
    try {
      main();
    } catch (err) {
      document.body.setAttribute("data-charts", "error");
      console.error("smskit dashboard: charts not drawn:", err);
    }
  });
}());

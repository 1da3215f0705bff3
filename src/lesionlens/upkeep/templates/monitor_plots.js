// Plots of a monitor report over time, drawn as SVG from its JSON (what monitor.json and
// GET /v1/monitor hold). One script for both: monitor.html inlines it with the report's JSON, the
// server's /monitor page inlines it and fetches /v1/monitor. Every text from the report goes in
// through textContent, never as HTML. Colour-blind-safe palette (Okabe-Ito).
"use strict";
const MONITOR_PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function htmlEl(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

// One chart: x = window index, y on a linear or log10 scale; `series` = [{name, colour, points:
// [{x, y, low, high, mark}]}], `lines` = [{y, label, colour}] drawn across.
function monitorChart(title, yLabel, series, options) {
  const o = Object.assign({width: 640, height: 220, log: false, yMin: 0, yMax: 1, lines: []}, options || {});
  const m = {l: 56, r: 12, t: 26, b: 34};
  const w = o.width - m.l - m.r, h = o.height - m.t - m.b;
  const xMax = Math.max(1, o.xMax || 0, ...series.flatMap((s) => s.points.map((p) => p.x)));
  const tf = (v) => (o.log ? Math.log10(Math.max(v, o.yMin)) : v);
  const y0 = tf(o.yMin), y1 = tf(o.yMax);
  const X = (x) => m.l + (xMax === 0 ? w / 2 : (x / xMax) * w);
  const Y = (y) => m.t + h - ((tf(y) - y0) / (y1 - y0)) * h;
  const svg = svgEl("svg", {viewBox: `0 0 ${o.width} ${o.height}`, width: "100%", role: "img", class: "monitor-chart"});
  svg.appendChild(svgEl("title", {}, `${title} (numbers in the table)`));
  svg.appendChild(svgEl("text", {x: m.l, y: 16, "font-size": 13, "font-weight": 600, fill: "#102a43"}, title));
  const ticks = o.log ? logTicks(o.yMin) : [0, 0.25, 0.5, 0.75, 1].map((f) => o.yMin + f * (o.yMax - o.yMin));
  for (const t of ticks) {
    svg.appendChild(svgEl("line", {x1: m.l, x2: m.l + w, y1: Y(t), y2: Y(t), stroke: "#e4e7eb"}));
    svg.appendChild(svgEl("text", {x: m.l - 6, y: Y(t) + 4, "font-size": 10, "text-anchor": "end", fill: "#627d98"},
                          o.log ? t.toExponential(0) : +t.toFixed(2)));
  }
  const xStep = Math.max(1, Math.ceil(xMax / 12));
  for (let x = 0; x <= xMax; x += xStep) {
    svg.appendChild(svgEl("text", {x: X(x), y: m.t + h + 14, "font-size": 10, "text-anchor": "middle", fill: "#627d98"}, x));
  }
  svg.appendChild(svgEl("text", {x: m.l + w / 2, y: o.height - 4, "font-size": 11, "text-anchor": "middle", fill: "#486581"}, "window"));
  svg.appendChild(svgEl("text", {x: 12, y: m.t + h / 2, "font-size": 11, "text-anchor": "middle", fill: "#486581",
                                 transform: `rotate(-90 12 ${m.t + h / 2})`}, yLabel));
  for (const line of o.lines) {
    svg.appendChild(svgEl("line", {x1: m.l, x2: m.l + w, y1: Y(line.y), y2: Y(line.y), stroke: line.colour || "#d64545",
                                   "stroke-dasharray": "5 4", "stroke-width": 1.5}));
    svg.appendChild(svgEl("text", {x: m.l + w - 2, y: Y(line.y) - 4, "font-size": 10, "text-anchor": "end",
                                   fill: line.colour || "#d64545"}, line.label));
  }
  for (const s of series) {
    const pts = s.points.filter((p) => p.y !== null && p.y !== undefined);
    if (pts.length > 1) {
      svg.appendChild(svgEl("polyline", {points: pts.map((p) => `${X(p.x)},${Y(p.y)}`).join(" "), fill: "none",
                                         stroke: s.colour, "stroke-width": 1.6}));
    }
    for (const p of pts) {
      if (p.low !== undefined && p.low !== null) {
        svg.appendChild(svgEl("line", {x1: X(p.x), x2: X(p.x), y1: Y(p.low), y2: Y(p.high), stroke: s.colour, "stroke-width": 1.2}));
      }
      const dot = svgEl("circle", {cx: X(p.x), cy: Y(p.y), r: p.mark ? 5 : 3.2, fill: p.mark ? "#d64545" : s.colour,
                                   stroke: "#fff", "stroke-width": 1});
      dot.appendChild(svgEl("title", {}, `${s.name}, window ${p.x}: ${p.label || p.y}`));
      svg.appendChild(dot);
    }
  }
  return svg;
}

// Powers of ten from `floor` up to 1, at most six of them.
function logTicks(floor) {
  const decades = Math.round(-Math.log10(floor));
  const step = Math.max(1, Math.ceil(decades / 5));
  const ticks = [];
  for (let d = 0; d <= decades; d += step) ticks.push(Math.pow(10, -d));
  return ticks;
}

function monitorLegend(items) {
  const ul = htmlEl("ul", null, "monitor-legend");
  for (const [name, colour] of items) {
    const li = htmlEl("li");
    const sw = htmlEl("span", null, "monitor-swatch");
    sw.style.background = colour;
    li.append(sw, document.createTextNode(name));
    ul.appendChild(li);
  }
  return ul;
}

// Draw every chart of `report` into `box` (emptied first).
function drawMonitor(box, report) {
  box.replaceChildren();
  const windows = report.windows || [];
  if (!windows.length) {
    box.appendChild(htmlEl("p", `No complete window yet: ${report.pending} of ${report.window} cases so far.`, "note"));
    return;
  }
  const tests = Object.keys(report.calibration.thresholds);
  const xMax = windows[windows.length - 1].index;
  tests.forEach((t, i) => {
    // each chart reaches a decade below its smallest p-value and its threshold (p-values under 1e-16 sit there)
    const least = Math.min(report.calibration.thresholds[t] / 10, ...windows.map((w) => w.tests[t].p_value));
    const floor = Math.pow(10, Math.floor(Math.log10(Math.max(least, 1e-16))));
    const points = windows.map((w) => ({x: w.index, y: Math.max(w.tests[t].p_value, floor), mark: w.tests[t].drift,
                                        label: `p = ${w.tests[t].p_value.toExponential(2)}${w.tests[t].drift ? " (drift)" : ""}`}));
    const fig = htmlEl("figure");
    fig.dataset.test = t;
    fig.appendChild(monitorChart(`${t}: p-value per window`, "p-value (log)",
      [{name: t, colour: MONITOR_PALETTE[i % MONITOR_PALETTE.length], points}],
      {log: true, yMin: floor, yMax: 1, xMax, lines: [{y: report.calibration.thresholds[t], label: "threshold"}]}));
    fig.appendChild(htmlEl("figcaption", report.tests[t] || t));
    box.appendChild(fig);
  });
  const classes = report.classes;
  const mix = classes.map((c, i) => ({name: c, colour: MONITOR_PALETTE[i % MONITOR_PALETTE.length],
    points: windows.map((w) => ({x: w.index, y: w.class_mix[c] / w.cases}))}));
  const mixFig = htmlEl("figure");
  mixFig.dataset.test = "class_mix_share";
  mixFig.appendChild(monitorChart("Predicted-class mix per window", "share of cases", mix, {xMax}));
  mixFig.appendChild(monitorLegend(mix.map((s) => [s.name, s.colour])));
  box.appendChild(mixFig);
  const qMax = Math.max(0.05, report.reference.quality_rate * 1.5, ...windows.map((w) => w.quality_rate * 1.2));
  const qFig = htmlEl("figure");
  qFig.dataset.test = "quality_rate";
  qFig.appendChild(monitorChart("Quality-flag rate per window", "share flagged",
    [{name: "quality flags", colour: MONITOR_PALETTE[5], points: windows.map((w) => ({x: w.index, y: w.quality_rate}))}],
    {yMax: qMax, xMax, lines: [{y: report.reference.quality_rate, label: "reference", colour: "#627d98"}]}));
  box.appendChild(qFig);
  for (const view of report.views) {
    const series = [["sensitivity", MONITOR_PALETTE[0]], ["specificity", MONITOR_PALETTE[1]]].map(([what, colour]) => ({
      name: `${view} ${what}`, colour,
      points: windows.filter((w) => w.performance[what][view].n > 0).map((w) => {
        const r = w.performance[what][view];
        return {x: w.index, y: r.estimate, low: r.low, high: r.high,
                label: `${r.estimate.toFixed(2)} [${r.low.toFixed(2)}, ${r.high.toFixed(2)}] of ${r.n}`};
      })}));
    const fig = htmlEl("figure");
    fig.dataset.test = `performance_${view}`;
    if (!series.some((s) => s.points.length)) {
      fig.appendChild(htmlEl("p", `${view}: no settled labels yet in any window.`, "note"));
    } else {
      fig.appendChild(monitorChart(`${view}: sensitivity and specificity at the operating point (95% Wilson)`, "rate", series, {xMax}));
      fig.appendChild(monitorLegend(series.map((s) => [s.name, s.colour])));
    }
    box.appendChild(fig);
  }
}

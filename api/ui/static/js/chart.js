// Small inline-SVG charts: a scatter plot with axes and horizontal bars.
import { svg } from "./dom.js";
import { isNum } from "./format.js";

function extent(values, pad) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) [lo, hi] = [lo - (Math.abs(lo) || 1) * 0.1, hi + (Math.abs(hi) || 1) * 0.1];
  const margin = (hi - lo) * pad;
  return [lo - margin, hi + margin];
}

const ticks = ([lo, hi], count = 5) => Array.from({ length: count }, (_, i) => lo + ((hi - lo) * i) / (count - 1));

/** points: [{x, y, label, href}]; x and y are numbers. */
export function scatter(points, { xLabel, yLabel, width = 560, height = 340 }) {
  const m = { left: 64, right: 16, top: 12, bottom: 44 };
  const xs = [0, Math.max(1, ...points.map((p) => p.x))]; // shares of FLOPs kept: 0 to (at least) all
  const ys = extent(points.map((p) => p.y), 0.12);
  const px = (x) => m.left + ((x - xs[0]) / (xs[1] - xs[0])) * (width - m.left - m.right);
  const py = (y) => height - m.bottom - ((y - ys[0]) / (ys[1] - ys[0])) * (height - m.top - m.bottom);
  const axisY = height - m.bottom;
  return svg(
    "svg",
    { class: "chart scatter", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": `${yLabel} against ${xLabel}` },
    svg("line", { class: "axis", x1: m.left, y1: axisY, x2: width - m.right, y2: axisY }),
    svg("line", { class: "axis", x1: m.left, y1: m.top, x2: m.left, y2: axisY }),
    ticks(xs).map((t) => svg("text", { class: "tick", x: px(t), y: axisY + 16, "text-anchor": "middle" }, t.toFixed(2))),
    ticks(ys).map((t) => svg("text", { class: "tick", x: m.left - 6, y: py(t) + 4, "text-anchor": "end" }, t.toFixed(3))),
    svg("text", { class: "label", x: (m.left + width - m.right) / 2, y: height - 6, "text-anchor": "middle" }, xLabel),
    svg("text", { class: "label", x: 14, y: (m.top + axisY) / 2, "text-anchor": "middle",
      transform: `rotate(-90 14 ${(m.top + axisY) / 2})` }, yLabel),
    points.map((p) => svg("a", { href: p.href },
      svg("circle", { class: "point", cx: px(p.x), cy: py(p.y), r: 6, "data-x": p.x, "data-y": p.y },
        svg("title", null, p.label)))),
  );
}

/** entries: [[label, value]] with value >= 0, drawn as horizontal bars with the formatted value. */
export function bars(entries, format, { width = 560 } = {}) {
  const shown = entries.filter(([, v]) => isNum(v) && v >= 0);
  const row = 22;
  const labelWidth = 150;
  const max = Math.max(...shown.map(([, v]) => v), 1e-9);
  const span = width - labelWidth - 90;
  return svg(
    "svg",
    { class: "chart bars", viewBox: `0 0 ${width} ${shown.length * row + 4}`, width, height: shown.length * row + 4 },
    shown.map(([label, value], i) => [
      svg("text", { class: "tick", x: labelWidth - 8, y: i * row + 15, "text-anchor": "end" }, label),
      svg("rect", { class: "bar", x: labelWidth, y: i * row + 4, width: Math.max(1, (value / max) * span), height: row - 8 }),
      svg("text", { class: "tick", x: labelWidth + (value / max) * span + 6, y: i * row + 15 }, format(value)),
    ]),
  );
}

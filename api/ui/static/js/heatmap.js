// Per-block structure of a compressed model from its report: heads kept per attention block
// (heads.layers[<path>] with num_heads and kept) and FFN width or rank per block (ffn.widths / ffn.ranks,
// or the manifest's structure.ffn_width / ffn_rank), keyed by module path. Missing keys are skipped.
import { h, svg } from "./dom.js";
import { isNum, isObj } from "./format.js";

/** "model.layers.3.mlp.up_proj" -> {stack: "model.layers", index: 3, rest: "mlp.up_proj"} (first number). */
function splitPath(path) {
  const match = /^(.*?)\.(\d+)(?:\.(.+))?$/.exec(path);
  return match ? { stack: match[1], index: Number(match[2]), rest: match[3] ?? "" } : { stack: path, index: 0, rest: "" };
}

/** [{stack, part, rows: Map(label -> Map(index -> {value, of, text, path}))}] in report order. */
function structure(report) {
  const stacks = new Map();
  const put = (path, part, label, cell) => {
    const { stack, index, rest } = splitPath(path);
    if (!stacks.has(stack)) stacks.set(stack, { stack, part: undefined, rows: new Map() });
    const entry = stacks.get(stack);
    entry.part ??= part;
    const name = typeof label === "function" ? label(rest) : label;
    if (!entry.rows.has(name)) entry.rows.set(name, new Map());
    entry.rows.get(name).set(index, { ...cell, path });
  };
  const layers = report?.heads?.layers;
  for (const [path, layer] of Object.entries(isObj(layers) ? layers : {})) {
    if (!isObj(layer) || !isNum(layer.num_heads)) continue;
    const kept = Array.isArray(layer.kept) ? layer.kept.length : layer.num_heads; // not pruned: all kept
    const part = typeof layer.part === "string" ? layer.part : undefined;
    put(path, part, "heads kept", { value: kept, of: layer.num_heads, text: `${kept}/${layer.num_heads}` });
  }
  const ffn = isObj(report?.ffn) ? report.ffn : {};
  const manifest = isObj(report?.structure) ? report.structure : {};
  const sources = [
    [ffn.widths ?? manifest.ffn_width, () => "FFN width"],
    [ffn.ranks ?? manifest.ffn_rank, (rest) => `FFN rank · ${rest.split(".").pop() || "linear"}`],
  ];
  for (const [values, label] of sources) {
    for (const [path, value] of Object.entries(isObj(values) ? values : {})) {
      if (isNum(value)) put(path, undefined, label, { value, text: String(value) });
    }
  }
  return [...stacks.values()];
}

const hasFfnStructure = (report) =>
  [report?.ffn?.widths, report?.ffn?.ranks, report?.structure?.ffn_width, report?.structure?.ffn_rank].some(isObj);

const shade = (f) => `hsl(215, 62%, ${Math.round(94 - 58 * f)}%)`;

function stackMap({ stack, part, rows }) {
  const cell = { w: 46, h: 28 };
  const labelWidth = 170;
  const indices = [...new Set([...rows.values()].flatMap((r) => [...r.keys()]))].sort((a, b) => a - b);
  const width = labelWidth + indices.length * cell.w + 4;
  const height = 20 + rows.size * cell.h + 4;
  const body = [...rows.entries()].map(([label, cells], r) => {
    const max = Math.max(...[...cells.values()].map((c) => c.value), 1e-9);
    const y = 20 + r * cell.h;
    return [
      svg("text", { class: "tick", x: labelWidth - 8, y: y + cell.h / 2 + 4, "text-anchor": "end" }, label),
      indices.map((index, c) => {
        const item = cells.get(index);
        if (!item) return null;
        const f = item.value / (item.of ?? max);
        const x = labelWidth + c * cell.w;
        return svg("g", { class: "cell", "data-row": label, "data-index": index, "data-value": item.value },
          svg("rect", { x, y, width: cell.w - 2, height: cell.h - 2, rx: 3, fill: shade(f) }),
          svg("text", { x: x + cell.w / 2 - 1, y: y + cell.h / 2 + 4, "text-anchor": "middle", class: f > 0.55 ? "on-dark" : "" },
            item.text),
          svg("title", null, `${item.path}: ${item.text}`));
      }),
    ];
  });
  return h(
    "figure",
    { class: "heatmap", "data-stack": stack },
    h("figcaption", null, part ? `${part} · ` : "", h("span", { class: "mono" }, stack)),
    svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": `structure of ${stack}` },
      indices.map((index, c) => svg("text", { class: "tick", x: labelWidth + c * cell.w + cell.w / 2 - 1, y: 14,
        "text-anchor": "middle" }, `#${index}`)),
      body),
  );
}

/** The heatmap of every block stack in the report, with notes on what is missing. */
export function heatmap(report) {
  const stacks = structure(report);
  const notes = [];
  if (!stacks.length) notes.push("This report has no per-layer structure.");
  else if (!hasFfnStructure(report)) notes.push("FFN widths and ranks are not in this report.");
  return h(
    "div",
    { id: "heatmap" },
    stacks.map(stackMap),
    stacks.length ? h("p", { class: "muted" }, "Columns are blocks. Shade: share of heads kept; on FFN rows, " +
      "share of the row's largest value.") : null,
    notes.map((n) => h("p", { class: "muted note" }, n)),
  );
}

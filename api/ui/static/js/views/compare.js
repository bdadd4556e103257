// Several succeeded jobs of one model side by side: quality against FLOPs kept, and a table.
import { api, jobPath } from "../api.js";
import { scatter } from "../chart.js";
import { h, table } from "../dom.js";
import { fixed, isNum, percent, times } from "../format.js";
import { metrics } from "../report.js";
import { displaySource, errorBox, showError } from "./common.js";

const MAX_JOBS = 30;
const QUALITY = [
  ["cosine", "output cosine"],
  ["top1", "top-1 agreement"],
  ["accuracy", "accuracy"],
  ["divergence", "divergence"],
  ["speedup", "latency speed-up"],
];

async function reports(jobs, signal) {
  const result = [];
  for (let i = 0; i < jobs.length; i += 4) { // a few at a time, well inside the rate limit
    const chunk = jobs.slice(i, i + 4);
    const bodies = await Promise.all(chunk.map((job) => api(`${jobPath(job.id)}/report`, { signal })));
    chunk.forEach((job, k) => result.push({ job, metrics: metrics(bodies[k]), report: bodies[k] }));
  }
  return result;
}

function view(entries, metric) {
  const [key, label] = QUALITY.find(([k]) => k === metric);
  const points = entries.filter((e) => isNum(e.metrics.flopsKept) && isNum(e.metrics[key])).map((e) => ({
    x: e.metrics.flopsKept,
    y: e.metrics[key],
    href: `#/jobs/${e.job.id}`,
    label: `${e.job.id.slice(0, 12)}: ${label} ${fixed(e.metrics[key], 4)} at ${percent(e.metrics.flopsKept)} FLOPs`,
  }));
  const rows = entries.map(({ job, metrics: m, report }) => [
    h("a", { href: `#/jobs/${job.id}`, class: "mono" }, job.id.slice(0, 12)),
    report?.heads?.method ?? "–", report?.ffn?.method ?? "–", fixed(job.config?.target_flops_ratio, 2),
    percent(m.flopsKept), percent(m.paramsKept), times(m.speedup), fixed(m.cosine, 4), fixed(m.top1, 4), percent(m.accuracy),
  ]);
  return [
    points.length ? scatter(points, { xLabel: "FLOPs kept (whole model)", yLabel: label })
      : h("p", { class: "muted" }, `No job of this model reports ${label}.`),
    table(["job", "heads", "FFN", "target", "FLOPs kept", "params kept", "speed-up", "cosine", "top-1", "accuracy"], rows,
      { id: "compare-table" }),
  ];
}

export function compareView(signal) {
  const error = errorBox();
  const models = h("select", { id: "compare-model", "aria-label": "Model" });
  const metric = h("select", { id: "compare-metric", "aria-label": "Quality" }, QUALITY.map(([k, l]) => h("option", { value: k }, l)));
  const out = h("div", { id: "compare" }, h("p", { class: "muted" }, "Loading…"));
  let bySource = new Map();
  let entries = [];
  const redraw = () => out.replaceChildren(...view(entries, metric.value));

  async function show() {
    out.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    entries = await reports(bySource.get(models.value).slice(0, MAX_JOBS), signal);
    redraw();
  }
  async function load() {
    const jobs = (await api("/v1/jobs?status=succeeded&limit=100", { signal })).data;
    bySource = Map.groupBy(jobs, (job) => job.source);
    if (!bySource.size) {
      out.replaceChildren(h("p", { class: "muted" }, "No job has succeeded yet."));
      return;
    }
    const sources = [...bySource.keys()].sort((a, b) => bySource.get(b).length - bySource.get(a).length);
    models.replaceChildren(...sources.map((s) => h("option", { value: s }, `${displaySource(s)} (${bySource.get(s).length})`)));
    await show();
  }
  models.addEventListener("change", () => show().catch((e) => showError(error, e)));
  metric.addEventListener("change", redraw);
  load().catch((e) => showError(error, e));
  return h("section", { class: "card" },
    h("div", { class: "bar" }, h("h1", null, "Compare"), h("label", null, "Model ", models), h("label", null, "Quality ", metric)),
    h("p", { class: "muted" }, `The ${MAX_JOBS} most recent succeeded jobs of one model (of the last 100 succeeded).`),
    error, out);
}

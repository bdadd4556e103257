// The sections of a job's report. Every value is looked up defensively: a missing key shows "–" or
// leaves its section out, never breaks the page.
import { bars } from "./chart.js";
import { h, table } from "./dom.js";
import { compact, fixed, isNum, isObj, ms, percent, ratio, seconds, times } from "./format.js";

const PART_ORDER = ["vision", "projector", "language", "total"];
const STAGES_AFTER = ["after_compression", "after_recovery"];

const section = (title, ...content) => h("section", { class: "report-part", "data-section": title }, h("h3", null, title), content);

/** The last measured value among after_compression / after_recovery. */
const final = (byStage) => (isObj(byStage) ? byStage.after_recovery ?? byStage.after_compression : undefined);

/** Quality and cost numbers of a report, for the summary and the compare view (undefined when absent). */
export function metrics(report) {
  const fidelity = final(report?.fidelity);
  const accuracy = final(report?.accuracy);
  return {
    flopsKept: ratio(report?.flops?.after?.total, report?.flops?.before?.total),
    scopeFlops: report?.flops?.scope_ratio,
    paramsKept: ratio(report?.params?.after?.total, report?.params?.before?.total),
    speedup: report?.latency?.speedup,
    cosine: fidelity?.cosine,
    top1: fidelity?.top1_agreement,
    divergence: fidelity?.divergence,
    accuracy: isNum(accuracy) ? accuracy : undefined,
  };
}

function summary(report) {
  const m = metrics(report);
  const tile = (label, value, hint) => h("div", { class: "tile" }, h("div", { class: "value" }, value),
    h("div", { class: "muted" }, label), hint ? h("div", { class: "muted small" }, hint) : null);
  const target = report?.flops?.target_scope_ratio;
  return h("div", { class: "tiles" },
    tile("FLOPs kept (scope)", percent(m.scopeFlops), isNum(target) ? `target ${percent(target)}` : null),
    tile("params kept", percent(m.paramsKept)),
    tile("latency speed-up", times(m.speedup)),
    tile("output cosine", fixed(m.cosine)),
    isNum(m.accuracy) ? tile("accuracy", percent(m.accuracy)) : null);
}

function parts(report) {
  const { params, flops } = report ?? {};
  const names = new Set([params?.before, params?.after, flops?.before, flops?.after].flatMap((o) => Object.keys(isObj(o) ? o : {})));
  const ordered = [...PART_ORDER.filter((p) => names.has(p)), ...[...names].filter((p) => !PART_ORDER.includes(p))];
  if (!ordered.length) return null;
  const rows = ordered.map((part) => [part,
    compact(params?.before?.[part]), compact(params?.after?.[part]), percent(ratio(params?.after?.[part], params?.before?.[part])),
    compact(flops?.before?.[part]), compact(flops?.after?.[part]), percent(ratio(flops?.after?.[part], flops?.before?.[part]))]);
  return section("Params and FLOPs per part",
    table(["part", "params before", "after", "kept", "FLOPs before", "after", "kept"], rows, { id: "parts" }));
}

function latency(report) {
  const l = report?.latency;
  if (!isObj(l)) return null;
  if (!l.measured) return section("Latency", h("p", { class: "muted" }, "Latency was not measured for this job."));
  const batch = isObj(l.batch) ? Object.entries(l.batch).map(([k, v]) => `${k} ${Array.isArray(v) ? v.join("×") : v}`).join(", ") : "–";
  return section("Latency",
    table(["", "median", "min", "repeats"], [
      ["before", ms(l.before?.median_ms), ms(l.before?.min_ms), l.before?.repeats ?? "–"],
      ["after", ms(l.after?.median_ms), ms(l.after?.min_ms), l.after?.repeats ?? "–"],
    ], { id: "latency" }),
    h("p", { class: "muted" }, `speed-up ${times(l.speedup)} · device ${l.device ?? "–"} · threads ${l.threads ?? "–"} · batch ${batch}`));
}

function quality(report) {
  const f = report?.fidelity;
  const a = report?.accuracy;
  const stages = STAGES_AFTER.filter((s) => isObj(f?.[s]) || isNum(a?.[s]));
  if (!stages.length) return null;
  const heads = ["metric", ...(isObj(a) ? ["before"] : []), ...stages.map((s) => s.replace("_", " "))];
  const kind = f?.after_compression?.kind ?? f?.after_recovery?.kind;
  const rows = [
    [`divergence${kind ? ` (${kind})` : ""}`, "divergence"], ["cosine", "cosine"], ["top-1 agreement", "top1_agreement"],
  ].filter(([, key]) => stages.some((s) => isNum(f?.[s]?.[key])))
    .map(([label, key]) => [label, ...(isObj(a) ? ["–"] : []), ...stages.map((s) => fixed(f?.[s]?.[key], 4))]);
  if (isObj(a)) rows.push([`accuracy (${a.samples ?? "?"} samples)`, percent(a.before), ...stages.map((s) => percent(a[s]))]);
  const r = report?.recovery;
  return section("Fidelity and accuracy",
    table(heads, rows, { id: "quality" }),
    isObj(r) ? h("p", { class: "muted", id: "recovery" }, `recovery: ${r.steps ?? "?"} steps, distillation loss ${fixed(r.first_loss, 4)} → ${fixed(r.last_loss, 4)}${recoveryOutcome(r)}`) : null);
}

function recoveryOutcome(r) {
  const d = r.held_out_divergence;
  const moved = isObj(d) ? ` (held-out divergence ${fixed(d.before, 4)} → ${fixed(d.distilled, 4)})` : "";
  if (r.kept === true) return `; distilled weights kept${moved}`;
  if (r.kept === false) return `; distilled weights discarded, they were further from the original${moved}`;
  return "";
}

function methods(report) {
  const rows = [
    ["heads", report?.heads?.method ?? "–"],
    ["FFN", report?.ffn?.method ?? "–"],
    ["FFN epsilon", fixed(report?.ffn?.epsilon, 4)],
    ["scope", Array.isArray(report?.scope) ? report.scope.join(", ") : "–"],
    ["model type", report?.model?.model_type ?? "–"],
  ];
  return section("Methods", table(["", ""], rows, { id: "methods", class: "compact" }));
}

function stages(report) {
  const timings = report?.stages_seconds;
  if (!isObj(timings)) return null;
  const entries = Object.entries(timings).filter(([, v]) => isNum(v));
  const total = entries.reduce((sum, [, v]) => sum + v, 0);
  return section("Stage timings", bars(entries, seconds), h("p", { class: "muted" }, `total ${seconds(total)}`));
}

/** Every report section that has data. */
export function reportSections(report) {
  return [summary(report), parts(report), quality(report), latency(report), methods(report), stages(report)];
}

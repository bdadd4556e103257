// The job form. Empty fields are left out, so the service's defaults apply; "more options" takes any other
// CompressionOptions field as JSON. One Idempotency-Key per form: a double submit creates one job.
import { api } from "../api.js";
import { h } from "../dom.js";
import { errorBox, showError } from "./common.js";

const HEADS = ["infoprune", "infoprune_free", "random", "l1", "taylor", "entropy", "none"];
const FFN = ["auto", "whitened_svd", "svd", "uniform", "width", "none"];
const NUMBERS = [
  ["target_flops_ratio", "Target FLOPs ratio", "", "any", "0.5"],
  ["gate_steps", "Gate training steps", "default 150", "1"],
  ["recovery_steps", "Recovery steps", "default 100", "1"],
  ["calibration_samples", "Calibration samples", "default 64", "1"],
  ["held_out_samples", "Held-out samples", "default 16", "1"],
];

const randomKey = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

const field = (label, control) => h("label", { class: "field" }, h("span", null, label), control);
const choice = (name, values) => h("select", { name }, h("option", { value: "" }, "default"), values.map((v) => h("option", { value: v }, v)));

function config(form) {
  const data = new FormData(form);
  const result = {};
  for (const [name, , , step] of NUMBERS) {
    const value = String(data.get(name) ?? "").trim();
    if (value) result[name] = step === "1" ? Number.parseInt(value, 10) : Number(value);
  }
  for (const name of ["heads", "ffn"]) if (data.get(name)) result[name] = data.get(name);
  result.scope = data.getAll("scope");
  if (data.get("measure_latency")) result.measure_latency = data.get("measure_latency") === "true";
  const extra = String(data.get("extra") ?? "").trim();
  if (extra) {
    let parsed;
    try {
      parsed = JSON.parse(extra);
    } catch {
      throw new Error("More options must be a JSON object.");
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("More options must be a JSON object.");
    Object.assign(result, parsed);
  }
  return result;
}

export function submitView(signal) {
  const error = errorBox();
  const idempotencyKey = randomKey();
  const form = h(
    "form",
    { class: "card", id: "submit-job" },
    h("h1", null, "New job"),
    field("Model source", h("input", { name: "source", required: true, size: "48",
      placeholder: "folder in the model root, s3://bucket/prefix, owner/name or upload:<id>" })),
    h("div", { class: "grid" },
      NUMBERS.map(([name, label, placeholder, step, value]) => field(label, h("input", {
        name, type: "number", min: step === "1" ? "0" : "0.01", max: step === "1" ? null : "1", step, placeholder, value,
      }))),
      field("Head method", choice("heads", HEADS)),
      field("FFN method", choice("ffn", FFN)),
      field("Latency", h("select", { name: "measure_latency" }, h("option", { value: "" }, "measure (default)"),
        h("option", { value: "false" }, "skip"))),
      h("fieldset", { class: "field" }, h("legend", null, "Scope"),
        ["vision", "language"].map((part) => h("label", null, h("input", { type: "checkbox", name: "scope", value: part, checked: true }), ` ${part}`)))),
    field("More options (JSON)", h("textarea", { name: "extra", rows: "3", placeholder: '{"calibration": "data/calib.jsonl", "latency_batch": 8}' })),
    field("Device class", h("input", { name: "device_class", placeholder: "default" })),
    error,
    h("button", { type: "submit" }, "Submit job"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const data = new FormData(form);
    try {
      const body = { source: String(data.get("source")).trim(), config: config(form) };
      const deviceClass = String(data.get("device_class") ?? "").trim();
      if (deviceClass) body.device_class = deviceClass;
      const job = await api("/v1/jobs", { method: "POST", body, extraHeaders: { "Idempotency-Key": idempotencyKey }, signal });
      location.hash = `#/jobs/${job.id}`;
    } catch (e) {
      showError(error, e);
    }
  });
  return form;
}

// Pieces shared by the views: status badges, progress bars, error notes, the budget of a job.
import { h } from "../dom.js";
import { fixed, hidePaths } from "../format.js";

export const ACTIVE = new Set(["queued", "running", "cancelling"]);

export const badge = (status) => h("span", { class: `badge ${status}`, "data-status": status }, status);

export const progressBar = (value) => h("progress", { max: "1", value: String(value ?? 0) });

/** Job sources as tenants gave them; an absolute server path keeps only its last name. */
export const displaySource = (source) => hidePaths(source);

export function budget(config) {
  if (config?.target_flops_ratio != null) return `FLOPs ${fixed(config.target_flops_ratio, 2)}`;
  const parts = [];
  if (config?.head_keep_ratio != null) parts.push(`heads ${fixed(config.head_keep_ratio, 2)}`);
  if (config?.ffn_epsilon != null) parts.push(`ε ${fixed(config.ffn_epsilon, 2)}`);
  return parts.join(", ") || "–";
}

/** Puts the message of `error` into `box` (ignoring aborts: the view was left). */
export function showError(box, error) {
  if (error?.name === "AbortError") return;
  box.hidden = false;
  box.replaceChildren(hidePaths(error?.message ?? String(error)));
}

export const errorBox = () => h("p", { class: "error", role: "alert", hidden: true });

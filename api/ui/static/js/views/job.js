// One job: live status, progress and events over SSE; once it has succeeded, the report, the per-block
// structure heatmap and the artifact downloads.
import { api, followEvents, jobPath } from "../api.js";
import { h, safeUrl, table } from "../dom.js";
import { bytes, fixed, hidePaths, when } from "../format.js";
import { heatmap } from "../heatmap.js";
import { reportSections } from "../report.js";
import { ACTIVE, badge, budget, displaySource, errorBox, progressBar, showError } from "./common.js";

function overview(job, onCancel) {
  const rows = [
    ["model", displaySource(job.source)],
    ["budget", budget(job.config)],
    ["status", badge(job.status)],
    ["stage", job.stage],
    ["progress", h("span", null, progressBar(job.progress), " ", fixed(100 * job.progress, 0), "%")],
    ["created", when(job.created_at)],
    ["finished", when(job.finished_at)],
    ["attempts", job.attempts],
    ["device class", job.device_class],
  ];
  return h("div", { id: "overview" },
    h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", null, k), h("dd", { "data-field": k }, v)])),
    job.error ? h("p", { class: "error", id: "job-error" }, hidePaths(job.error)) : null,
    ACTIVE.has(job.status) && job.status !== "cancelling"
      ? h("button", { type: "button", id: "cancel", onclick: onCancel }, "Cancel job") : null);
}

function artifactList(items) {
  const rows = items.map((a) => {
    const url = safeUrl(a.url);
    return [url ? h("a", { href: url, download: a.name }, a.name) : a.name, bytes(a.size),
      h("span", { class: "mono", title: a.sha256 }, String(a.sha256).slice(0, 16))];
  });
  return h("div", null, table(["file", "size", "sha256"], rows, { id: "artifacts" }),
    h("p", { class: "muted" }, "Download links expire; reload the page for fresh ones."));
}

export function jobView(jobId, signal) {
  const error = errorBox();
  const head = h("div");
  const log = h("tbody");
  const report = h("div", { id: "report" }, h("p", { class: "muted" }, "The report appears when the job has succeeded."));
  const structure = h("div", null, h("p", { class: "muted" }, "–"));
  const artifacts = h("div", null, h("p", { class: "muted" }, "–"));
  let job;

  const show = (current) => {
    job = current;
    head.replaceChildren(overview(job, cancel));
  };
  async function cancel() {
    show(await api(`${jobPath(jobId)}/cancel`, { method: "POST", signal }).catch((e) => (showError(error, e), job)));
  }
  function onEvent(event) {
    log.append(h("tr", { "data-kind": event.kind }, h("td", null, when(event.created_at)), h("td", null, badge(event.status)),
      h("td", null, event.stage), h("td", { class: "num" }, fixed(100 * event.progress, 0), "%"),
      h("td", null, hidePaths(event.message))));
    show({ ...job, status: event.status, stage: event.stage, progress: event.progress });
  }
  async function finished() {
    show(await api(jobPath(jobId), { signal }));
    if (job.status !== "succeeded") {
      report.replaceChildren(h("p", { class: "muted" }, `No report: the job ${job.status}.`));
      return;
    }
    const [body, files] = await Promise.all([
      api(`${jobPath(jobId)}/report`, { signal }),
      api(`${jobPath(jobId)}/artifacts`, { signal }),
    ]);
    report.replaceChildren(...reportSections(body));
    structure.replaceChildren(heatmap(body));
    artifacts.replaceChildren(artifactList(files.data));
  }

  api(jobPath(jobId), { signal })
    .then((first) => (show(first), followEvents(jobId, onEvent, signal)))
    .then(() => !signal.aborted && finished())
    .catch((e) => showError(error, e));

  return h("div", { class: "job" },
    h("section", { class: "card" }, h("h1", null, "Job ", h("span", { class: "mono" }, jobId)), error, head),
    h("section", { class: "card" }, h("h2", null, "Report"), report),
    h("section", { class: "card" }, h("h2", null, "Structure per block"), structure),
    h("section", { class: "card" }, h("h2", null, "Artifacts"), artifacts),
    h("section", { class: "card" }, h("h2", null, "Events"),
      h("div", { class: "scroll" }, h("table", { id: "events", class: "list" },
        h("thead", null, h("tr", null, ["time", "status", "stage", "progress", "message"].map((t) => h("th", { scope: "col" }, t)))),
        log))),
  );
}

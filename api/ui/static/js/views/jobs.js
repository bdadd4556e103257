// The tenant's jobs, newest first, with live status and progress of the active ones over SSE.
import { api, followEvents, jobPath } from "../api.js";
import { childController, h } from "../dom.js";
import { fixed, when } from "../format.js";
import { ACTIVE, badge, budget, displaySource, errorBox, progressBar, showError } from "./common.js";

const STATUSES = ["queued", "running", "cancelling", "succeeded", "failed", "cancelled"];
const MAX_FOLLOWED = 4; // streams held open at once (browsers allow few connections per host)

export function jobsView(signal) {
  const error = errorBox();
  const filter = h("select", { id: "status-filter", "aria-label": "Status" }, h("option", { value: "" }, "all"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  const body = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "More");
  let cursor = null;
  let followed = 0;
  let page = childController(signal);

  function follow(job, update) {
    followed += 1;
    followEvents(job.id, (event) => update({ ...job, ...event, id: job.id }), page.signal)
      .then(() => api(jobPath(job.id), { signal: page.signal }))
      .then((fresh) => fresh && update(fresh))
      .catch((e) => showError(error, e))
      .finally(() => (followed -= 1));
  }

  function row(job) {
    const tr = h("tr", { "data-job": job.id });
    const update = (current) => tr.replaceChildren(
      h("td", null, when(job.created_at)),
      h("td", null, h("a", { href: `#/jobs/${job.id}`, class: "mono" }, job.id.slice(0, 12))),
      h("td", null, displaySource(job.source)),
      h("td", null, budget(job.config)),
      h("td", null, badge(current.status)),
      h("td", null, current.stage),
      h("td", null, progressBar(current.progress), " ", fixed(100 * current.progress, 0), "%"),
    );
    update(job);
    if (ACTIVE.has(job.status) && followed < MAX_FOLLOWED) follow(job, update);
    return tr;
  }

  async function load(reset) {
    if (reset) {
      page.abort();
      page = childController(signal);
      cursor = null;
      body.replaceChildren();
    }
    const query = new URLSearchParams({ limit: "20" });
    if (filter.value) query.set("status", filter.value);
    if (cursor) query.set("cursor", cursor);
    const result = await api(`/v1/jobs?${query}`, { signal: page.signal });
    body.append(...result.data.map(row));
    if (!body.children.length) body.append(h("tr", null, h("td", { colspan: "7", class: "muted" }, "No jobs yet.")));
    cursor = result.next_cursor;
    more.hidden = !cursor;
  }

  const run = (reset) => load(reset).catch((e) => showError(error, e));
  filter.addEventListener("change", () => run(true));
  more.addEventListener("click", () => run(false));
  const refresh = h("button", { type: "button", onclick: () => run(true) }, "Refresh");
  run(true);
  return h(
    "section",
    { class: "card" },
    h("div", { class: "bar" }, h("h1", null, "Jobs"), h("label", null, "Status ", filter), refresh,
      h("a", { href: "#/new", class: "button" }, "New job")),
    error,
    h("table", { id: "jobs", class: "list" },
      h("thead", null, h("tr", null, ["Created", "Job", "Model", "Budget", "Status", "Stage", "Progress"]
        .map((t) => h("th", { scope: "col" }, t)))),
      body),
    more,
  );
}

// The dashboard: a key gate and hash routes (#/jobs, #/jobs/<id>, #/new, #/compare).
import { forgetKey, getKey } from "./api.js";
import { h } from "./dom.js";
import { compareView } from "./views/compare.js";
import { jobView } from "./views/job.js";
import { jobsView } from "./views/jobs.js";
import { loginView } from "./views/login.js";
import { submitView } from "./views/submit.js";

const ROUTES = [
  [/^#\/jobs\/([0-9a-f]{32})$/, (match, signal) => jobView(match[1], signal)],
  [/^#\/new$/, (match, signal) => submitView(signal)],
  [/^#\/compare$/, (match, signal) => compareView(signal)],
  [/^#\/jobs$/, (match, signal) => jobsView(signal)],
];

let view = new AbortController(); // aborts the streams and requests of the view being left

function render(message) {
  view.abort();
  view = new AbortController();
  const main = document.getElementById("main");
  const signedIn = Boolean(getKey());
  document.getElementById("nav").hidden = !signedIn;
  if (!signedIn) {
    main.replaceChildren(loginView(() => render(), message));
    return;
  }
  for (const [pattern, make] of ROUTES) {
    const match = pattern.exec(location.hash || "#/jobs");
    if (match) {
      main.replaceChildren(make(match, view.signal));
      return;
    }
  }
  main.replaceChildren(h("p", { class: "error" }, "No such page."), h("a", { href: "#/jobs" }, "Back to the jobs"));
}

window.addEventListener("hashchange", () => render());
window.addEventListener("infoprune:unauthorized", (event) => {
  forgetKey();
  render(`The API refused this key: ${event.detail}`);
});
document.getElementById("forget").addEventListener("click", () => {
  forgetKey();
  render();
});
render();

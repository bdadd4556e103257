// DOM building without HTML strings: text always goes in as text nodes, so no report or API string can
// become markup. Never set href from data without safeUrl().
const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** An HTML element: h("td", {class: "num"}, "1.0", otherNode). */
export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);

/** An SVG element, same arguments as h. */
export const svg = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);

/** An http(s) URL (absolute or relative to this page) as a string, or null for anything else. */
export function safeUrl(value) {
  try {
    const url = new URL(String(value), location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** A table from header labels and rows of cells (strings, numbers or nodes). */
export function table(headers, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", null, h("tr", null, headers.map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", null, rows.map((cells) => h("tr", null, cells.map((cell) => h("td", null, cell))))),
  );
}

/** An AbortController that also aborts when `parent` does. */
export function childController(parent) {
  const controller = new AbortController();
  parent.addEventListener("abort", () => controller.abort(), { once: true });
  return controller;
}

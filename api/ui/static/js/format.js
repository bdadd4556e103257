// Number, time and text formatting for the views; "–" where a value is missing.
export const isNum = (v) => typeof v === "number" && Number.isFinite(v);
export const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const NONE = "–";

export const fixed = (v, digits = 3) => (isNum(v) ? v.toFixed(digits) : NONE);
export const percent = (v) => (isNum(v) ? `${(100 * v).toFixed(1)}%` : NONE);
export const times = (v) => (isNum(v) ? `${v.toFixed(2)}×` : NONE);
export const ms = (v) => (isNum(v) ? `${v.toFixed(v < 10 ? 2 : 1)} ms` : NONE);
export const seconds = (v) => (isNum(v) ? `${v.toFixed(v < 10 ? 2 : 1)} s` : NONE);

/** 1234567 -> "1.23 M". */
export function compact(v) {
  if (!isNum(v)) return NONE;
  for (const [size, unit] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (Math.abs(v) >= size) return `${(v / size).toFixed(2)} ${unit}`;
  }
  return String(Math.round(v));
}

export function bytes(n) {
  if (!isNum(n)) return NONE;
  for (const [size, unit] of [[2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]]) {
    if (n >= size) return `${(n / size).toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}

export const ratio = (after, before) => (isNum(after) && isNum(before) && before > 0 ? after / before : undefined);

export function when(iso) {
  const date = new Date(iso);
  return iso && !Number.isNaN(date.getTime()) ? date.toLocaleString() : NONE;
}

/** Absolute server paths (model root, work folders) are not the tenant's business: keep the last name. */
export function hidePaths(text) {
  return String(text ?? "").replace(/(^|[\s('"=])\/[^\s'"()]*/g, (match, before) => {
    const last = match.slice(before.length).split("/").filter(Boolean).pop() ?? "";
    return `${before}…/${last}`;
  });
}

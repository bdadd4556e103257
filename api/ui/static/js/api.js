// Calls to the InfoPrune API. The key lives in sessionStorage only (gone with the tab) and travels only in
// the Authorization header, never in a URL. A 401 anywhere fires "infoprune:unauthorized" on window.
const KEY = "infoprune.apiKey";

export const getKey = () => sessionStorage.getItem(KEY);
export const setKey = (key) => sessionStorage.setItem(KEY, key);
export const forgetKey = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export const jobPath = (id) => `/v1/jobs/${encodeURIComponent(id)}`;

const headers = (extra = {}) => ({ Authorization: `Bearer ${getKey() ?? ""}`, ...extra });

async function failure(response) {
  let detail = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (typeof body.detail === "string") detail = body.detail;
  } catch {
    // not problem+json: keep the status line
  }
  if (response.status === 401) window.dispatchEvent(new CustomEvent("infoprune:unauthorized", { detail }));
  return new ApiError(response.status, detail);
}

/** JSON from the API; throws ApiError with the problem's detail. */
export async function api(path, { method = "GET", body, extraHeaders = {}, signal } = {}) {
  const init = { method, headers: headers(extraHeaders), signal, cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });
}

/** One server-sent-events block -> {event, data}. */
function parseBlock(block) {
  const message = { event: "message", data: "" };
  for (const line of block.split("\n")) {
    const colon = line.indexOf(":");
    if (colon === 0) continue; // a comment (keep-alive)
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") message.event = value;
    else if (field === "data") message.data += (message.data ? "\n" : "") + value;
  }
  return message;
}

/** Reads one stream of the job's events; true when the server said the job has ended. */
async function streamOnce(jobId, after, onEvent, signal) {
  const response = await fetch(`${jobPath(jobId)}/events?after=${after}`, {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
    cache: "no-store",
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const message = parseBlock(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (message.event === "end") return true;
      if (message.data) onEvent(JSON.parse(message.data));
    }
  }
}

/**
 * Every event of the job, then live ones until it has finished, over the SSE endpoint read with fetch
 * (EventSource cannot send the Authorization header). Reconnects after a dropped connection from the last
 * event seen; returns when the job has ended or `signal` aborts; throws ApiError on an HTTP error.
 */
export async function followEvents(jobId, onEvent, signal) {
  let last = 0;
  const seen = (event) => {
    last = event.id;
    onEvent(event);
  };
  while (!signal.aborted) {
    try {
      if (await streamOnce(jobId, last, seen, signal)) return;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError) throw error;
    }
    await sleep(2000, signal);
  }
}

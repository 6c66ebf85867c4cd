// Shared helpers of the cloudcounter web clients: DOM, HTTP API, Socket.IO with acks, formatting.
// The Socket.IO client is served by the hub at /vendor/socket.io.min.js (installed with npm).

// Protocol 1.3: the customer page shows statements and questions (prompt:show, 1.1),
// refreshes its token during long waits (auth:refresh, 1.2) and books interviews (1.3);
// team leads watch calls (monitor:*, 1.4).
export const PROTOCOL = "1.5";

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** Create an element: h("div", {class: "x", dataset: {testid: "y"}}, "text", child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.details = details || {};  // e.g. {field} or {problems: [{field, problem}]}
  }
}

let refreshing = null;

/**
 * Renew the staff session's short-lived access cookie with its refresh cookie (both are
 * HttpOnly: the page never sees them). Resolves true when the session is still alive.
 */
export function refreshSession() {
  if (!refreshing) {
    refreshing = fetch("/api/session/refresh", { method: "POST", credentials: "same-origin" })
      .then((r) => r.ok, () => false)
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

const NO_REFRESH = ["/api/login", "/api/logout", "/api/session/"];

/**
 * JSON HTTP call to the hub; throws ApiError with the hub's error code. A request refused
 * because the access token expired is retried once after refreshing the session.
 */
export async function api(path, { method = "GET", body, raw, contentType, retry = true } = {}) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: raw !== undefined ? { "Content-Type": contentType }
        : body === undefined ? {} : { "Content-Type": "application/json" },
      body: raw !== undefined ? raw : body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "network", "The service cannot be reached. Check your connection.");
  }
  if (resp.status === 401 && retry && !NO_REFRESH.some((p) => path.startsWith(p))
      && await refreshSession()) {
    return api(path, { method, body, raw, contentType, retry: false });
  }
  let data = null;
  try { data = await resp.json(); } catch { data = null; }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(resp.status, err.code || `http_${resp.status}`,
      err.message || `request failed (${resp.status})`, err.details);
  }
  return data;
}

/** Open a Socket.IO connection to a namespace of this hub (WebSocket only). */
export function connectSocket(namespace, auth = {}) {
  if (typeof window.io !== "function") {
    throw new Error("The Socket.IO client is missing (run `make setup`).");
  }
  return window.io(namespace, {
    transports: ["websocket"],
    auth: { protocol: PROTOCOL, ...auth },
    reconnectionDelay: 500,
    reconnectionDelayMax: 4000,
  });
}

export class AckError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

/** Emit with an acknowledgement; resolves with the ack, rejects with AckError. */
export function ask(socket, event, data = {}, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    socket.timeout(timeoutMs).emit(event, data, (err, reply) => {
      if (err) return reject(new AckError("timeout", `no answer to ${event}`));
      if (!reply || reply.ok !== true) {
        const e = (reply && reply.error) || {};
        return reject(new AckError(e.code || "error", e.message || `${event} failed`));
      }
      resolve(reply);
    });
  });
}

/** "1:05", "12:00", "1:02:03". */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** "about 2 minutes", "less than a minute". */
export function fmtWait(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "being estimated";
  if (seconds < 60) return "less than a minute";
  const m = Math.round(seconds / 60);
  return m === 1 ? "about 1 minute" : `about ${m} minutes`;
}

export function fmtDateTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit" });
}

export const humanize = (code) => (code || "").replace(/[_.]/g, " ").replace(/^\w/, (c) => c.toUpperCase());

/**
 * Show a message in a notice region. kind: info | warn | error | ok.
 * actions: [{label, onClick, testid}]. Returns the element; clearNotice(region) removes it.
 */
export function showNotice(region, { kind = "info", title = "", text = "", code = "", actions = [] }) {
  region.replaceChildren(h("div", {
    class: "notice", role: kind === "error" || kind === "warn" ? "alert" : "status",
    "data-kind": kind, "data-code": code || undefined, "data-testid": "notice",
  }, h("div", { class: "notice-body" },
    title ? h("strong", {}, title) : null,
    text ? h("span", {}, text) : null,
    actions.length ? h("div", { class: "notice-actions" }, actions.map((a) =>
      h("button", { type: "button", class: "btn", "data-testid": a.testid, onclick: a.onClick },
        a.label))) : null)));
  region.hidden = false;
  return region.firstChild;
}

export function clearNotice(region, code) {
  const n = region.firstChild;
  if (!n || (code && n.dataset.code !== code)) return;
  region.replaceChildren();
  region.hidden = true;
}

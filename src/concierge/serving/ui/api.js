/* Shared helpers for the concierge pages: the JSON API, sign-in, and small DOM utilities. */
"use strict";

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || "error";
    this.hint = err.hint || null;
    this.retryAfter = err.retry_after_s ?? null;
  }
}

const Api = {
  token: null,

  async request(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (exc) {
      throw new ApiError(0, { error: { code: "network", message: "the server cannot be reached",
                                       hint: "check that it is running" } });
    }
    let data = null;
    try { data = await response.json(); } catch (exc) { data = null; }
    if (!response.ok) {
      const error = new ApiError(response.status, data);
      const retry = response.headers.get("Retry-After");
      if (error.retryAfter == null && retry) error.retryAfter = Number(retry);
      throw error;
    }
    return data;
  },
  get(path) { return this.request("GET", path); },
  post(path, body) { return this.request("POST", path, body === undefined ? {} : body); },

  /* Demo mode: a fresh customer for the chat; the console trades its one-time token for an operator's. */
  demoLogin() { return this.post("/v1/demo/login"); },
  consoleLogin(token) { return this.post("/v1/demo/console-login", { token }); },
  me() { return this.get("/v1/me"); },

  wsUrl(sessionId) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/v1/sessions/${encodeURIComponent(sessionId)}/stream`;
  },
  /* The token travels as a subprotocol, not in the URL, so it never lands in access logs. */
  wsProtocols() {
    return ["concierge.bearer", this.token];
  },
};

/* The signed-in token survives a reload of this tab (sessionStorage), never other tabs or restarts. */
const Auth = {
  key(page) { return `concierge.${page}.token`; },
  load(page) { try { return sessionStorage.getItem(this.key(page)); } catch (exc) { return null; } },
  save(page, token) { try { sessionStorage.setItem(this.key(page), token); } catch (exc) { /* private mode */ } },
  clear(page) { try { sessionStorage.removeItem(this.key(page)); } catch (exc) { /* private mode */ } },
};

/* el("div.card.big", {testid: "x", onclick}, child, "text", ...) */
function el(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "testid") node.dataset.testid = value;
    else if (name === "text") node.textContent = value;
    else if (name === "style" && typeof value === "object") {
      for (const [key, v] of Object.entries(value)) node.style.setProperty(key, v);
    }
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function errorNotice(error, { kind = "error" } = {}) {
  let message = error.message || String(error);
  if (error.status === 429) {
    const wait = error.retryAfter != null ? ` Try again in ${Math.max(1, Math.ceil(error.retryAfter))} s.` : "";
    message = `Too many requests: ${message}.${wait}`;
    kind = "warn";
  }
  return el(`div.notice${kind === "warn" ? "" : "." + kind}`, { role: "alert" },
    el("span.icon", { text: kind === "info" ? "i" : "!" }),
    el("div", {}, el("span", { text: message }), error.hint ? el("span.hint", { text: error.hint }) : null));
}

function formatMs(ms) {
  if (ms == null || Number.isNaN(ms)) return "–";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

function timeAgo(iso) {
  const then = new Date(iso).getTime();
  if (!then) return "";
  const s = Math.max(0, (Date.now() - then) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

function shortArgs(args) {
  if (!args || typeof args !== "object") return args == null ? "" : String(args);
  return Object.entries(args).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ");
}

function statusBadge(status) {
  const s = status || "new";
  const tone = { answered: "ok", succeeded: "ok", new: "", awaiting_confirmation: "warn", pending: "warn",
                 running: "info", started: "info", unknown: "warn" }[s];
  const label = s.replace(/_/g, " ");
  return el(`span.badge${tone === undefined ? ".bad" : tone ? "." + tone : ""}`, { text: label, title: s });
}

function renderWhoami(container, me, onSignOut) {
  container.replaceChildren(
    el("span.avatar", { text: (me.user_id || "?").slice(0, 2) }),
    el("span.uid", { text: me.user_id }),
    el("span.role", { text: `${me.role} · ${me.tenant}` }),
    el("button.btn.ghost", { type: "button", text: "Sign out", onclick: onSignOut }),
  );
  container.hidden = false;
}

function randomId(prefix) {
  const alphabet = "abcdefghijkmnpqrstuvwxyz23456789";
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

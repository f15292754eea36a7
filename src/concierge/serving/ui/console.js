/* The operator console: live sessions, per-turn trace waterfalls, the tool ledger and refusals. */
"use strict";

const PAGE = "console";
const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
const state = {
  me: null,
  selected: decodeURIComponent((location.hash.match(/^#s=(.+)$/) || [])[1] || "") || null,
  rows: new Map(),        // session id -> its row button (kept, so clicks never hit a replaced node)
  detailSignature: null,
  timer: null,
  polling: false,
};

// --- sign-in -----------------------------------------------------------------------------------

async function signIn(token) {
  Api.token = token;
  const me = await Api.me();
  state.me = me;
  Auth.save(PAGE, token);
  renderWhoami($("whoami"), me, signOut);
  $("signin").hidden = true;
  $("console").hidden = false;
  await poll();
  state.timer = setInterval(poll, POLL_MS);
}

function signOut() {
  Auth.clear(PAGE);
  clearInterval(state.timer);
  Api.token = null;
  state.me = null;
  state.rows.clear();
  state.detailSignature = null;
  $("session-list").replaceChildren();
  $("whoami").hidden = true;
  $("console").hidden = true;
  $("signin").hidden = false;
  $("signin-notice").replaceChildren();
}

function signinError(error) { $("signin-notice").replaceChildren(errorNotice(error)); }

/* Demo mode: `concierge serve` prints /console?token=…; that one-time token is traded for an
   operator token once (a second try gets 401), so it leaves the address bar before anything else. */
function takeUrlToken() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) {
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? `?${query}` : "") + location.hash);
  }
  return token;
}

async function consoleSignIn(consoleToken) {
  try {
    const login = await Api.consoleLogin(consoleToken);
    await signIn(login.token);
  } catch (error) {
    Api.token = null;
    if (error.status === 404) signinError({ message: "Demo sign-in is off on this server.", hint: "Paste an operator API key below." });
    else signinError(error);
    throw error;
  }
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const consoleToken = $("console-token").value.trim();
  if (!consoleToken) return signinError({ message: "paste the console token first", hint: "or open the console link that concierge serve printed" });
  $("login-button").disabled = true;
  try { await consoleSignIn(consoleToken); } catch (error) { /* shown by consoleSignIn */ } finally {
    $("login-button").disabled = false;
  }
});

$("token-button").addEventListener("click", async () => {
  const token = $("login-token").value.trim();
  if (!token) return signinError({ message: "paste an API key or a token first" });
  try { await signIn(token); } catch (error) { Api.token = null; signinError(error); }
});
$("login-token").addEventListener("keydown", (event) => {
  if (event.key === "Enter") { event.preventDefault(); $("token-button").click(); }
});

// --- polling -----------------------------------------------------------------------------------

async function poll() {
  if (state.polling || !state.me) return;
  state.polling = true;
  try {
    const { sessions } = await Api.get("/v1/sessions?limit=100");
    renderList(sessions);
    if (state.selected) await refreshDetail();
    $("list-notice").replaceChildren();
    $("poll-dot").className = "conn-dot live";
    $("poll-text").textContent = "live";
  } catch (error) {
    $("poll-dot").className = "conn-dot down";
    $("poll-text").textContent = "offline";
    $("list-notice").replaceChildren(errorNotice(error));
    if (error.status === 401) { clearInterval(state.timer); }
  } finally {
    state.polling = false;
  }
}

function select(sessionId) {
  state.selected = sessionId;
  history.replaceState(null, "", `#s=${encodeURIComponent(sessionId)}`);
  for (const [id, row] of state.rows) row.classList.toggle("selected", id === sessionId);
  state.detailSignature = null;
  $("detail-inner").replaceChildren(el("div.detail-empty", { text: "Loading…" }));
  $("detail-inner").hidden = false;
  $("detail-empty").hidden = true;
  refreshDetail().catch((error) => $("detail-inner").replaceChildren(errorNotice(error)));
}

// --- the session list --------------------------------------------------------------------------

function renderList(sessions) {
  const list = $("session-list");
  $("session-count").textContent = String(sessions.length);
  const seen = new Set();
  for (const s of sessions) {
    seen.add(s.session_id);
    let row = state.rows.get(s.session_id);
    if (!row) {
      row = el("button.session-row", { type: "button", testid: "session-row", onclick: () => select(s.session_id) });
      row.dataset.sessionId = s.session_id;
      state.rows.set(s.session_id, row);
    }
    row.classList.toggle("selected", s.session_id === state.selected);
    row.replaceChildren(
      el("div.line1", {}, el("span.user", { text: s.user_id }), el("span.spacer"), statusBadge(s.status)),
      el("div.sid", { text: s.session_id }),
      el("div.snippet", { text: s.last_reply || s.last_message || "No messages yet" }),
      el("div.line3", {}, el("span", { text: `${s.turns} turn${s.turns === 1 ? "" : "s"}` }),
        el("span", { text: `updated ${timeAgo(s.updated_at)}`, title: s.updated_at })),
    );
    list.append(row);  // appending an existing node moves it: the list follows the server's order
  }
  for (const [id, row] of state.rows) {
    if (!seen.has(id)) { row.remove(); state.rows.delete(id); }
  }
  if (!sessions.length) {
    list.replaceChildren(el("div.table-empty", { text: "No sessions yet. Open the chat to start one." }));
  } else {
    const empty = list.querySelector(".table-empty");
    if (empty) empty.remove();
  }
}

// --- the selected session ----------------------------------------------------------------------

async function refreshDetail() {
  const id = state.selected;
  const base = `/v1/sessions/${encodeURIComponent(id)}`;
  let session, turns, ledger, audit;
  try {
    [session, turns, ledger, audit] = await Promise.all([Api.get(base), Api.get(`${base}/turns`),
      Api.get(`${base}/ledger`), Api.get(`${base}/audit`).catch((error) => ({ unavailable: error.message }))]);
  } catch (error) {
    if (id !== state.selected) return;
    $("detail-empty").hidden = true;
    $("detail-inner").hidden = false;
    $("detail-inner").replaceChildren(errorNotice(error));
    state.detailSignature = null;
    return;
  }
  if (id !== state.selected) return;
  const signature = JSON.stringify([session, turns, ledger, audit]);
  if (signature === state.detailSignature) return;
  state.detailSignature = signature;
  const scroller = $("detail");
  const top = scroller.scrollTop;
  renderDetail(session, turns.turns || [], ledger, audit);
  scroller.scrollTop = top;
}

function renderDetail(session, turns, ledger, audit) {
  const inner = $("detail-inner");
  $("detail-empty").hidden = true;
  inner.hidden = false;
  const cost = turns.reduce((sum, t) => sum + ((t.usage && t.usage.cost_usd) || 0), 0);
  const tokens = turns.reduce((sum, t) => sum + ((t.usage && (t.usage.input_tokens + t.usage.output_tokens)) || 0), 0);
  const header = el("div", {},
    el("div.detail-title", {}, el("h2", { text: session.session_id }), statusBadge(session.status)),
    el("div.facts", {},
      fact("user", session.user_id), fact("turns", session.turns), fact("tokens", tokens.toLocaleString()),
      fact("cost", cost ? `$${cost.toFixed(4)}` : "$0"), fact("created", new Date(session.created_at).toLocaleString()),
      fact("updated", timeAgo(session.updated_at))));

  const pending = (session.pending_actions || []).length
    ? el("div.pending-box", {}, el("b", { text: "Waiting for the customer to confirm: " }),
      session.pending_actions.map((a) => a.description).join("; "))
    : null;

  const conversation = el("section", {}, el("h3.section-title", { text: "Conversation and traces" }),
    turns.length ? turns.map(renderTurn) : el("div.table-empty.card", { text: "No turns yet." }));

  inner.replaceChildren(...[header, pending, conversation].filter(Boolean), renderLedger(ledger.entries || []),
    renderRefusals(ledger.refusals || []), renderAudit(audit));
}

// The audit trail: every decision of every turn, from the event bus (guardrail verdicts included).
function renderAudit(audit) {
  const title = el("h3.section-title", { text: "Audit trail" });
  if (!audit || audit.unavailable) {
    return el("section", {}, title, el("div.table-empty.card", { text: audit ? audit.unavailable : "No audit trail." }));
  }
  const turns = (audit.turns || []).map((t) => {
    const lines = [];
    (t.guardrails || []).forEach((g) => lines.push(["guardrail", `${g.guardrail} ${g.action || (g.checks || []).join(", ")}${g.label ? ` · ${g.label} ${g.score}` : ""}`]));
    (t.retrievals || []).forEach((r) => lines.push(["retrieval", `${r.query || ""} → ${(r.citations || []).join(", ") || "no citation"}`]));
    (t.reasoning || []).forEach((r) => lines.push(["reasoning", `${r.strategy} · ${r.kind}: ${r.text}`]));
    (t.tool_calls || []).forEach((c) => lines.push(["tool", `${c.tool} → ${c.status || "?"}${c.ledger_status ? ` (ledger: ${c.ledger_status})` : ""}${c.error ? ` · ${c.error}` : ""}`]));
    (t.denials || []).forEach((d) => lines.push(["denied", `${d.tool}: ${d.reason}`]));
    (t.escalations || []).forEach((e) => lines.push(["escalated", e.reason || ""]));
    return el("li", { testid: "audit-turn" }, el("b", { text: `Turn ${t.turn}` }), " ",
      el("span", { text: t.user_input || "" }),
      el("ul", {}, lines.map(([kind, text]) => el("li", {}, el(`span.audit-kind.k-${kind}`, { text: kind }), " ", text))));
  });
  return el("section", { testid: "audit" }, title, el("details.audit.card", {},
    el("summary", { text: `${turns.length} turn${turns.length === 1 ? "" : "s"} of recorded decisions` }),
    el("ol", {}, turns)));
}

function fact(label, value) { return el("span", {}, `${label} `, el("b", { text: String(value) })); }

function renderTurn(turn) {
  const usage = turn.usage || {};
  const head = el("div.turn-head", {},
    el("span.no", { text: `Turn ${turn.turn_no}` }),
    el("span", { text: new Date(turn.started_at).toLocaleTimeString() }),
    el("span", { text: formatMs(turn.latency_ms) }),
    el("span", { text: `${(usage.input_tokens || 0) + (usage.output_tokens || 0)} tokens` }),
    usage.cost_usd ? el("span", { text: `$${usage.cost_usd.toFixed(4)}` }) : null,
    el("span.spacer"),
    statusBadge(turn.stopped_by || "answered"));
  const exchange = el("div.exchange", {},
    el("div.who", { text: "customer", title: turn.user_id || "" }), el("div.text", { text: turn.message }),
    el("div.who.agent", { text: "agent" }), el("div.text", { text: turn.reply }));
  return el("article.turn", { testid: "turn" }, head, exchange, renderWaterfall(turn), renderReasoning(turn));
}

// What the strategy thought, planned, weighed and chose: one line per ReasoningStep.
function renderReasoning(turn) {
  const steps = (turn.steps || []).filter((s) => s.kind === "reasoning" && s.reasoning);
  if (!steps.length) return null;
  const rows = steps.map(({ reasoning: r }) => el("li", { testid: "reasoning-step" },
    el("span.kind", { text: `${r.strategy} · ${r.kind}` }),
    el("span.confidence", { text: `${Math.round(r.confidence * 100)}%`, title: "confidence" }),
    // a thought the model did not put in words is just its action
    r.action && r.text === `call ${r.action.tool}` ? null : el("span.text", { text: r.text }),
    r.action ? el("code", { text: `${r.action.tool}(${shortArgs(r.action.arguments || {})})` }) : null,
    r.alternatives && r.alternatives.length ? el("span.alternatives", { text: `also weighed: ${r.alternatives.join("; ")}` }) : null));
  return el("details.reasoning", { testid: "reasoning" },
    el("summary", { text: `Reasoning (${steps.length} step${steps.length === 1 ? "" : "s"})` }), el("ol", {}, rows));
}

function renderWaterfall(turn) {
  const steps = (turn.steps || []).filter((s) => s.kind !== "reasoning");
  const end = steps.reduce((m, s) => Math.max(m, (s.start_ms || 0) + (s.latency_ms || 0)), 0);
  const total = Math.max(turn.latency_ms || 0, end, 0.001);
  const pct = (v) => Math.max(0, Math.min(100, (v / total) * 100));
  const ticks = el("div.ticks", {}, [0, 0.25, 0.5, 0.75, 1].map((f) =>
    el("span", { style: { left: `${f * 100}%` }, text: f ? formatMs(f * total) : "0" })));
  const rows = steps.map((step) => {
    const kind = ["model", "tool", "summary"].includes(step.kind) ? step.kind : "model";
    const left = pct(step.start_ms || 0);
    const width = pct(step.latency_ms || 0);
    // the duration sits after the bar, or inside it when the bar reaches the right edge, or before it
    let labelPos = { left: `${left + width}%` };
    let labelClass = "";
    if (left + width >= 80) {
      if (width >= 14) { labelPos = { right: `${100 - left - width}%` }; labelClass = ".inside"; }
      else labelPos = { right: `${100 - left}%` };
    }
    const tip = [`${step.kind} ${step.name}`, formatMs(step.latency_ms),
      step.arguments && Object.keys(step.arguments).length ? shortArgs(step.arguments) : null,
      step.input_tokens || step.output_tokens ? `${step.input_tokens} in / ${step.output_tokens} out tokens` : null,
      step.result ? `→ ${step.result}` : null, step.error ? `error: ${step.error}` : null].filter(Boolean).join("\n");
    // a write paused for the customer's OK is not a failure: amber, not red
    const paused = Boolean(step.error) && step.error.includes("needs_confirmation");
    const flag = paused ? ".pending" : step.error ? ".error" : "";
    return el(`div.wf-row${flag}`, { title: tip },
      el("div.wf-label", {}, el(`span.kind.${kind}`, { text: kind }), el("span.name", { text: step.name })),
      el("div.wf-track", {},
        el(`div.wf-bar.${kind}${flag}`, { testid: "waterfall-bar", style: { left: `${left}%`, width: `${width}%` } }),
        el(`span.wf-ms${labelClass}`, { style: labelPos, text: formatMs(step.latency_ms) })));
  });
  return el("div.waterfall", { testid: "waterfall" },
    el("div.wf-axis", {}, el("span", { text: `${steps.length} step${steps.length === 1 ? "" : "s"}` }), ticks),
    rows.length ? rows : el("div.table-empty", { text: "No steps recorded." }),
    el("div.wf-legend", {}, legend("model", "var(--model)"), legend("tool", "var(--tool)"),
      legend("summary", "var(--summary)"), legend("awaiting OK", "#e0a526"),
      legend("error", "var(--bad)")));
}

function legend(text, colour) { return el("span", { text, style: { "--c": colour } }); }

function renderLedger(entries) {
  const rows = entries.map((e) => el("tr", { testid: "ledger-row" },
    el("td", {}, el("span.mono", { text: e.tool })),
    el("td", {}, el("div.args", { text: shortArgs(e.arguments) }), e.error ? el("div.err", { text: e.error }) : null),
    el("td", {}, statusBadge(e.status)),
    el("td.num", { text: String(e.attempts) }),
    el("td.num", { text: e.duration_ms != null ? formatMs(e.duration_ms) : "–" }),
    el("td.num", { text: e.started_at ? new Date(e.started_at).toLocaleTimeString() : "" })));
  return el("section", {}, el("h3.section-title", { text: `Tool ledger · ${entries.length}` }),
    el("div.table-wrap", {}, entries.length
      ? el("table", { testid: "ledger" },
        el("thead", {}, el("tr", {}, ["Tool", "Arguments", "Status", "Attempts", "Duration", "Started"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows))
      : el("div.table-empty", { text: "No side effects recorded for this session." })));
}

function renderRefusals(refusals) {
  const rows = refusals.map((r) => el("tr", { testid: "refusal-row" },
    el("td.num", { text: new Date(r.at).toLocaleTimeString() }),
    el("td", {}, el("span.mono", { text: r.tool })),
    el("td", {}, el("div.args", { text: shortArgs(r.arguments) })),
    el("td", {}, el("span.badge.bad", { text: r.decision })),
    el("td", { text: r.reason })));
  return el("section", {}, el("h3.section-title", { text: `Refusals · ${refusals.length}` }),
    el("div.table-wrap", {}, refusals.length
      ? el("table", { testid: "refusals" },
        el("thead", {}, el("tr", {}, ["At", "Tool", "Arguments", "Decision", "Reason"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows))
      : el("div.table-empty", { text: "No calls were refused (scopes, preconditions)." })));
}

// --- start -------------------------------------------------------------------------------------

(async () => {
  const urlToken = takeUrlToken();
  if (urlToken) {
    try { await consoleSignIn(urlToken); return; } catch (error) { /* shown; the saved token may still work */ }
  }
  const saved = Auth.load(PAGE);
  if (saved) {
    try { await signIn(saved); $("signin-notice").replaceChildren(); return; } catch (error) { Auth.clear(PAGE); Api.token = null; }
  }
  $("console-token").focus();
})();

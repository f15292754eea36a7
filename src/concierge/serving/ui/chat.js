/* The customer chat: sign in, open a session, stream the agent's replies over the WebSocket. */
"use strict";

window.__events = [];  // every WebSocket event received, in order (handy for tests and debugging)

const PAGE = "chat";
const $ = (id) => document.getElementById(id);
const state = {
  me: null,
  sessionId: null,
  ws: null,
  wsGeneration: 0,
  reconnectDelay: 1000,
  turnRunning: false,
  turn: null,          // the assistant group being streamed
  shownActions: new Set(),
};

// --- sign-in -----------------------------------------------------------------------------------

async function signIn(token) {
  Api.token = token;
  const me = await Api.me();
  state.me = me;
  Auth.save(PAGE, token);
  renderWhoami($("whoami"), me, signOut);
  $("signin").hidden = true;
  $("chat").hidden = false;
  await openSession(new URLSearchParams(location.search).get("session"));
}

function signOut() {
  Auth.clear(PAGE);
  closeSocket();
  Api.token = null;
  state.me = null;
  $("whoami").hidden = true;
  $("chat").hidden = true;
  $("signin").hidden = false;
  $("signin-notice").replaceChildren();
  resetConversation();
}

function signinError(error) {
  $("signin-notice").replaceChildren(errorNotice(error));
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("login-button");
  button.disabled = true;
  try {
    const login = await Api.demoLogin();  // a fresh customer: the server picks the id
    await signIn(login.token);
  } catch (error) {
    if (error.status === 404) {
      signinError({ message: "Demo sign-in is off on this server.", hint: "Paste a token or an API key below." });
      $("login-token").focus();
    } else {
      signinError(error);
    }
  } finally {
    button.disabled = false;
  }
});

$("token-button").addEventListener("click", async () => {
  const token = $("login-token").value.trim();
  if (!token) return signinError({ message: "paste a token or an API key first" });
  try { await signIn(token); } catch (error) { Api.token = null; signinError(error); }
});
$("login-token").addEventListener("keydown", (event) => {
  if (event.key === "Enter") { event.preventDefault(); $("token-button").click(); }
});

// --- the session -------------------------------------------------------------------------------

function resetConversation() {
  state.turn = null;
  state.turnRunning = false;
  state.shownActions = new Set();
  $("messages").replaceChildren($("empty") || emptyState());
  $("empty").hidden = false;
  $("notices").replaceChildren();
}

function emptyState() {
  return el("div.empty-state", { id: "empty" }, el("div.big", { text: "💬" }), el("h2", { text: "How can we help?" }),
    el("p", { text: "Ask about an order, a return or your account. Changes to your orders are always confirmed with you first." }));
}

async function openSession(wanted) {
  resetConversation();
  let sessionId = wanted;
  if (sessionId) {
    try {
      const session = await Api.get(`/v1/sessions/${encodeURIComponent(sessionId)}`);
      renderHistory(session);
    } catch (error) {
      if (error.status !== 404) { notice(error); sessionId = null; }
      else await createSession(sessionId).catch((e) => { notice(e); sessionId = null; });
    }
  }
  if (!sessionId) {
    sessionId = randomId("web-");
    try { await createSession(sessionId); } catch (error) { notice(error); return; }
  }
  state.sessionId = sessionId;
  $("session-id").textContent = sessionId;
  const url = new URL(location.href);
  url.searchParams.set("session", sessionId);
  history.replaceState(null, "", url);
  connect();
}

async function createSession(sessionId) {
  await Api.post("/v1/sessions", { session_id: sessionId });
}

$("new-chat").addEventListener("click", () => {
  closeSocket();
  openSession(null);
});

function renderHistory(session) {
  for (const message of session.messages || []) {
    if (message.role === "user") addUserBubble(message.content || "", false);
    else if (message.role === "assistant") {
      const group = assistantGroup(false);
      for (const call of message.tool_calls || []) {
        const chip = toolChip(call.name || (call.function && call.function.name) || "tool", call.arguments);
        setChip(chip, "done");
        group.chips.append(chip);
      }
      if (message.content) setBubbleText(group, message.content);
      else if (!(message.tool_calls || []).length) group.root.remove();
    }
  }
  // Consecutive tool-only groups read better merged into the next assistant bubble's group.
  mergeToolGroups();
  if ((session.pending_actions || []).length) showConfirmation(session.pending_actions);
  scrollDown();
}

function mergeToolGroups() {
  const groups = Array.from($("messages").querySelectorAll(".msg.assistant"));
  for (let i = 0; i < groups.length - 1; i++) {
    const g = groups[i];
    const next = groups[i + 1];
    if (!g.querySelector(".bubble") && g.nextElementSibling === next) {
      next.querySelector(".chips").prepend(...g.querySelector(".chips").children);
      g.remove();
    }
  }
}

// --- the WebSocket -----------------------------------------------------------------------------

function setConnection(kind, text) {
  $("conn-dot").className = `conn-dot ${kind}`;
  $("conn-text").textContent = text;
}

function connect() {
  closeSocket();
  const generation = ++state.wsGeneration;
  setConnection("", "connecting…");
  const ws = new WebSocket(Api.wsUrl(state.sessionId), Api.wsProtocols());
  state.ws = ws;
  ws.onmessage = (message) => {
    if (generation !== state.wsGeneration) return;
    let event;
    try { event = JSON.parse(message.data); } catch (exc) { return; }
    window.__events.push(event);
    handleEvent(event);
  };
  ws.onclose = (close) => {
    if (generation !== state.wsGeneration) return;
    state.ws = null;
    setComposer(false);
    if (state.turnRunning) {
      endTurn();
      notice({ message: "The connection dropped during the reply.", hint: "Reconnecting; the conversation is saved." });
    }
    if (close.code >= 4000) {  // the server refused: 4000 + HTTP status
      setConnection("down", "signed out");
      if (close.code === 4401) notice({ message: "Your sign-in has expired.", hint: "Sign out and sign in again." });
      return;
    }
    setConnection("down", "reconnecting…");
    const delay = state.reconnectDelay;
    state.reconnectDelay = Math.min(delay * 2, 15000);
    setTimeout(() => { if (generation === state.wsGeneration && state.me) connect(); }, delay);
  };
}

function closeSocket() {
  state.wsGeneration++;
  if (state.ws) { try { state.ws.close(); } catch (exc) { /* already closed */ } }
  state.ws = null;
}

function send(payload) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
    notice({ message: "Not connected to the server.", hint: "Wait a moment while we reconnect." });
    return false;
  }
  state.ws.send(JSON.stringify(payload));
  return true;
}

function handleEvent(event) {
  switch (event.type) {
    case "ready":
      state.reconnectDelay = 1000;
      setConnection("live", "online");
      setComposer(!state.turnRunning);
      if (!state.turnRunning) $("message-input").focus();
      break;
    case "token": {
      const turn = ensureTurn();
      appendToken(turn, event.text || "");
      break;
    }
    case "tool_started": {
      const turn = ensureTurn();
      const chip = toolChip(event.name, event.arguments);
      turn.chipsById.set(event.id, chip);
      turn.chips.append(chip);
      scrollDown();
      break;
    }
    case "tool_finished": {
      const turn = ensureTurn();
      let chip = turn.chipsById.get(event.id);
      if (!chip) { chip = toolChip(event.name); turn.chips.append(chip); }
      setChip(chip, event.status, event.latency_ms, event.error);
      break;
    }
    case "confirmation_requested":
      showConfirmation(event.actions || []);
      break;
    case "turn_finished":
      finishTurn(event);
      break;
    case "error":
      if (state.turnRunning) endTurn();
      notice({ message: event.error ? event.error.message : "something went wrong",
               hint: event.error && event.error.hint, status: event.status,
               retryAfter: event.retry_after_s ?? (event.error && event.error.retry_after_s) });
      break;
    default:
      break;
  }
}

// --- turns -------------------------------------------------------------------------------------

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("message-input");
  const text = input.value.trim();
  if (!text || state.turnRunning) return;
  if (!send({ type: "message", text })) return;
  input.value = "";
  addUserBubble(text);
  startTurn();
});

function setComposer(enabled) {
  $("message-input").disabled = !enabled;
  $("send-button").disabled = !enabled;
}

function startTurn() {
  $("notices").replaceChildren();
  state.turnRunning = true;
  setComposer(false);
  state.turn = assistantGroup(true);
  scrollDown();
}

function ensureTurn() {
  if (!state.turn) state.turn = assistantGroup(true);
  return state.turn;
}

function endTurn() {
  const turn = state.turn;
  if (turn) {
    if (turn.typing) turn.typing.remove();
    if (turn.bubble) turn.bubble.classList.remove("streaming");
    if (!turn.bubble && !turn.chips.children.length) turn.root.remove();
  }
  state.turn = null;
  state.turnRunning = false;
  setComposer(Boolean(state.ws && state.ws.readyState === WebSocket.OPEN));
}

function finishTurn(result) {
  const turn = ensureTurn();
  if (result.reply) setBubbleText(turn, result.reply);  // the final reply wins over the streamed text
  if (turn.bubble) {
    const usage = result.usage || {};
    const tokens = (usage.input_tokens || 0) + (usage.output_tokens || 0);
    turn.meta.textContent = [timeNow(), tokens ? `${tokens} tokens` : null].filter(Boolean).join(" · ");
  }
  endTurn();
  if ((result.pending_actions || []).length) showConfirmation(result.pending_actions);
  if (!$("message-input").disabled) $("message-input").focus();
  scrollDown();
}

// --- rendering ---------------------------------------------------------------------------------

function hideEmpty() { const empty = $("empty"); if (empty) empty.hidden = true; }

function timeNow() { return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }

function addUserBubble(text, live = true) {
  hideEmpty();
  const root = el("div.msg.user", {}, el("div.bubble", { testid: "user-message", text }),
    live ? el("div.meta", { text: timeNow() }) : null);
  $("messages").append(root);
  scrollDown();
}

function addSystemPill(text, declined) {
  $("messages").append(el(`div.msg.system${declined ? ".declined" : ""}`, {}, el("div.bubble", { text })));
}

function assistantGroup(typing) {
  hideEmpty();
  const chips = el("div.chips");
  const typingNode = typing ? el("div.typing", { "aria-label": "the assistant is typing" }, el("span"), el("span"), el("span")) : null;
  const meta = el("div.meta");
  const root = el("div.msg.assistant", {}, chips, typingNode, meta);
  $("messages").append(root);
  return { root, chips, typing: typingNode, bubble: null, meta, chipsById: new Map() };
}

function ensureBubble(group) {
  if (!group.bubble) {
    group.bubble = el("div.bubble", { testid: "assistant-message" });
    if (group.typing) { group.typing.replaceWith(group.bubble); group.typing = null; }
    else group.root.insertBefore(group.bubble, group.meta);
  }
  return group.bubble;
}

function appendToken(group, text) {
  const bubble = ensureBubble(group);
  bubble.classList.add("streaming");
  bubble.textContent += text;
  scrollDown();
}

function setBubbleText(group, text) {
  ensureBubble(group).textContent = text;
}

function toolChip(name, args) {
  return el("span.chip.running", { testid: "tool-chip", title: args ? `${name}(${shortArgs(args)})` : name },
    el("span.state"), el("span.name", { text: name }), el("span.ms"));
}

function setChip(chip, status, latencyMs, error) {
  const mark = { succeeded: "✓", done: "⚙", pending: "!", failed: "✗", unknown: "?" }[status] || "✗";
  chip.className = `chip ${status === "done" ? "done" : status || "failed"}`;
  chip.dataset.status = status || "";
  chip.querySelector(".state").textContent = mark;
  const ms = chip.querySelector(".ms");
  ms.textContent = status === "pending" ? "needs your OK" : latencyMs != null ? formatMs(latencyMs) : "";
  if (error) chip.title = `${chip.title}\n${error}`;
}

function showConfirmation(actions) {
  const fresh = actions.filter((a) => !state.shownActions.has(a.id));
  if (!fresh.length) return;
  hideEmpty();
  const card = el("div.confirm-card", { testid: "confirmation-card" },
    el("div.head", {}, el("span", { text: "⚠" }), el("span", { text: fresh.length > 1 ? "Please confirm these actions" : "Please confirm this action" })));
  for (const action of fresh) {
    state.shownActions.add(action.id);
    const outcome = el("div.outcome");
    const confirm = el("button.btn.ok", { type: "button", testid: "confirm-button", text: "Confirm" });
    const decline = el("button.btn.danger", { type: "button", testid: "decline-button", text: "Decline" });
    const buttons = el("div.buttons", {}, confirm, decline);
    const decide = (kind) => {
      if (state.turnRunning) { notice({ message: "Please wait for the current reply to finish." }); return; }
      if (!send({ type: kind, action_id: action.id })) return;
      buttons.replaceWith(outcome);
      outcome.className = `outcome ${kind === "confirm" ? "confirmed" : "declined"}`;
      outcome.textContent = kind === "confirm" ? "✓ Confirmed" : "Declined: nothing was changed";
      addSystemPill(kind === "confirm" ? `✓ You confirmed ${action.tool}` : `✗ You declined ${action.tool}`,
                    kind !== "confirm");
      startTurn();
    };
    confirm.addEventListener("click", () => decide("confirm"));
    decline.addEventListener("click", () => decide("decline"));
    // describe() reads "tool(args): what it does": show the plain words first, the exact call below
    const described = action.description || "";
    const split = described.startsWith(`${action.tool}(`) ? described.indexOf("): ") : -1;
    const words = split > 0 ? described.slice(split + 3) : described || action.tool;
    const exact = split > 0 ? described.slice(0, split + 1) : `${action.tool}(${shortArgs(action.arguments)})`;
    card.append(el("div.confirm-action", { "data-action-id": action.id },
      el("div.desc", { text: words }),
      el("div.tool", { text: exact }),
      buttons));
  }
  $("messages").append(card);
  scrollDown();
}

function notice(error) {
  $("notices").replaceChildren(errorNotice(error));
}

function scrollDown() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

// --- start -------------------------------------------------------------------------------------

(async () => {
  const saved = Auth.load(PAGE);
  if (saved) {
    try { await signIn(saved); return; } catch (error) { Auth.clear(PAGE); Api.token = null; }
  }
  $("login-button").focus();
})();

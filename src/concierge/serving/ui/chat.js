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
  live: null,          // the running turn's container, redrawn from its record when it ends
  turn: null,          // the assistant group being streamed
  turns: [],           // the records of the finished turns (decisions on old cards fall back on them)
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
  state.live = null;
  state.turns = [];
  state.turnRunning = false;
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
  // The same drawing as each live turn's end (see conversation.js): a reload shows what was seen.
  state.turns = session.transcript || [];
  for (const view of state.turns) {
    hideEmpty();
    $("messages").append(Conversation.turn(view, decide));
  }
  Conversation.applyActions($("messages"), session.actions || [], state.turns);
  scrollDown();
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
      if (!state.turnRunning) { $("message-input").focus(); scrollDown(); }  // the header settled: newest in view
      break;
    case "token": {
      const turn = ensureTurn();
      appendToken(turn, event.text || "");
      break;
    }
    case "tool_started": {
      const turn = ensureTurn();
      const chip = Conversation.toolChip(event.name, event.arguments);
      turn.chipsById.set(event.id, chip);
      turn.chips.append(chip);
      scrollDown();
      break;
    }
    case "tool_finished": {
      const turn = ensureTurn();
      let chip = turn.chipsById.get(event.id);
      if (!chip) { chip = Conversation.toolChip(event.name); turn.chips.append(chip); }
      Conversation.setChip(chip, event.status, event.latency_ms, event.error);
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
  startTurn(Conversation.userBubble(text));
});

function setComposer(enabled) {
  $("message-input").disabled = !enabled;
  $("send-button").disabled = !enabled;
}

// A running turn lives in its own container: the customer's bubble (or the button they pressed),
// the streamed reply and chips, any card; when it ends, its record redraws it (finishTurn).
function startTurn(opening) {
  $("notices").replaceChildren();
  state.turnRunning = true;
  setComposer(false);
  hideEmpty();
  state.live = el("div.chat-turn.live", { testid: "turn" }, opening);
  $("messages").append(state.live);
  state.turn = assistantGroup(true);
  scrollDown();
}

function ensureTurn() {
  if (!state.live) { hideEmpty(); state.live = el("div.chat-turn.live", { testid: "turn" }); $("messages").append(state.live); }
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
  state.live = null;
  state.turnRunning = false;
  setComposer(Boolean(state.ws && state.ws.readyState === WebSocket.OPEN));
}

function finishTurn(result) {
  if (result.turn) {  // the turn's record, drawn exactly as a reload will draw it
    const drawn = Conversation.turn(result.turn, decide);
    if (state.live) state.live.replaceWith(drawn); else { hideEmpty(); $("messages").append(drawn); }
    state.live = null;
    state.turns.push(result.turn);
    Conversation.applyActions($("messages"), result.actions || [], state.turns);
  } else {
    const turn = ensureTurn();
    if (result.reply) setBubbleText(turn, result.reply);
  }
  endTurn();
  if (!$("message-input").disabled) $("message-input").focus();
  scrollDown();
}

// --- rendering ---------------------------------------------------------------------------------

function hideEmpty() { const empty = $("empty"); if (empty) empty.hidden = true; }

function assistantGroup(typing) {
  const group = Conversation.assistantGroup(typing);
  state.live.append(group.root);
  return group;
}

function ensureBubble(group) { return Conversation.ensureBubble(group); }

function appendToken(group, text) {
  const bubble = ensureBubble(group);
  bubble.classList.add("streaming");
  bubble.textContent += text;
  scrollDown();
}

function setBubbleText(group, text) {
  ensureBubble(group).textContent = text;
}

function showConfirmation(actions) {
  // The live card: its turn's record redraws it when the turn ends.
  if (!actions.length) return;
  ensureTurn();
  if (state.live.querySelector(".confirm-card")) return;
  state.live.append(Conversation.card(actions, decide));
  scrollDown();
}

// Confirm or Decline: a structured decision for exactly that action, never a typed "yes" or "no".
function decide(action, kind) {
  if (state.turnRunning) { notice({ message: "Please wait for the current reply to finish." }); return; }
  if (!send({ type: kind, action_id: action.id })) return;
  for (const row of $("messages").querySelectorAll(`.confirm-action[data-action-id="${CSS.escape(action.id)}"]`)) {
    Conversation.setCardAction(row, kind === "confirm" ? "confirmed" : "declined");
  }
  startTurn(Conversation.decisionPill({ answer: kind, tool: action.tool, action_id: action.id }));
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

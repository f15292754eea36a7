/* Drawing a conversation. A finished turn is drawn by one function, `Conversation.turn(view)`, from
   the turn's record: the same record the live stream ends each turn with (`turn_finished.turn`) and
   the session's history returns after a reload (`transcript`). So what the customer saw live is what
   they see again: the tool chips and their status, the reply with its "Not done: …" lines, the
   Confirm / Decline they pressed, the confirmation cards and the times. */
"use strict";

const Conversation = {
  clock(iso) {
    const when = iso ? new Date(iso) : new Date();
    return Number.isNaN(when.getTime()) ? "" : when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  },

  // --- pieces the live stream also uses while a turn runs ------------------------------------

  userBubble(text, iso) {
    return el("div.msg.user", {}, el("div.bubble", { testid: "user-message", text }),
      el("div.meta", { text: Conversation.clock(iso) }));
  },

  decisionPill(decision) {
    const confirmed = decision.answer === "confirm";
    const tool = decision.tool || "the action";
    return el(`div.msg.system${confirmed ? "" : ".declined"}`, { testid: "decision-marker", "data-answer": decision.answer },
      el("div.bubble", { text: confirmed ? `✓ You confirmed ${tool}` : `✗ You declined ${tool}` }));
  },

  assistantGroup(typing) {
    const chips = el("div.chips");
    const typingNode = typing ? el("div.typing", { "aria-label": "the assistant is typing" }, el("span"), el("span"), el("span")) : null;
    const meta = el("div.meta");
    const root = el("div.msg.assistant", {}, chips, typingNode, meta);
    return { root, chips, typing: typingNode, bubble: null, meta, chipsById: new Map() };
  },

  ensureBubble(group) {
    if (!group.bubble) {
      group.bubble = el("div.bubble", { testid: "assistant-message" });
      if (group.typing) { group.typing.replaceWith(group.bubble); group.typing = null; }
      else group.root.insertBefore(group.bubble, group.meta);
    }
    return group.bubble;
  },

  toolChip(name, args) {
    return el("span.chip.running", { testid: "tool-chip", title: args ? `${name}(${shortArgs(args)})` : name },
      el("span.state"), el("span.name", { text: name }), el("span.ms"));
  },

  setChip(chip, status, latencyMs, error) {
    const mark = { succeeded: "✓", pending: "!", unknown: "?" }[status] || "✗";
    const kind = ["succeeded", "pending", "unknown"].includes(status) ? status : "failed";
    chip.className = `chip ${kind}`;
    chip.dataset.status = status || "";
    chip.querySelector(".state").textContent = mark;
    chip.querySelector(".ms").textContent = status === "pending" ? "needs your OK"
      : latencyMs != null ? formatMs(latencyMs) : "";
    if (error) chip.title = `${chip.title.split("\n")[0]}\n${error}`;
  },

  // A confirmation card: one row per action, each with its own Confirm and Decline.
  card(actions, onDecide) {
    const card = el("div.confirm-card", { testid: "confirmation-card" },
      el("div.head", {}, el("span", { text: "⚠" }),
        el("span", { text: actions.length > 1 ? "Please confirm these actions" : "Please confirm this action" })));
    for (const action of actions) {
      const confirm = el("button.btn.ok", { type: "button", testid: "confirm-button", text: "Confirm" });
      const decline = el("button.btn.danger", { type: "button", testid: "decline-button", text: "Decline" });
      confirm.addEventListener("click", () => onDecide(action, "confirm"));
      decline.addEventListener("click", () => onDecide(action, "decline"));
      // describe() reads "tool(args): what it does": the plain words first, the exact call below
      const described = action.description || "";
      const split = described.startsWith(`${action.tool}(`) ? described.indexOf("): ") : -1;
      const words = split > 0 ? described.slice(split + 3) : described || action.tool;
      const exact = split > 0 ? described.slice(0, split + 1) : `${action.tool}(${shortArgs(action.arguments)})`;
      card.append(el("div.confirm-action", { "data-action-id": action.id, "data-status": "pending" },
        el("div.desc", { text: words }), el("div.tool", { text: exact }),
        el("div.buttons", {}, confirm, decline), el("div.outcome", { hidden: true })));
    }
    return card;
  },

  // Where each card's action stands: buttons while it waits, the customer's answer once given
  // (the buttons go: an answered action offers nothing to press).
  OUTCOMES: {
    confirmed: ["confirmed", "✓ Confirmed"],
    executed: ["confirmed", "✓ Confirmed"],
    refused: ["refused", "✓ Confirmed, but it could not be done"],
    declined: ["declined", "Declined: nothing was changed"],
    expired: ["declined", "Not answered: nothing was changed"],
  },

  setCardAction(row, status, reason) {
    const shown = Conversation.OUTCOMES[status];
    if (!shown) return;  // still pending: its buttons stay
    row.dataset.status = status;
    const buttons = row.querySelector(".buttons");
    if (buttons) buttons.remove();  // an answered action offers nothing to press
    const outcome = row.querySelector(".outcome");
    outcome.hidden = false;
    outcome.className = `outcome ${shown[0]}`;
    outcome.textContent = status === "refused" && reason ? `${shown[1]}: ${reason}` : shown[1];
  },

  // Every card in `root` to the statuses in `actions` (the session's actions), falling back on the
  // decisions in `turns` for an action too old to be listed.
  applyActions(root, actions, turns) {
    const byId = new Map();
    for (const turn of turns || []) {
      if (turn.decision) byId.set(turn.decision.action_id, { status: turn.decision.answer === "confirm" ? "confirmed" : "declined" });
    }
    for (const action of actions || []) byId.set(action.id, action);
    for (const row of root.querySelectorAll(".confirm-action[data-action-id]")) {
      const known = byId.get(row.dataset.actionId);
      Conversation.setCardAction(row, known ? known.status : "expired", known && known.reason);
    }
  },

  // --- a finished turn, from its record ------------------------------------------------------

  turn(view, onDecide) {
    const root = el("div.chat-turn", { testid: "turn", "data-turn": view.turn_no });
    root.append(view.decision ? Conversation.decisionPill(view.decision)
      : Conversation.userBubble(view.message || "", view.started_at));
    const group = Conversation.assistantGroup(false);
    for (const step of view.steps || []) {
      const chip = Conversation.toolChip(step.name, step.arguments);
      Conversation.setChip(chip, step.status, step.latency_ms, step.error);
      group.chips.append(chip);
    }
    if (view.reply) Conversation.ensureBubble(group).textContent = view.reply;
    const usage = view.usage || {};
    const tokens = (usage.input_tokens || 0) + (usage.output_tokens || 0);
    group.meta.textContent = [Conversation.clock(view.finished_at), tokens ? `${tokens} tokens` : null]
      .filter(Boolean).join(" · ");
    if (group.bubble || group.chips.children.length) root.append(group.root);
    if ((view.pending_actions || []).length) root.append(Conversation.card(view.pending_actions, onDecide));
    return root;
  },
};

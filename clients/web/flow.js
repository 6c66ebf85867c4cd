// Agent console: the service script as a checklist, the live fraud risk and the team lead's
// approval. The hub sends the call's flow with the accept acknowledgement and every change
// as flow:update (a full snapshot); the console only renders it and sends the agent's
// actions (step:prompt, step:complete, risk:concern, approval:request).
import { $, ask, clearNotice, h, humanize, showNotice } from "./common.js";

export const KIND_LABEL = {
  check_identity: "Identity check", check_liveness: "Liveness check",
  confirm_statement: "Statement", question: "Question", lookup: "Look-up",
  action: "Action", agent_attest: "Attest",
};
const STATE_MARK = { done: "✓", declined: "✕", skipped: "–", prompted: "…", open: "" };
export const STEP_ERRORS = {
  step_not_open: "This step is already done.",
  unknown_step: "This step is not in the call's script.",
  business_declined: "The customer declined: the business has ended.",
  customer_not_in_call: "This step needs the customer in the call.",
  note_required: "Write a short note first (how it was checked, or why it was confirmed aloud).",
  facts_missing: "Some facts are not on file: read it to the customer and record the answer aloud instead.",
  prompt_open: "Another statement is still on the customer's screen.",
  not_a_prompt: "Only statements and questions are shown to the customer.",
  approval_not_needed: "Approval is needed only at risk level high.",
  approval_pending: "A request is already waiting for a team lead.",
  already_approved: "The current risk is already approved.",
  risk_blocked: "Risk level block: this call cannot be resolved.",
  unknown_call: "This call is no longer yours.",
};
export const WRAPUP_ERRORS = {
  steps_incomplete: "Required steps are still open. Complete them, or give a reason to skip them.",
  approval_required: "Risk level high: resolving needs a team lead's approval (ask in the risk panel), or choose another outcome.",
  risk_blocked: "Risk level block: the call cannot be resolved. Choose another outcome, such as Fraud suspected.",
  confirmation_declined: "The customer did not confirm: the call cannot be resolved.",
};

export function createFlowUi() {
  const ui = {
    panel: $("#script-panel"), version: $("#script-version"), empty: $("#script-empty"),
    list: $("#checklist"), banner: $("#flow-banner"), notice: $("#step-notice"),
    level: $("#risk-level"), summary: $("#risk-summary"), reasons: $("#risk-reasons"),
    approval: $("#approval-box"), concernForm: $("#concern-form"), concernNote: $("#concern-note"),
  };
  const st = { socket: null, callId: null, flow: null, selected: null, busy: false, notes: new Map() };

  function start(socket, callId, flow) {
    st.socket = socket;
    st.callId = callId;
    st.flow = flow || null;
    st.selected = null;
    st.notes.clear();
    clearNotice(ui.notice);
    render();
  }

  function update(flow) {
    if (!flow || flow.call_id !== st.callId) return;
    st.flow = flow;
    render();
  }

  function clear() {
    st.callId = null;
    st.flow = null;
    render();
  }

  function live() { return !!(st.flow && st.flow.live); }

  async function act(event, payload, button) {
    if (st.busy) return;
    st.busy = true;
    if (button) button.disabled = true;
    clearNotice(ui.notice);
    try {
      await ask(st.socket, event, { call_id: st.callId, ...payload });
    } catch (e) {
      showNotice(ui.notice, { kind: "warn", code: e.code, title: "Not recorded",
        text: STEP_ERRORS[e.code] || e.message });
    } finally {
      st.busy = false;
      if (button) button.disabled = false;
    }
  }

  function noteFor(step) {
    return (st.notes.get(step.id) || "").trim();
  }

  function controls(step) {
    const f = st.flow;
    const out = [];
    const id = step.id;
    const noteInput = () => h("input", { type: "text", maxlength: "1000", "data-testid": `step-note-${id}`,
      "aria-label": "Note", placeholder: step.kind.startsWith("check_") ? "How was the customer checked?"
        : "Reason (for an answer given aloud)", value: st.notes.get(id) || "",
      oninput: (ev) => st.notes.set(id, ev.target.value) });
    const btn = (label, testid, onclick, primary = false) => h("button", { type: "button",
      class: `btn btn-sm${primary ? " btn-primary" : ""}`, "data-testid": testid, onclick }, label);
    const complete = (answer, needNote) => (ev) => {
      const note = noteFor(step);
      if (needNote && !note) {
        showNotice(ui.notice, { kind: "warn", code: "note_required", title: "Add a note", text: STEP_ERRORS.note_required });
        return;
      }
      act("step:complete", { step_id: id, ...(answer ? { answer } : {}), ...(note ? { note } : {}) }, ev.currentTarget);
    };
    if (step.kind === "check_identity" || step.kind === "check_liveness") {
      out.push(h("p", { class: "small muted", style: "flex-basis:100%;margin:0" },
        "Completes by itself when the check passes. Checked another way? Note how."));
      out.push(noteInput(), btn("Verified another way", `step-manual-${id}`, complete(null, true)));
    } else if (step.kind === "confirm_statement") {
      const canShow = f.customer_prompts && !(step.missing_facts || []).length && live();
      if (step.state === "prompted") out.push(h("p", { class: "small", style: "flex-basis:100%;margin:0", "data-testid": "statement-waiting" },
        "On the customer's screen: waiting for them to read it aloud and answer."));
      else out.push(btn("Show to customer", `step-show-${id}`, (ev) => act("step:prompt", { step_id: id }, ev.currentTarget), true));
      if (!canShow && step.state !== "prompted") out[out.length - 1].disabled = true;
      if (!f.customer_prompts) out.push(h("p", { class: "small muted", style: "flex-basis:100%;margin:0" },
        "The customer's app does not show statements: read it aloud and record the answer."));
      out.push(noteInput(), btn("Confirmed aloud", `step-spoken-${id}`, complete("confirm", true)),
        btn("Declined aloud", `step-declined-${id}`, complete("decline", true)));
    } else if (step.kind === "question") {
      for (const o of step.options || []) out.push(btn(o.label, `step-answer-${id}-${o.value}`, complete(o.value, false)));
      if (f.customer_prompts && live() && step.state !== "prompted") {
        out.push(btn("Show on customer's screen", `step-show-${id}`, (ev) => act("step:prompt", { step_id: id }, ev.currentTarget)));
      }
    } else {
      out.push(btn(step.kind === "agent_attest" ? "I confirm" : "Done", `step-done-${id}`, complete(null, false), true));
    }
    return h("div", { class: "step-controls" }, out);
  }

  function stepItem(step, index) {
    const f = st.flow;
    const open = step.state === "open" || step.state === "prompted";
    const current = f.current_step === step.id;
    const expanded = open && f.state !== "declined" && f.state !== "closed"
      && (st.selected ? st.selected === step.id : current);
    const meta = [];
    if (!open && step.state !== "skipped") {
      const who = step.method === "auto" ? "automatically" : step.method === "customer_app" ? "by the customer on screen"
        : step.method === "agent_spoken" ? "aloud, recorded by you" : "by you";
      meta.push(`${humanize(step.state)} ${who}${step.answer ? ` · ${humanize(step.answer)}` : ""}`);
      if (step.note) meta.push(`“${step.note}”`);
    }
    if ((step.missing_facts || []).length) meta.push(`Not on file: ${step.missing_facts.join(", ")}`);
    return h("li", { "data-testid": `step-${step.id}`, "data-state": step.state, "data-kind": step.kind,
      "data-current": String(current), "aria-current": current ? "step" : null },
    h("button", { type: "button", class: "step-head", "aria-expanded": String(expanded),
      onclick: () => { st.selected = st.selected === step.id ? null : step.id; render(); } },
    h("span", { class: "step-mark", "aria-hidden": "true" }, STATE_MARK[step.state] || String(index + 1)),
    h("span", { class: "step-title" }, step.title || KIND_LABEL[step.kind] || step.id),
    step.required ? null : h("span", { class: "step-kind" }, "optional"),
    h("span", { class: "step-kind" }, KIND_LABEL[step.kind] || step.kind),
    h("span", { class: "visually-hidden" }, `: ${humanize(step.state)}`)),
    h("p", { class: `step-text${step.kind === "confirm_statement" ? " step-statement" : ""}` }, step.text),
    meta.length ? h("p", { class: "step-meta" }, meta.join(" · ")) : null,
    expanded ? controls(step) : null);
  }

  function render() {
    const f = st.flow;
    const steps = f ? f.steps || [] : [];
    ui.empty.hidden = !!(f && steps.length);
    ui.empty.textContent = f && !steps.length ? "This service has no script." : "The steps of the service appear here during a call.";
    ui.version.hidden = !(f && f.script);
    if (f && f.script) ui.version.textContent = `v${f.script.version}`;
    ui.list.replaceChildren(...steps.map(stepItem));
    document.body.dataset.flowState = f ? f.state : "";
    if (f && f.state === "declined") {
      ui.banner.hidden = false; ui.banner.dataset.kind = "declined";
      ui.banner.textContent = "The customer did not confirm. The business ends here: explain the next steps and end the call.";
    } else if (f && f.state === "ready" && steps.length) {
      ui.banner.hidden = false; ui.banner.dataset.kind = "ready";
      ui.banner.textContent = "All required steps are done.";
    } else ui.banner.hidden = true;
    renderRisk();
  }

  function renderRisk() {
    const f = st.flow;
    const r = f && f.risk;
    ui.level.dataset.level = r ? r.level : "";
    ui.level.className = `badge risk-level ${r ? r.level : ""}`;
    ui.level.textContent = r ? humanize(r.level) : "–";
    ui.summary.textContent = r ? `Score ${r.score} · rules v${r.rules_version}` : "Assessed live during a call.";
    ui.reasons.replaceChildren(...(r ? r.reasons : []).map((x) => h("li", { "data-rule": x.rule },
      x.text, " ", h("span", { class: "w" }, `+${x.weight}`))));
    ui.concernForm.hidden = !f || f.state === "closed";
    ui.concernForm.querySelector("button").disabled = !f || !!f.concern;
    if (f && f.concern) ui.concernNote.placeholder = "Concern raised";
    renderApproval();
  }

  function renderApproval() {
    const f = st.flow;
    const a = f && f.approval;
    const level = f && f.risk ? f.risk.level : "low";
    const box = ui.approval;
    if (!f || (!a && level !== "high")) { box.hidden = true; return; }
    box.hidden = false;
    box.dataset.state = a ? a.state : "none";
    const items = [];
    if (level === "block") {
      items.push(h("strong", {}, "Risk level block"), h("p", { class: "small" }, "This call cannot be resolved."));
    } else if (a && a.state === "pending") {
      items.push(h("strong", { "data-testid": "approval-state" }, "Waiting for a team lead…"),
        h("p", { class: "small" }, "Your request is on the team leads' approvals page."));
    } else if (a && a.state === "approved" && f.approval_valid) {
      items.push(h("strong", { "data-testid": "approval-state" }, `Approved by ${a.decided_by}`),
        a.decision_note ? h("p", { class: "small" }, `“${a.decision_note}”`) : null,
        h("p", { class: "small" }, "You may resolve the call."));
    } else {
      if (a && a.state === "refused") {
        items.push(h("strong", { "data-testid": "approval-state" }, `Refused by ${a.decided_by}`),
          a.decision_note ? h("p", { class: "small" }, `“${a.decision_note}”`) : null);
      } else if (a && a.state === "approved") {
        items.push(h("strong", {}, "The risk changed since the approval"));
      } else {
        items.push(h("strong", {}, "Resolving needs a team lead's approval"));
      }
      const note = h("input", { type: "text", maxlength: "1000", "data-testid": "approval-note",
        placeholder: "What should the team lead know?", "aria-label": "Note for the team lead" });
      items.push(note, h("button", { type: "button", class: "btn btn-sm btn-primary", "data-testid": "approval-request",
        onclick: (ev) => act("approval:request", { note: note.value.trim() }, ev.currentTarget) }, "Ask a team lead"));
    }
    box.replaceChildren(...items.filter(Boolean));
  }

  ui.concernForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const note = ui.concernNote.value.trim();
    if (!note || !st.callId) { ui.concernNote.focus(); return; }
    act("risk:concern", { note }, ui.concernForm.querySelector("button")).then(() => { ui.concernNote.value = ""; });
  });

  /** What the wrap-up form needs to know. */
  function wrapupInfo(callId) {
    const f = st.flow && st.flow.call_id === callId ? st.flow : null;
    if (!f) return null;
    const titles = new Map((f.steps || []).map((s) => [s.id, s.title || KIND_LABEL[s.kind] || s.id]));
    const level = f.risk ? f.risk.level : "low";
    const resolvable = f.state !== "declined" && !f.open_required.length && level !== "block"
      && (level !== "high" || f.approval_valid);
    return { openRequired: f.open_required.map((id) => titles.get(id) || id), level, resolvable,
      declined: f.state === "declined", approvalValid: f.approval_valid, risk: f.risk };
  }

  return { start, update, clear, wrapupInfo, get callId() { return st.callId; } };
}

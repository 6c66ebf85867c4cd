// Agent console: the credit panel of a car-loan interview (docs/protocol.md, "Car-loan
// interview"). The application from the credit system with the figures to confirm, the
// interview questions with answer fields (contradictions highlighted), and the outcome form
// (pass / refer / decline) the wrap-up needs. Credit-system errors are shown here and never
// stop the call.
import { $, ask, clearNotice, h, showNotice } from "./common.js";
import { WRAPUP_ERRORS } from "./flow.js";

Object.assign(WRAPUP_ERRORS, {
  credit_outcome_required: "Record the interview's outcome (pass, refer or decline) in the credit panel first.",
});

const ERRORS = {
  credit_unavailable: "The credit system is unavailable. The interview can go on; try again in a moment.",
  credit_timeout: "The credit system did not answer in time. Try again in a moment.",
  credit_bad_response: "The credit system sent an answer that could not be read.",
  credit_not_configured: "No credit system is configured for this hub.",
  reasons_required: "Give the reasons for refer or decline.",
  credit_application_unknown: "No application is known for this interview: look it up first.",
  interview_closed: "The outcome is already recorded.",
  unknown_call: "This interview is no longer yours.",
};
const DELIVERY = {
  pending: ["Pending delivery", "warn"],
  delivered: ["Delivered to the credit system", "ok"],
  failed: ["Refused by the credit system", "error"],
};
const OUTCOMES = [["pass", "Pass"], ["refer", "Refer to underwriting"], ["decline", "Decline"]];

function money(v, currency) {
  return v === null || v === undefined ? "–"
    : `${Number(v).toLocaleString(undefined, { maximumFractionDigits: 2 })} ${currency || ""}`.trim();
}

export function createCreditUi() {
  const panel = $("#credit-panel");
  const text = $("#credit-text");
  const notice = h("div", { class: "credit-notice", "data-testid": "credit-notice", "aria-live": "polite", hidden: true });
  const body = h("div", { class: "credit-body", "data-testid": "credit-body" });
  panel.append(notice, body);
  let cur = null; // {socket, callId, view}

  function clear() {
    cur = null;
    body.replaceChildren();
    clearNotice(notice);
  }

  async function start(socket, callId, service) {
    clear();
    if (!service || service.code !== "car_loan") return;
    cur = { socket, callId, view: null };
    text.textContent = "Reading the application from the credit system…";
    await lookup();
  }

  async function lookup() {
    const c = cur;
    if (!c) return;
    try {
      const v = await ask(c.socket, "credit:lookup", { call_id: c.callId });
      if (cur !== c) return;
      c.view = v;
      if (v.error) {
        showNotice(notice, { kind: "warn", code: v.error.code, title: "Application not available",
          text: ERRORS[v.error.code] || v.error.message,
          actions: [{ label: "Try again", testid: "credit-retry", onClick: lookup }] });
      } else {
        clearNotice(notice);
      }
      render();
    } catch (e) {
      if (cur !== c) return;
      showNotice(notice, { kind: "warn", code: e.code, text: ERRORS[e.code] || e.message });
    }
  }

  function render() {
    const v = cur && cur.view;
    if (!v) return;
    const app = v.application;
    text.textContent = app ? `Application ${app.id} · ${app.status.replaceAll("_", " ")}`
      : "The application could not be read; the interview and the outcome go on.";
    // answers typed but not saved yet, and the focus, survive the re-render
    const drafts = new Map([...body.querySelectorAll("input[data-question]")]
      .map((el) => [el.dataset.question, el.value]));
    const focused = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.question : undefined;
    body.replaceChildren(
      app ? applicationView(app, v.confirm || []) : null,
      questionsView(v),
      outcomeView(v));
    for (const el of body.querySelectorAll("input[data-question]")) {
      const draft = drafts.get(el.dataset.question);
      if (draft !== undefined && draft !== el.value) el.value = draft;
      if (focused && el.dataset.question === focused) el.focus();
    }
  }

  function applicationView(app, confirm) {
    const r = app.credit_report || {};
    const c = app.currency;
    return h("div", { class: "credit-app", "data-testid": "credit-application" },
      h("h3", {}, "Confirm with the customer"),
      h("ul", { class: "credit-confirm", "data-testid": "credit-confirm" }, confirm.map((f) =>
        h("li", { dataset: { field: f.field } },
          h("label", {}, h("input", { type: "checkbox", "data-testid": `confirm-${f.field}` }),
            h("span", { class: "credit-label" }, f.label), h("strong", {}, f.value))))),
      h("h3", {}, "Credit report"),
      h("dl", { class: "facts", "data-testid": "credit-report" },
        h("dt", {}, "Score band"), h("dd", {}, r.score_band || "–"),
        h("dt", {}, "Existing debts"), h("dd", {}, money(r.existing_debts, c)),
        h("dt", {}, "Monthly debt payments"), h("dd", {}, money(r.monthly_debt_payments, c)),
        h("dt", {}, "Overdue (24 months)"), h("dd", {}, String(r.overdue_last_24m ?? "–")),
        h("dt", {}, "Enquiries (6 months)"), h("dd", {}, String(r.enquiries_last_6m ?? "–"))));
  }

  function questionsView(v) {
    const closed = !!v.outcome;
    return h("div", { class: "credit-questions" },
      h("h3", {}, "Interview questions",
        v.contradictions ? h("span", { class: "badge high", "data-testid": "credit-contradictions" },
          `${v.contradictions} contradiction${v.contradictions > 1 ? "s" : ""}`) : null),
      h("ol", {}, v.questions.map((q) => {
        const input = h("input", { type: "text", maxlength: 2000, value: q.answer || "",
          "data-testid": `answer-${q.id}`, "aria-label": q.text, disabled: closed,
          dataset: { question: q.id } });
        const save = async () => {
          const answer = input.value.trim();
          if (!answer || answer === (q.answer || "") || !cur) return;
          try {
            const r = await ask(cur.socket, "credit:answer", { call_id: cur.callId, question: q.id, answer });
            q.answer = answer;
            q.contradicts = r.contradicts;
            v.contradictions = r.contradictions;
            render();
          } catch (e) {
            showNotice(notice, { kind: "error", code: e.code, text: ERRORS[e.code] || e.message });
          }
        };
        input.addEventListener("change", save);
        return h("li", { class: q.contradicts ? "contradiction" : "",
          dataset: { question: q.id, saved: q.answer ? "true" : "false" } },
          h("span", { class: "credit-q" }, q.text), input,
          q.contradicts ? h("span", { class: "credit-contradicts", "data-testid": `contradicts-${q.id}` },
            `Contradicts the application: ${q.contradicts}`) : null);
      })));
  }

  function outcomeView(v) {
    if (v.outcome) {
      const [label, kind] = DELIVERY[v.delivery] || ["", "info"];
      return h("div", { class: "credit-outcome", "data-testid": "credit-outcome-recorded" },
        h("h3", {}, "Outcome"),
        h("p", {}, h("strong", {}, OUTCOMES.find(([k]) => k === v.outcome)[1]),
          v.reasons && v.reasons.length ? ` · ${v.reasons.join("; ")}` : ""),
        h("p", { class: `credit-delivery ${kind}`, "data-testid": "credit-delivery", dataset: { state: v.delivery || "" } }, label));
    }
    const select = h("select", { "data-testid": "credit-outcome" },
      h("option", { value: "" }, "Choose…"), OUTCOMES.map(([k, l]) => h("option", { value: k }, l)));
    const reasons = h("textarea", { rows: 2, maxlength: 500, "data-testid": "credit-reasons",
      placeholder: "Reasons (required for refer and decline)" });
    const button = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "credit-outcome-submit" }, "Record outcome");
    const form = h("form", { class: "credit-outcome" }, h("h3", {}, "Outcome"),
      h("label", {}, "Result ", select), reasons, button);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!cur || !select.value) return;
      button.disabled = true;
      const list = reasons.value.split("\n").map((s) => s.trim()).filter(Boolean);
      try {
        const r = await ask(cur.socket, "credit:outcome", { call_id: cur.callId, outcome: select.value, reasons: list });
        v.outcome = r.outcome;
        v.reasons = list;
        v.delivery = v.delivery === "delivered" ? "delivered" : r.delivery;
        clearNotice(notice);
        render();
      } catch (e) {
        showNotice(notice, { kind: "error", code: e.code, text: ERRORS[e.code] || e.message });
        button.disabled = false;
      }
    });
    return form;
  }

  function onDelivery(m) {
    if (!cur || !cur.view || m.call_id !== cur.callId) return;
    cur.view.delivery = m.state;
    render();
  }

  return { start, clear, onDelivery };
}

// Review findings (docs/supervision.md). In the agent console: the agent's own findings,
// each with its severity, category, call and due date, its rectification thread, and a form
// to respond while it is open or was rejected. On the team lead's page: the team's findings
// with their agent and escalation, read only. Refreshed every minute.
import { $, api, fmtDateTime, fmtDuration, h, humanize, showNotice } from "./common.js";

const REFRESH_MS = 60_000;

const opts = { team: false };

async function load(list, notice) {
  let findings;
  try { ({ findings } = await api("/api/review/findings")); } catch (e) {
    showNotice(notice, { kind: "error", title: "Findings could not be loaded", text: e.message, code: e.code });
    return;
  }
  const current = findings.filter((f) => f.state !== "accepted");
  list.replaceChildren(...current.map((f) => item(f, list, notice)));
  $("#findings-empty").hidden = current.length > 0;
  $("#findings-count").textContent = current.length ? String(current.length) : "";
}

function item(f, list, notice) {
  const box = h("details", { class: "finding", dataset: { state: f.state }, "data-testid": "my-finding" },
    h("summary", {}, h("span", { class: `badge sev-${f.severity}` }, humanize(f.severity)),
      ` ${humanize(f.category)}: ${f.description}`,
      h("div", { class: "muted small" }, `${opts.team ? `${f.agent || "?"} · ` : ""}${f.call_id}`
        + `${f.recording_time_s != null ? ` at ${fmtDuration(f.recording_time_s)}` : ""}`
        + ` · ${humanize(f.state)} · due ${fmtDateTime(f.due_at)}${f.overdue ? " (overdue)" : ""}`
        + `${f.escalated_at ? " · escalated" : ""}`)));
  box.addEventListener("toggle", async () => {
    if (!box.open || box.dataset.loaded) return;
    box.dataset.loaded = "1";
    const { thread } = await api(`/api/review/findings/${f.id}`);
    box.append(h("ol", { class: "thread" }, ...thread.map((a) => h("li", {},
      h("b", {}, a.actor), ` ${humanize(a.action.replace("finding_", ""))} · ${fmtDateTime(a.at)}`,
      a.text ? h("p", {}, a.text) : ""))));
    if (!opts.team && (f.state === "open" || f.state === "rejected")) {
      const text = h("textarea", { rows: 2, maxlength: 4000, "aria-label": "Your response", "data-testid": "finding-response" });
      const form = h("form", {}, text, h("button", { class: "btn btn-primary", type: "submit", "data-testid": "finding-respond" }, "Respond"));
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          await api(`/api/review/findings/${f.id}/respond`, { method: "POST", body: { text: text.value } });
          load(list, notice);
        } catch (e) { showNotice(notice, { kind: "error", title: "Not sent", text: e.message, code: e.code }); }
      });
      box.append(form);
    }
  });
  return box;
}

/** Add the "Review findings" panel: to the agent console's left column, or (``team``) to
 * the team lead's page. */
export function mount({ into = ".col-left", team = false } = {}) {
  const column = $(into);
  if (!column) return;
  opts.team = team;
  const notice = h("div", { "aria-live": "polite", hidden: true });
  const list = h("div", { id: "my-findings" });
  column.append(h("section", { class: "card panel", id: "findings-panel", "data-testid": "findings-panel", "aria-labelledby": "findings-title" },
    h("h2", { id: "findings-title" }, team ? "The team's review findings " : "Review findings ",
      h("span", { id: "findings-count", class: "badge" })),
    notice, list, h("p", { id: "findings-empty", class: "muted small" }, "No open findings.")));
  load(list, notice);
  setInterval(() => load(list, notice), REFRESH_MS);
}

// Post-event supervision on the audit page (docs/supervision.md): the review task list
// (mine, overdue, by rule), the supervisor's summary with CSV export, and beside the
// synchronized replay the review panel: the checklist (pass / fail / n.a., comment, time in
// the recording), findings, and each finding's rectification thread.
import { $, api, fmtDateTime, fmtDuration, h, humanize, showNotice } from "./common.js";

const st = { me: null, task: null, detail: null, hooks: null, callId: null };

function failed(region, e, title) {
  showNotice(region, { kind: "error", title, text: e.message || String(e), code: e.code || "" });
}

// ------------------------------------------------------------------ task list and summary
function tasksSection() {
  const filters = h("form", { class: "card search", id: "review-filters", "aria-label": "Filter review tasks" },
    h("div", { class: "field" }, h("label", { for: "review-mine" }, "Mine only"),
      h("input", { id: "review-mine", type: "checkbox", "data-testid": "review-mine", checked: true })),
    h("div", { class: "field" }, h("label", { for: "review-overdue" }, "Overdue only"),
      h("input", { id: "review-overdue", type: "checkbox", "data-testid": "review-overdue" })),
    h("div", { class: "field" }, h("label", { for: "review-rule" }, "Rule"),
      h("input", { id: "review-rule", type: "text", placeholder: "e.g. risk_high_or_block", "data-testid": "review-rule" })),
    h("button", { type: "submit", class: "btn btn-primary" }, "Show"));
  filters.addEventListener("submit", (ev) => { ev.preventDefault(); loadTasks(); });
  const table = h("table", { class: "data", "data-testid": "review-tasks" },
    h("caption", { class: "visually-hidden" }, "Review tasks, by due date"),
    h("thead", {}, h("tr", {}, ...["Due", "Call", "Rule", "Reason", "Assignee", "State", ""]
      .map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", { id: "review-rows" }));
  const summary = h("div", { class: "card", id: "review-summary", "data-testid": "review-summary" });
  return h("section", { id: "view-review", "aria-labelledby": "review-title", hidden: true },
    h("div", { class: "list-head" }, h("h1", { id: "review-title" }, "Review tasks"),
      h("a", { href: "#", class: "btn", onclick: (ev) => { ev.preventDefault(); location.hash = ""; } }, "← Recorded calls")),
    h("div", { id: "review-notice", "aria-live": "assertive", hidden: true }),
    filters, h("div", { class: "card table-card" }, table,
      h("p", { id: "review-empty", class: "empty muted", hidden: true }, "No tasks.")),
    h("h2", {}, "Supervisor's summary (last 30 days)"), summary);
}

async function loadTasks() {
  const q = new URLSearchParams();
  if ($("#review-mine").checked) q.set("mine", "true");
  if ($("#review-overdue").checked) q.set("overdue", "true");
  const rule = $("#review-rule").value.trim();
  if (rule) q.set("rule", rule);
  let tasks;
  try { ({ tasks } = await api(`/api/review/tasks?${q}`)); } catch (e) { return failed($("#review-notice"), e, "Tasks could not be loaded"); }
  $("#review-rows").replaceChildren(...tasks.map((t) => h("tr", { dataset: { state: t.state, overdue: String(t.overdue) } },
    h("td", {}, fmtDateTime(t.due_at), t.overdue ? h("span", { class: "badge badge-danger", "data-testid": "overdue" }, " overdue") : null),
    h("td", {}, t.call_id), h("td", {}, `${t.rule} (v${t.rule_version})`), h("td", {}, t.reason),
    h("td", {}, t.assignee || "unassigned"), h("td", { "data-testid": "task-state" }, humanize(t.state)),
    h("td", {}, h("a", { href: `#call=${encodeURIComponent(t.call_id)}`, class: "btn", "data-testid": "open-task" }, "Review")))));
  $("#review-empty").hidden = tasks.length > 0;
  loadSummary();
}

function bars(rows, label, value) {
  const max = Math.max(1, ...rows.map(value));
  return h("ul", { class: "bars" }, ...rows.map((r) => h("li", {},
    h("span", { class: "bar-label" }, label(r)),
    h("span", { class: "bar", style: `width:${Math.round((value(r) / max) * 100)}%` }),
    h("span", { class: "num" }, String(value(r))))));
}

async function loadSummary() {
  let s;
  try { s = await api("/api/review/summary"); } catch (e) { return; }
  const cov = s.coverage.filter((c) => c.agent);
  $("#review-summary").replaceChildren(
    h("h3", {}, "Review coverage per agent and service"),
    bars(cov, (c) => `${c.agent} · ${c.service}`, (c) => c.selected),
    h("h3", {}, "Findings by category and severity"),
    bars(s.findings, (f) => `${f.category} · ${f.severity}`, (f) => f.count),
    h("p", { class: "muted" }, `Open findings: ${s.open_findings}. Time to rectify: `
      + (s.rectify_hours.count ? `median ${s.rectify_hours.median.toFixed(1)} h, at most ${s.rectify_hours.max.toFixed(1)} h` : "nothing rectified yet")),
    h("a", { class: "btn", href: "/api/review/summary?format=csv", download: "supervision-summary.csv", "data-testid": "summary-csv" }, "Export CSV"));
}

// ------------------------------------------------------------------ the review panel
function panel() {
  return h("aside", { class: "card review-card", id: "review-panel", "aria-labelledby": "review-panel-title", hidden: true, "data-testid": "review-panel" },
    h("h2", { id: "review-panel-title" }, "Review"),
    h("div", { id: "review-panel-notice", "aria-live": "assertive", hidden: true }),
    h("div", { class: "record-tools" },
      h("button", { type: "button", class: "btn btn-small", "data-testid": "verify-record", onclick: verifyRecord }, "Verify the record"),
      h("a", { class: "btn btn-small", id: "package-link", "data-testid": "package-link", href: "#" }, "Evidence package"),
      h("span", { id: "verify-result", "data-testid": "verify-result", role: "status" })),
    h("p", { id: "review-status", class: "muted", "data-testid": "review-status" }),
    h("div", { id: "review-actions" }),
    h("ol", { id: "checklist", class: "checklist", "data-testid": "checklist" }),
    h("div", { id: "findings", "data-testid": "findings" }));
}

async function verifyRecord() {
  const out = $("#verify-result");
  out.textContent = "Verifying…";
  try {
    const r = await api(`/api/audit/calls/${encodeURIComponent(st.callId)}/verify`);
    out.dataset.ok = String(r.ok);
    out.textContent = r.ok ? "The record is whole." : `${r.breaks.length} break(s): `
      + r.breaks.map((b) => `${humanize(b.kind)}${b.seq ? ` at event ${b.seq}` : ""}`).join("; ");
  } catch (e) { out.textContent = ""; failed($("#review-panel-notice"), e, "The record could not be verified"); }
}

async function openTaskFor(callId) {
  st.callId = callId;
  const box = $("#review-panel");
  box.hidden = true;
  $("#verify-result").textContent = "";
  $("#package-link").href = `/api/audit/calls/${encodeURIComponent(callId)}/package`;
  $("#package-link").setAttribute("download", `${callId}.zip`);
  let tasks;
  try { ({ tasks } = await api(`/api/review/tasks?call_id=${encodeURIComponent(callId)}`)); } catch { return; }
  if (st.callId !== callId) return;
  if (!tasks.length) {
    box.hidden = false;
    $("#review-status").textContent = "Not selected for review.";
    $("#checklist").replaceChildren(); $("#findings").replaceChildren();
    $("#review-actions").replaceChildren(h("form", { class: "inline", onsubmit: selectManually },
      h("label", { for: "manual-reason" }, "Select for review, because"),
      h("input", { id: "manual-reason", required: true, maxlength: 1000, "data-testid": "manual-reason" }),
      h("button", { class: "btn", type: "submit", "data-testid": "manual-select" }, "Select")));
    return;
  }
  await loadTask(tasks[0].id);
}

async function selectManually(ev) {
  ev.preventDefault();
  try {
    await api("/api/review/tasks", { method: "POST", body: { call_id: st.callId, reason: $("#manual-reason").value } });
    openTaskFor(st.callId);
  } catch (e) { failed($("#review-panel-notice"), e, "The call could not be selected"); }
}

async function loadTask(id) {
  try { st.detail = await api(`/api/review/tasks/${id}`); } catch (e) { return failed($("#review-panel-notice"), e, "The review could not be loaded"); }
  const { task, checklist, findings, categories } = st.detail;
  st.task = task;
  const mine = task.assignee === st.me.username;
  const working = mine && task.state === "in_review";
  $("#review-panel").hidden = false;
  $("#review-panel").dataset.state = task.state;
  $("#review-status").textContent = `${humanize(task.state)} · ${task.rule} v${task.rule_version}: ${task.reason} · `
    + `${task.assignee ? `assigned to ${task.assignee}` : "unassigned"} · due ${fmtDateTime(task.due_at)}${task.overdue ? " (overdue)" : ""}`;
  const actions = [];
  if (mine && task.state === "open") actions.push(h("button", { class: "btn btn-primary", "data-testid": "review-start", onclick: () => act(`/api/review/tasks/${id}/start`) }, "Start the review"));
  if (working) actions.push(h("button", { class: "btn btn-primary", "data-testid": "review-complete", onclick: () => act(`/api/review/tasks/${id}/complete`, { summary: "" }) }, "Complete the review"));
  $("#review-actions").replaceChildren(...actions);
  $("#checklist").replaceChildren(...checklist.map((item) => checklistItem(item, working)));
  const list = findings.map((f) => findingView(f, mine));
  if (working || (mine && task.state === "findings_raised")) list.push(findingForm(categories));
  $("#findings").replaceChildren(h("h3", {}, "Findings"), ...list);
}

async function act(path, body = {}) {
  try { await api(path, { method: "POST", body }); } catch (e) { return failed($("#review-panel-notice"), e, "Not done"); }
  loadTask(st.task.id);
}

function timeNow() {
  const t = st.hooks.getTime();
  return t === null ? null : Math.round(t * 10) / 10;
}

function checklistItem(item, editable) {
  const li = h("li", { dataset: { item: item.id, result: item.result || "" } }, h("span", { class: "item-text" }, item.text));
  if (!editable) {
    li.append(h("span", { class: "item-result", "data-testid": "item-result" }, item.result ? humanize(item.result) : "—"),
      item.comment ? h("span", { class: "muted" }, ` ${item.comment}`) : "");
    return li;
  }
  const comment = h("input", { type: "text", placeholder: "Comment", value: item.comment || "", "aria-label": `Comment on: ${item.text}`, "data-testid": `comment-${item.id}` });
  const stamp = h("span", { class: "muted num" }, item.recording_time_s != null ? fmtDuration(item.recording_time_s) : "");
  let at = item.recording_time_s ?? null;
  const save = async (result) => {
    try {
      await api(`/api/review/tasks/${st.task.id}/items/${item.id}`, { method: "PUT", body: { result, comment: comment.value, recording_time_s: at } });
      li.dataset.result = result;
    } catch (e) { failed($("#review-panel-notice"), e, "The answer was not saved"); }
  };
  li.append(h("div", { class: "item-buttons", role: "group", "aria-label": item.text },
    ...["pass", "fail", "na"].map((r) => h("button", { type: "button", class: "btn btn-small", "data-testid": `${r}-${item.id}`, onclick: () => save(r) }, r === "na" ? "N/A" : humanize(r))),
    h("button", { type: "button", class: "btn btn-ghost btn-small", title: "Use the current time of the replay",
      onclick: () => { at = timeNow(); stamp.textContent = at === null ? "" : fmtDuration(at); } }, "⏱"), stamp), comment);
  return li;
}

function findingForm(categories) {
  const f = h("form", { class: "finding-form", "data-testid": "finding-form" },
    h("select", { name: "severity", "aria-label": "Severity" }, ...["low", "medium", "high", "critical"].map((s) => h("option", { value: s }, humanize(s)))),
    h("select", { name: "category", "aria-label": "Category" }, ...categories.map((c) => h("option", { value: c }, humanize(c)))),
    h("input", { name: "description", required: true, placeholder: "What was wrong", "aria-label": "Description", "data-testid": "finding-description" }),
    h("button", { type: "submit", class: "btn", "data-testid": "finding-add" }, "Add finding at the current time"));
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api(`/api/review/tasks/${st.task.id}/findings`, { method: "POST", body: {
        severity: f.severity.value, category: f.category.value, description: f.description.value, recording_time_s: timeNow() } });
      loadTask(st.task.id);
    } catch (e) { failed($("#review-panel-notice"), e, "The finding was not recorded"); }
  });
  return f;
}

function findingView(f, mine) {
  const box = h("details", { class: "finding", dataset: { state: f.state }, "data-testid": "finding" },
    h("summary", {}, h("span", { class: `badge sev-${f.severity}` }, humanize(f.severity)), ` ${humanize(f.category)}: ${f.description} `,
      h("span", { class: "muted", "data-testid": "finding-state" }, humanize(f.state)),
      f.recording_time_s != null ? h("button", { type: "button", class: "btn btn-ghost btn-small", onclick: () => st.hooks.seek(f.recording_time_s) }, fmtDuration(f.recording_time_s)) : ""));
  box.addEventListener("toggle", async () => {
    if (!box.open || box.dataset.loaded) return;
    box.dataset.loaded = "1";
    const { thread } = await api(`/api/review/findings/${f.id}`);
    box.append(h("ol", { class: "thread" }, ...thread.map((a) => h("li", {}, h("b", {}, a.actor), ` ${humanize(a.action.replace("finding_", ""))} · ${fmtDateTime(a.at)}`, a.text ? h("p", {}, a.text) : ""))));
    if (mine && f.state === "responded") {
      const note = h("input", { placeholder: "Note", "aria-label": "Note on the decision" });
      box.append(note, h("button", { class: "btn", "data-testid": "finding-accept", onclick: () => act(`/api/review/findings/${f.id}/decision`, { accept: true, text: note.value }) }, "Accept"),
        h("button", { class: "btn", "data-testid": "finding-reject", onclick: () => act(`/api/review/findings/${f.id}/decision`, { accept: false, text: note.value }) }, "Reject"));
    }
  });
  return box;
}

// ------------------------------------------------------------------ mounting
/** Add the review workflow to the audit page. ``hooks``: {getTime(), seek(t)} of the replay. */
export function mount(user, hooks) {
  st.me = user;
  st.hooks = hooks;
  $("#app").append(tasksSection());
  const grid = $(".replay-grid");
  if (grid) grid.append(panel());
  $(".list-head").append(h("a", { href: "#review", class: "btn", "data-testid": "review-tasks-link" }, "Review tasks"));
  const route = () => {
    const review = location.hash === "#review";
    $("#view-review").hidden = !review;
    if (review) { $("#view-list").hidden = true; $("#view-replay").hidden = true; loadTasks(); }
    const m = /^#call=(.+)$/.exec(location.hash);
    if (m) openTaskFor(decodeURIComponent(m[1]));
  };
  window.addEventListener("hashchange", route);
  route();
}

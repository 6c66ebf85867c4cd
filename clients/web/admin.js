// The admin console: staff accounts, the service catalogue, customers and their reference
// photos, webhook subscriptions and their delivery log, and the admin audit log. Everything
// goes through the admin HTTP API (docs/api.md); a refusal shows the hub's message and marks
// the field at fault, and changes nothing.
import { $, $$, api, clearNotice, fmtDateTime, h, humanize, showNotice } from "./common.js";
import { signIn, signOut } from "./login.js";

const st = { tab: "users", me: null, services: [], eventTypes: [], query: "" };
const ROLES = ["agent", "lead", "auditor", "admin"];
const CHECKS = ["identity", "liveness"];

// ------------------------------------------------------------------ messages
function tell(kind, title, text = "", extra = null) {
  const el = showNotice($("#notice"), { kind, title, text });
  if (extra) el.querySelector(".notice-body").append(extra);
  if (kind !== "error") window.scrollTo({ top: 0 });
}

function problemsOf(e) {
  const d = e.details || {};
  const list = (d.problems || []).map((p) => ({ field: String(p.field), text: p.problem }));
  if (d.field) list.push({ field: d.field, text: e.message });
  return list;
}

/** The form field a problem names: "routing.widen_after_s" is a field of its own,
 * "skills.0" is the field "skills". */
function fieldOf(form, name) {
  return form && form.elements[name] ? name : name.split(".")[0];
}

/** Show a refusal in the editor (or the page) and mark the fields it names. */
function refused(e, form = null) {
  const region = form ? $(".form-notice", form) : $("#notice");
  const problems = problemsOf(e).map((p) => ({ ...p, field: fieldOf(form, p.field) }));
  const text = problems.length && e.code === "invalid_message"
    ? problems.map((p) => `${humanize(p.field)}: ${p.text}`).join(" · ") : e.message;
  showNotice(region, { kind: "error", code: e.code, title: "Not saved", text });
  if (!form) return;
  for (const el of $$("[aria-invalid]", form)) el.removeAttribute("aria-invalid");
  for (const el of $$(".problem", form)) el.remove();
  for (const p of problems) {
    const input = form.elements[p.field];
    const target = input instanceof RadioNodeList ? input[0] : input;
    if (!target) continue;
    (target.closest(".field") || target).append(h("span", { class: "problem", "data-testid": `problem-${p.field}` }, p.text));
    if (target.setAttribute) target.setAttribute("aria-invalid", "true");
  }
}

function secretBox(label, value, testid) {
  return h("div", {}, h("span", {}, label), h("code", { class: "secret", "data-testid": testid }, value));
}

// ------------------------------------------------------------------ forms
/** A form field: {name, label, type, value, options, hint, required, placeholder}. */
function field(f) {
  const id = `f-${f.name}`;
  const attrs = { id, name: f.name, "data-testid": `field-${f.name.replace(".", "-")}`, placeholder: f.placeholder,
    required: f.required || undefined };
  let input;
  if (f.type === "select") {
    input = h("select", attrs, f.options.map((o) => h("option", { value: o, selected: o === f.value || undefined }, humanize(o))));
  } else if (f.type === "checks") {
    input = h("div", { class: "checks", role: "group", "aria-label": f.label },
      f.options.map((o) => h("label", {}, h("input", { type: "checkbox", name: f.name, value: o,
        "data-testid": `check-${f.name.replace(".", "-")}-${o}`, checked: (f.value || []).includes(o) || undefined }), o)));
  } else {
    input = h("input", { ...attrs, type: f.type || "text", value: f.value ?? "",
      min: f.min, max: f.max, maxlength: f.maxlength, autocomplete: f.autocomplete || "off" });
  }
  return h("div", { class: "field" }, h("label", { for: id }, f.label), input,
    f.hint ? h("span", { class: "hint" }, f.hint) : null);
}

/** The body a form sends; a field named "routing.x" is "x" of the object "routing". */
function readForm(form, fields) {
  const body = {};
  const slot = (name) => {
    const [group, key] = name.includes(".") ? name.split(".", 2) : [null, name];
    if (!group) return [body, key];
    body[group] = body[group] || {};
    return [body[group], key];
  };
  for (const f of fields) {
    const [into, key] = slot(f.name);
    if (f.type === "checks") {
      into[key] = $$(`input[name="${f.name}"]:checked`, form).map((i) => i.value);
      continue;
    }
    const raw = form.elements[f.name].value;
    const value = f.type === "number" ? (raw.trim() === "" ? undefined : Number(raw)) : raw.trim();
    if (value === "" && f.optional) continue;
    if (value !== undefined) into[key] = value;
  }
  return body;
}

/** The editor card: a form whose submit calls `save(body)`; closes on success. */
function edit(title, fields, save, submit = "Save") {
  const editor = $("#editor");
  const form = h("form", { novalidate: true, "data-testid": "editor-form" },
    h("h2", {}, title), h("div", { class: "form-notice", "aria-live": "assertive" }),
    h("div", { class: "grid" }, fields.map(field)),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "btn btn-primary", "data-testid": "editor-save" }, submit),
      h("button", { type: "button", class: "btn", "data-testid": "editor-cancel", onclick: closeEditor }, "Cancel")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = $("button[type=submit]", form);
    button.disabled = true;
    try {
      await save(readForm(form, fields));
      closeEditor();
      await show(st.tab);
    } catch (e) {
      refused(e, form);
    } finally {
      button.disabled = false;
    }
  });
  editor.replaceChildren(form);
  editor.hidden = false;
  clearNotice($("#notice"));
  const first = $("input, select", form);
  if (first) first.focus();
}

function closeEditor() {
  $("#editor").hidden = true;
  $("#editor").replaceChildren();
}

async function act(fn, done) {
  try {
    const result = await fn();
    if (done) done(result);
    await show(st.tab);
  } catch (e) {
    refused(e);
  }
}

function table(head, rows, testid) {
  return h("div", { class: "card table-card" }, h("table", { class: "data", "data-testid": testid },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows)));
}

function heading(title, ...extra) {
  return h("div", { class: "list-head" }, h("h1", {}, title), h("div", { class: "spacer" }), ...extra);
}

const when = (iso) => (iso ? fmtDateTime(iso) : "–");
const pill = (text, kind = "") => h("span", { class: `pill ${kind}` }, text);

// ------------------------------------------------------------------ staff
function skillsKnown() {
  return [...new Set([...st.services.map((s) => s.required_skill), "senior"])].sort();
}

async function users() {
  const [{ users: list }, { services }] = await Promise.all([api("/api/admin/users"), api("/api/admin/services")]);
  st.services = services;
  const rows = list.map((u) => h("tr", { "data-testid": "user-row", "data-username": u.username },
    h("td", { class: "mono" }, u.username), h("td", {}, u.display_name), h("td", {}, humanize(u.role)),
    h("td", { "data-testid": "user-skills" }, u.skills.map((k) => ((u.preferred_skills || []).includes(k)
      ? h("span", { class: "pill ok", title: "preferred: these calls are offered to this agent first" }, `★ ${k}`) : pill(k)))),
    h("td", { "data-testid": "user-status" }, u.disabled ? pill("Disabled", "off") : pill("Active", "ok"),
      u.totp_enrolled ? pill("2FA", "ok") : null),
    h("td", { class: "num" }, String(u.live_sessions)), h("td", {}, when(u.last_sign_in_at)),
    h("td", {}, h("div", { class: "row-actions" },
      h("button", { type: "button", class: "btn", "data-testid": `edit-${u.username}`, onclick: () => editUser(u) }, "Edit"),
      h("button", { type: "button", class: "btn", "data-testid": `password-${u.username}`, onclick: () => act(
        () => api(`/api/admin/users/${u.username}/password`, { method: "POST", body: {} }),
        (r) => tell("ok", `New password for ${u.username}`, `${r.sessions_ended} session(s) ended. Hand it over in person; it is shown once.`,
          secretBox("Password:", r.password, "generated-password"))) }, "Reset password"),
      h("button", { type: "button", class: "btn", "data-testid": `end-${u.username}`, onclick: () => act(
        () => api(`/api/admin/users/${u.username}/end-sessions`, { method: "POST" }),
        (r) => tell("ok", `${u.username} signed out`, `${r.sessions_ended} session(s) ended.`)) }, "Sign out"),
      h("button", { type: "button", class: "btn", "data-testid": `totp-${u.username}`, onclick: () => act(
        () => api(`/api/admin/users/${u.username}/totp`, { method: "POST" }),
        (r) => tell("ok", `Second factor for ${u.username}`, "Enter it in their authenticator app; it is shown once.",
          secretBox("otpauth URI:", r.uri, "totp-uri"))) }, "Enrol 2FA"),
      u.username === st.me.username ? null : h("button", { type: "button", class: `btn ${u.disabled ? "" : "btn-caution"}`, "data-testid": `${u.disabled ? "enable" : "disable"}-${u.username}`,
        onclick: () => act(() => api(`/api/admin/users/${u.username}/${u.disabled ? "enable" : "disable"}`, { method: "POST" }),
          (r) => tell("ok", `${u.username} ${r.disabled ? "disabled" : "enabled"}`, r.disabled ? `${r.sessions_ended} session(s) ended.` : "")) },
      u.disabled ? "Enable" : "Disable")))));
  return [heading("Staff", h("span", { class: "muted", "data-testid": "user-count" }, `${list.length} accounts`),
    h("button", { type: "button", class: "btn btn-primary", "data-testid": "add-user", onclick: addUser }, "Add a staff member")),
  table(["Username", "Name", "Role", "Skills (★ preferred)", "Status", "Sessions", "Last sign-in", ""], rows, "users-table")];
}

function addUser() {
  edit("Add a staff member", [
    { name: "username", label: "Username", required: true, maxlength: 64, hint: "letters, digits and _ . @ -" },
    { name: "display_name", label: "Display name", optional: true, maxlength: 128 },
    { name: "role", label: "Role", type: "select", options: ROLES, value: "agent" },
    { name: "password", label: "Password", type: "password", optional: true, autocomplete: "new-password",
      hint: "12+ characters; leave empty to generate one" },
    { name: "skills", label: "Skills (agents)", type: "checks", options: skillsKnown() },
    { name: "preferred_skills", label: "Preferred skills", type: "checks", options: skillsKnown(),
      hint: "some of the skills: calls needing them are offered to this agent first" },
  ], async (body) => {
    const r = await api("/api/admin/users", { method: "POST", body });
    tell("ok", `${r.user.username} added`, r.password ? "Hand the password over in person; it is shown once." : "",
      r.password ? secretBox("Password:", r.password, "generated-password") : null);
  }, "Add");
}

function editUser(u) {
  edit(`Edit ${u.username}`, [
    { name: "display_name", label: "Display name", value: u.display_name, maxlength: 128 },
    { name: "role", label: "Role", type: "select", options: ROLES, value: u.role },
    { name: "skills", label: "Skills (agents)", type: "checks", options: skillsKnown(), value: u.skills },
    { name: "preferred_skills", label: "Preferred skills", type: "checks", options: skillsKnown(), value: u.preferred_skills || [],
      hint: "some of the skills: calls needing them are offered to this agent first" },
  ], async (body) => {
    await api(`/api/admin/users/${u.username}`, { method: "PATCH", body });
    tell("ok", `${u.username} saved`, "The change applies at once.");
  });
}

// ------------------------------------------------------------------ services
function serviceFields(s = {}) {
  return [
    { name: "name", label: "Name", value: s.name, required: true, maxlength: 128 },
    { name: "kind", label: "Kind", type: "select", options: ["counter_service", "loan_interview"], value: s.kind || "counter_service" },
    { name: "required_skill", label: "Skill required", value: s.required_skill, required: true, maxlength: 32 },
    { name: "priority", label: "Priority (0-9)", type: "number", value: s.priority ?? 0, min: 0, max: 9 },
    { name: "target_answer_s", label: "Target answer time (s)", type: "number", value: s.target_answer_s ?? 60, min: 5, max: 3600,
      hint: "a call answered within this counts for the service level" },
    { name: "auto_checks", label: "Automatic checks", type: "checks", options: CHECKS, value: s.auto_checks || [] },
    ...routingFields(s.routing || {}),
  ];
}

/** A service's routing rules (docs/api.md, Routing rules): sent whole as "routing". */
function routingFields(r) {
  return [
    { name: "routing.fallback_skills", label: "Fallback skills", type: "checks", options: skillsKnown(), value: r.fallback_skills || [],
      hint: "pool widening: agents with these skills may take a call that has waited long" },
    { name: "routing.widen_after_s", label: "Widen after (s)", type: "number", value: r.widen_after_s ?? "", min: 0, max: 3600,
      hint: "empty: the target answer time; 0: never" },
    { name: "routing.overflow_skills", label: "Overflow skills", type: "checks", options: skillsKnown(), value: r.overflow_skills || [],
      hint: "a second group of agents for calls waiting longer still" },
    { name: "routing.overflow_after_s", label: "Overflow after (s)", type: "number", value: r.overflow_after_s ?? "", min: 0, max: 3600,
      hint: "empty: no overflow" },
    { name: "routing.max_consecutive_offers", label: "Max consecutive offers", type: "number", value: r.max_consecutive_offers ?? "", min: 1, max: 100,
      hint: "calls of this service in a row for one agent while another is free; empty: no limit" },
  ];
}

function routingSummary(r = {}) {
  const parts = [];
  if (r.fallback_skills && r.fallback_skills.length && r.widen_after_s !== 0) {
    parts.push(`widen to ${r.fallback_skills.join(", ")} after ${r.widen_after_s ?? "target"}${r.widen_after_s == null ? "" : " s"}`);
  }
  if (r.overflow_skills && r.overflow_skills.length && r.overflow_after_s != null) {
    parts.push(`overflow to ${r.overflow_skills.join(", ")} after ${r.overflow_after_s} s`);
  }
  if (r.max_consecutive_offers != null) parts.push(`at most ${r.max_consecutive_offers} in a row`);
  return parts.length ? parts.join("; ") : "–";
}

async function services() {
  const { services: list } = await api("/api/admin/services");
  st.services = list;
  const rows = list.map((s) => h("tr", { "data-testid": "service-row", "data-code": s.code },
    h("td", { class: "mono" }, s.code), h("td", {}, s.name), h("td", {}, humanize(s.kind)),
    h("td", {}, pill(s.required_skill)), h("td", { class: "num" }, String(s.priority)),
    h("td", { class: "num", "data-testid": "service-target" }, `${s.target_answer_s} s`),
    h("td", {}, s.auto_checks.map((c) => pill(c))),
    h("td", { "data-testid": "service-routing" }, routingSummary(s.routing)),
    h("td", {}, h("div", { class: "row-actions" }, h("button", { type: "button", class: "btn", "data-testid": `edit-service-${s.code}`,
      onclick: () => edit(`Edit ${s.code}`, serviceFields(s), async (body) => {
        await api(`/api/admin/services/${s.code}`, { method: "PATCH", body });
        tell("ok", `${s.name} saved`, "The hub uses it from the next call.");
      }) }, "Edit")))));
  return [heading("Services", h("button", { type: "button", class: "btn btn-primary", "data-testid": "add-service",
    onclick: () => edit("Add a service", [{ name: "code", label: "Code", required: true, hint: "a-z, 0-9 and _" }, ...serviceFields()],
      async (body) => { await api("/api/admin/services", { method: "POST", body }); tell("ok", `${body.code} added`); }, "Add") }, "Add a service")),
  table(["Code", "Name", "Kind", "Skill", "Priority", "Target", "Automatic checks", "Routing", ""], rows, "services-table")];
}

// ------------------------------------------------------------------ customers
function customerFields(c = {}) {
  return [
    { name: "name", label: "Name", value: c.name, required: true, maxlength: 128 },
    { name: "phone", label: "Phone", value: "", optional: !c.id, placeholder: c.phone_masked || "+44 20 7946 0000",
      hint: c.id ? "leave empty to keep it" : "" },
    { name: "id_number", label: "ID number", optional: true, placeholder: c.id_number_masked || "", hint: "stored masked" },
    { name: "risk_level", label: "Risk on file", type: "select", options: ["low", "medium", "high"], value: c.risk_level || "low" },
    { name: "card_last4", label: "Card (last 4)", value: c.card_last4 || "", optional: true, maxlength: 4 },
  ];
}

function uploadPhoto(c) {
  const input = h("input", { type: "file", accept: "image/jpeg,image/png", "data-testid": `photo-input-${c.id}`, hidden: true });
  input.addEventListener("change", () => {
    const file = input.files[0];
    if (!file) return;
    tell("info", "Checking the photo…", "Looking for exactly one face.");
    act(() => api(`/api/admin/customers/${encodeURIComponent(c.id)}/photo`, { method: "PUT", raw: file, contentType: file.type || "image/jpeg" }),
      () => tell("ok", `Reference photo of ${c.name} enrolled`, "Identity checks compare the customer with it from the next call."));
  });
  return h("span", {}, input, h("button", { type: "button", class: "btn", "data-testid": `photo-${c.id}`, onclick: () => input.click() },
    c.has_reference_photo ? "Replace photo" : "Add photo"));
}

async function customers() {
  const q = st.query ? `?q=${encodeURIComponent(st.query)}` : "";
  const { customers: list, total } = await api(`/api/admin/customers${q}`);
  const search = h("input", { type: "search", id: "customer-q", "data-testid": "customer-search", value: st.query, placeholder: "Name or id" });
  const form = h("form", { class: "search", role: "search" }, h("div", { class: "field" }, h("label", { for: "customer-q" }, "Search"), search),
    h("button", { type: "submit", class: "btn" }, "Search"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); st.query = search.value.trim(); show("customers"); });
  const rows = list.map((c) => h("tr", { "data-testid": "customer-row", "data-customer": c.id },
    h("td", { class: "mono" }, c.id), h("td", {}, c.name), h("td", {}, c.phone_masked || "–"),
    h("td", {}, pill(humanize(c.risk_level), c.risk_level === "high" ? "off" : c.risk_level === "medium" ? "warn" : "ok")),
    h("td", {}, c.card_last4 || "–"),
    h("td", { "data-testid": "customer-photo" }, c.has_reference_photo ? pill("On file", "ok") : pill("None", "warn")),
    h("td", {}, h("div", { class: "row-actions" }, uploadPhoto(c),
      h("button", { type: "button", class: "btn", "data-testid": `edit-customer-${c.id}`, onclick: () => edit(`Edit ${c.name}`, customerFields(c),
        async (body) => {
          for (const k of ["phone", "id_number"]) if (body[k] === "") delete body[k];
          if (body.card_last4 === "") body.card_last4 = null;
          await api(`/api/admin/customers/${encodeURIComponent(c.id)}`, { method: "PATCH", body });
          tell("ok", `${c.name} saved`);
        }) }, "Edit")))));
  return [heading("Customers", h("span", { class: "muted" }, `${total} found`),
    h("button", { type: "button", class: "btn btn-primary", "data-testid": "add-customer", onclick: () => edit("Add a customer",
      [{ name: "id", label: "Customer number", optional: true, hint: "the bank's id (the token's sub); empty: generated" }, ...customerFields()],
      async (body) => {
        const r = await api("/api/admin/customers", { method: "POST", body });
        tell("ok", `${r.customer.name} added as ${r.customer.id}`, "Add the reference photo next.");
      }, "Add") }, "Add a customer")),
  form, table(["Id", "Name", "Phone", "Risk", "Card", "Reference photo", ""], rows, "customers-table")];
}

// ------------------------------------------------------------------ webhooks
function webhookFields(w = {}) {
  return [
    { name: "name", label: "Name", value: w.name, required: true, maxlength: 80 },
    { name: "url", label: "URL", value: w.url, required: true, type: "url", hint: "https://… (signed with the secret shown once)" },
    { name: "event_types", label: "Events", type: "checks", options: ["*", ...st.eventTypes.map((t) => t.type)], value: w.event_types || [] },
  ];
}

async function deliveries(w) {
  const { deliveries: list } = await api(`/api/admin/webhooks/${w.id}/deliveries?limit=30`);
  const rows = list.map((d) => h("tr", { "data-testid": "delivery-row", "data-state": d.state },
    h("td", {}, when(d.created_at)), h("td", {}, d.event_type), h("td", { class: "mono" }, d.event_id),
    h("td", {}, pill(humanize(d.state), d.state === "delivered" ? "ok" : d.state === "pending" ? "warn" : "off")),
    h("td", { class: "num" }, String(d.attempts)), h("td", {}, d.last_status ? String(d.last_status) : (d.last_error || "–")),
    h("td", {}, d.state === "pending" ? null : h("button", { type: "button", class: "btn", "data-testid": `redeliver-${d.delivery_id}`,
      onclick: () => act(() => api(`/api/admin/webhooks/deliveries/${d.delivery_id}/redeliver`, { method: "POST" }),
        () => tell("ok", "Sent again", `Event ${d.event_id} (receivers deduplicate by its id).`)) }, "Redeliver"))));
  $("#deliveries")?.remove();
  $("#view").append(h("section", { id: "deliveries", class: "deliveries", "data-testid": "deliveries" },
    h("div", { class: "list-head" }, h("h2", {}, `Deliveries to ${w.name}`),
      h("button", { type: "button", class: "btn", "data-testid": "refresh-deliveries", onclick: () => deliveries(w) }, "Refresh")),
    table(["Created", "Event", "Event id", "State", "Attempts", "Last answer", ""], rows, "deliveries-table")));
}

async function webhooks() {
  const { webhooks: list, event_types: types } = await api("/api/admin/webhooks");
  st.eventTypes = types;
  const hookApi = (w, path, opts) => api(`/api/admin/webhooks/${w.id}${path}`, opts);
  const rows = list.map((w) => h("tr", { "data-testid": "webhook-row", "data-webhook": String(w.id) },
    h("td", {}, w.name), h("td", { class: "mono details" }, w.url), h("td", {}, w.event_types.map((t) => pill(t))),
    h("td", { "data-testid": "webhook-health" }, !w.active ? pill("Paused", "warn")
      : w.health.consecutive_failures ? pill(`Failing (${w.health.consecutive_failures})`, "off") : pill("Healthy", "ok")),
    h("td", { class: "num" }, `${w.deliveries.pending || 0} / ${w.deliveries.failed || 0}`),
    h("td", {}, when(w.health.last_success_at)),
    h("td", {}, h("div", { class: "row-actions" },
      h("button", { type: "button", class: "btn", "data-testid": `test-webhook-${w.id}`, onclick: () => act(
        () => hookApi(w, "/test", { method: "POST" }), (r) => { tell("ok", "Test event queued", r.event_id); setTimeout(() => deliveries(w), 1500); }) }, "Send test"),
      h("button", { type: "button", class: "btn", "data-testid": `deliveries-${w.id}`, onclick: () => deliveries(w).catch(refused) }, "Deliveries"),
      h("button", { type: "button", class: "btn", "data-testid": `edit-webhook-${w.id}`, onclick: () => edit(`Edit ${w.name}`, webhookFields(w),
        async (body) => { await hookApi(w, "", { method: "PATCH", body }); tell("ok", `${w.name} saved`); }) }, "Edit"),
      h("button", { type: "button", class: "btn", "data-testid": `pause-webhook-${w.id}`, onclick: () => act(
        () => hookApi(w, "", { method: "PATCH", body: { active: !w.active } })) }, w.active ? "Pause" : "Resume"),
      h("button", { type: "button", class: "btn", "data-testid": `rotate-webhook-${w.id}`, onclick: () => act(
        () => hookApi(w, "/rotate-secret", { method: "POST" }),
        (r) => tell("ok", "New signing secret", "The previous one also signs for 24 hours; give this one to the receiver.", secretBox("Secret:", r.secret, "webhook-secret"))) }, "Rotate secret"),
      h("button", { type: "button", class: "btn btn-danger", "data-testid": `delete-webhook-${w.id}`, onclick: () => {
        if (window.confirm(`Delete ${w.name}? Its pending deliveries are cancelled.`)) act(() => hookApi(w, "", { method: "DELETE" }));
      } }, "Delete")))));
  return [heading("Webhooks", h("button", { type: "button", class: "btn btn-primary", "data-testid": "add-webhook",
    onclick: () => edit("Subscribe a receiver", webhookFields(), async (body) => {
      const r = await api("/api/admin/webhooks", { method: "POST", body });
      tell("ok", `${r.webhook.name} subscribed`, "Give the receiver this secret to check the signatures; it is shown once.",
        secretBox("Secret:", r.secret, "webhook-secret"));
    }, "Subscribe") }, "Subscribe a receiver")),
  h("p", { class: "muted" }, "Events are signed (HMAC-SHA256), sent at least once with their event id, retried with back-off; see docs/operations.md."),
  table(["Name", "URL", "Events", "Health", "Pending / given up", "Last success", ""], rows, "webhooks-table")];
}

// ------------------------------------------------------------------ audit log
async function audit() {
  const { events } = await api("/api/admin/security-events?kind=admin.*&limit=200");
  const rows = events.filter((e) => e.kind !== "admin.security_events_read").map((e) => h("tr", { "data-testid": "audit-row", "data-kind": e.kind },
    h("td", {}, when(e.at)), h("td", { class: "mono" }, e.actor), h("td", {}, humanize(e.kind.replace(/^admin\./, ""))),
    h("td", { class: "mono" }, e.target), h("td", { class: "mono" }, e.source || "–"),
    h("td", { class: "details" }, JSON.stringify(e.details))));
  return [heading("Audit log", h("span", { class: "muted" }, "Every administrative change, who made it and from where")),
    table(["When", "Who", "Action", "Target", "From", "Details"], rows, "audit-table")];
}

// ------------------------------------------------------------------ tabs
const VIEWS = { users, services, customers, webhooks, audit };

async function show(tab) {
  st.tab = tab;
  document.body.dataset.tab = tab;
  for (const b of $$(".admin-nav .tab")) {
    if (b.dataset.tab === tab) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  }
  try {
    $("#view").replaceChildren(...await VIEWS[tab]());
    document.body.dataset.loaded = tab;
  } catch (e) {
    if (e.status === 401) location.reload();
    refused(e);
  }
}

for (const b of $$(".admin-nav .tab")) {
  b.addEventListener("click", () => { closeEditor(); clearNotice($("#notice")); show(b.dataset.tab); });
}
$("#logout-button").addEventListener("click", signOut);

async function main() {
  st.me = await signIn(["admin"]);
  $("#who").textContent = st.me.display_name || st.me.username;
  await show("users");
}

main();

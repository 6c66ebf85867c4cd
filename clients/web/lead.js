// Team lead's page: the wallboard (wallboard.js) and approvals. Approval requests of high-risk calls arrive on the /supervisor namespace
// (approval:requested); the lead approves or refuses with a note (approval:decide).
import { $, ask, clearNotice, connectSocket, fmtDateTime, h, humanize, showNotice } from "./common.js";
import { signIn, signOut } from "./login.js";
import { renderWallboard } from "./wallboard.js";
import { setMonitorSocket, stopMonitoring } from "./monitor.js";

const st = { socket: null, requests: new Map(), user: null };

function card(a) {
  const note = h("input", { type: "text", maxlength: "1000", "data-testid": `decision-note-${a.approval_id}`,
    placeholder: "Note for the record (optional)", "aria-label": "Note" });
  const decide = (decision) => async (ev) => {
    const buttons = ev.currentTarget.parentElement.querySelectorAll("button");
    for (const b of buttons) b.disabled = true;
    try {
      await ask(st.socket, "approval:decide", { approval_id: a.approval_id, decision,
        ...(note.value.trim() ? { note: note.value.trim() } : {}) });
      st.requests.delete(a.approval_id);
      render();
    } catch (e) {
      for (const b of buttons) b.disabled = false;
      showNotice($("#notice"), { kind: "error", code: e.code, title: "The decision was not recorded", text: e.message });
      if (["approval_decided", "unknown_approval"].includes(e.code)) { st.requests.delete(a.approval_id); render(); }
    }
  };
  const risk = a.current_risk || a.risk || {};
  return h("section", { class: "card panel approval-card", "data-testid": "approval-card",
    "data-approval-id": String(a.approval_id), "data-call-id": a.call_id },
  h("div", { class: "panel-head" }, h("h2", {}, `${(a.customer && a.customer.name) || "Customer"} · ${humanize(a.service)}`),
    h("span", { class: `badge ${risk.level || ""}` }, `${humanize(risk.level || "")} · ${risk.score ?? "–"}`)),
  h("dl", { class: "facts" },
    h("dt", {}, "Agent"), h("dd", {}, `${(a.agent && a.agent.display_name) || ""} (${a.requested_by})`),
    h("dt", {}, "Asked at"), h("dd", {}, fmtDateTime(new Date(a.requested_at * 1000).toISOString())),
    h("dt", {}, "Agent's note"), h("dd", {}, a.note || "–"),
    h("dt", {}, "Record says"), h("dd", {}, `${humanize((a.customer && a.customer.risk_level) || "")} risk`),
    h("dt", {}, "Call"), h("dd", { class: "mono" }, `${a.call_id}${a.live ? " · in progress" : " · in wrap-up"}`)),
  h("ul", { class: "risk-reasons", "data-testid": "approval-reasons" }, (risk.reasons || []).map((r) =>
    h("li", {}, r.text, " ", h("span", { class: "w" }, `+${r.weight}`)))),
  h("div", { class: "approval-actions" }, note,
    h("button", { type: "button", class: "btn btn-primary", "data-testid": `approve-${a.approval_id}`, onclick: decide("approve") }, "Approve"),
    h("button", { type: "button", class: "btn btn-danger", "data-testid": `refuse-${a.approval_id}`, onclick: decide("refuse") }, "Refuse")));
}

function render() {
  const list = [...st.requests.values()].sort((x, y) => x.requested_at - y.requested_at);
  $("#approvals").replaceChildren(...list.map(card));
  $("#approvals-empty").hidden = list.length > 0;
  $("#pending-count").textContent = `${list.length} waiting`;
  document.body.dataset.pending = String(list.length);
}

function connect() {
  const socket = connectSocket("/supervisor");
  st.socket = socket;
  setMonitorSocket(socket);
  socket.on("connect", async () => {
    clearNotice($("#notice"));
    try {
      const { approvals } = await ask(socket, "approvals:list", {});
      st.requests = new Map(approvals.map((a) => [a.approval_id, a]));
      render();
      renderWallboard((await ask(socket, "wallboard:snapshot", {})).board);
    } catch (e) {
      showNotice($("#notice"), { kind: "warn", code: e.code, title: "Requests not loaded", text: e.message });
    }
  });
  socket.on("approval:requested", (a) => { st.requests.set(a.approval_id, a); render(); });
  socket.on("wallboard:update", renderWallboard);
  for (const ev of ["approval:decided", "approval:withdrawn"]) {
    socket.on(ev, (a) => { st.requests.delete(a.approval_id); render(); });
  }
  socket.on("connect_error", async (err) => {
    const code = err && err.data && err.data.code;
    if (["unauthenticated", "token_expired", "wrong_role", "account_disabled"].includes(code)) {
      socket.disconnect();
      st.user = await signIn(["lead"], { reason: "Your session has expired. Please sign in again." });
      connect();
      return;
    }
    showNotice($("#notice"), { kind: "warn", code: "connection_lost", title: "Hub unreachable", text: "Retrying automatically…" });
  });
}

$("#logout-button").addEventListener("click", signOut);
$("#monitor-stop").addEventListener("click", stopMonitoring);

async function main() {
  st.user = await signIn(["lead"]);
  $("#who").textContent = st.user.display_name || st.user.username;
  render();
  connect();
  import("./findings.js").then((m) => m.mount({ into: "#app", team: true }));  // supervision
}

main();

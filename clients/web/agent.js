// Agent console: status, live queue, offers, the call with the customer, notes and wrap-up.
import {
  $, ask, clearNotice, connectSocket, fmtDuration, h, humanize, showNotice, api,
} from "./common.js";
import { signIn, signOut } from "./login.js";
import {
  MediaAccessError, MediaLeg, attachStream, getLocalMedia, setTracksEnabled,
} from "./media.js";

const STATE_NAMES = { offline: "Offline", available: "Available", offered: "Call offered",
  busy: "In a call", wrap_up: "Wrap-up", away: "Away" };
const END_BY = { customer: "the customer", agent: "you", system: "the system" };

const ui = {
  notice: $("#notice"),
  avail: $("#status-available"),
  away: $("#status-away"),
  statePill: $("#agent-state"),
  stateName: $("#state-name"),
  stateTime: $("#state-time"),
  who: $("#who"),
  queueRows: $("#queue-rows"),
  queueTotal: $("#queue-total"),
  skills: $("#skills"),
  idle: $("#stage-idle"),
  idleTitle: $("#idle-title"),
  idleText: $("#idle-text"),
  offer: $("#incoming-call"),
  offerCustomer: $("#offer-customer"),
  offerService: $("#offer-service"),
  offerRisk: $("#offer-risk"),
  offerPriority: $("#offer-priority"),
  offerCountdown: $("#offer-countdown"),
  offerBar: $("#offer-bar"),
  accept: $("#accept-button"),
  decline: $("#decline-button"),
  stageCall: $("#stage-call"),
  remote: $("#remote-video"),
  local: $("#local-video"),
  mediaMessage: $("#media-message"),
  mediaStateText: $("#media-state-text"),
  callCustomer: $("#call-customer"),
  timer: $("#call-timer"),
  mute: $("#mute-button"),
  camera: $("#camera-button"),
  hangup: $("#hangup-button"),
  wrapup: $("#wrapup-form"),
  wrapupLeft: $("#wrapup-left"),
  wrapupSummary: $("#wrapup-summary"),
  wrapupNotice: $("#wrapup-notice"),
  noteForm: $("#note-form"),
  noteText: $("#note-text"),
  noteAdd: $("#note-add"),
  notesList: $("#notes-list"),
  custEmpty: $("#customer-empty"),
  custFacts: $("#customer-facts"),
  creditText: $("#credit-text"),
};

const st = {
  user: null,
  socket: null,
  services: new Map(),
  stats: new Map(), // service code -> {waiting, oldestAt}
  state: "offline",
  stateSince: Date.now(),
  offer: null, // {call_id, expiresAt, total}
  call: null, // {id, customer, service, acceptedAt, leg, mediaState}
  wrap: null, // {call_id, deadline, customer}
  stream: null,
  kickedOut: false,
};

// ------------------------------------------------------------------ stage
function setStage(stage) {
  document.body.dataset.stage = stage;
  ui.idle.hidden = stage !== "idle";
  ui.offer.hidden = stage !== "offer";
  ui.stageCall.hidden = stage !== "call";
  ui.wrapup.hidden = stage !== "wrapup";
  const inCall = stage === "call";
  ui.noteText.disabled = !inCall;
  ui.noteAdd.disabled = !inCall;
}

function renderIdle() {
  if (st.state === "available") {
    ui.idleTitle.textContent = "Waiting for the next call";
    ui.idleText.textContent = "You are available. Calls for your skills are offered to you here.";
  } else if (st.state === "offline") {
    ui.idleTitle.textContent = "Connecting…";
    ui.idleText.textContent = "Connecting to the hub.";
  } else {
    ui.idleTitle.textContent = "You are away";
    ui.idleText.textContent = "Set yourself available to receive calls.";
  }
}

function setAgentState(m) {
  st.state = m.state;
  st.stateSince = Date.now() - (m.since_s || 0) * 1000;
  document.body.dataset.agentState = m.state;
  ui.statePill.dataset.state = m.state;
  ui.stateName.textContent = STATE_NAMES[m.state] || humanize(m.state);
  ui.avail.setAttribute("aria-pressed", String(m.state === "available"));
  ui.away.setAttribute("aria-pressed", String(m.state === "away"));
  const locked = ["offered", "busy", "wrap_up", "offline"].includes(m.state);
  ui.avail.disabled = locked;
  ui.away.disabled = locked;
  tickState();
  if (m.reason === "missed_offers") {
    showNotice(ui.notice, { kind: "warn", code: "missed", title: "You were set to Away",
      text: "Offers were not answered in time. Set yourself available when you are ready." });
  }
  if (m.state === "wrap_up" && !st.wrap && m.call_id && !(st.call && st.call.id === m.call_id)) {
    st.wrap = { call_id: m.call_id, deadline: null, customer: st.call && st.call.customer };
    endCallMedia();
    showWrapup({ reason: "completed", by: "system" });
  }
  if (st.wrap && m.state !== "wrap_up") {
    if (m.reason === "wrap_up_timeout") {
      showNotice(ui.notice, { kind: "warn", code: "wrap_timeout", title: "Wrap-up time ran out",
        text: "The outcome of the last call was not recorded." });
    }
    st.wrap = null;
  }
  if (m.state === "available" || m.state === "away") {
    if (!st.offer && !st.call && !st.wrap) { renderIdle(); setStage("idle"); }
  }
}

function tickState() {
  ui.stateTime.textContent = fmtDuration((Date.now() - st.stateSince) / 1000);
}

// ------------------------------------------------------------------ queue panel
function renderQueue() {
  let total = 0;
  const now = Date.now();
  const rows = [...st.services.values()].map((s) => {
    const q = st.stats.get(s.code);
    const waiting = q ? q.waiting : 0;
    total += waiting;
    return h("tr", { class: waiting ? "has-waiting" : "", "data-service": s.code },
      h("td", {}, s.name),
      h("td", { class: "num", "data-testid": `queue-waiting-${s.code}` }, String(waiting)),
      h("td", { class: "num" }, waiting ? fmtDuration((now - q.oldestAt) / 1000) : "–"));
  });
  ui.queueRows.replaceChildren(...rows);
  ui.queueTotal.textContent = `${total} waiting`;
}

function applyStats(services) {
  const now = Date.now();
  st.stats = new Map(services.map((s) => [s.service,
    { waiting: s.waiting, oldestAt: now - (s.oldest_wait_s || 0) * 1000 }]));
  renderQueue();
}

// ------------------------------------------------------------------ customer panel
function riskBadge(el, level) {
  el.className = `badge ${level || ""}`;
  el.textContent = level ? `${humanize(level)} risk` : "Risk unknown";
}

function showCustomer(c, service) {
  if (!c) {
    ui.custEmpty.hidden = false;
    ui.custFacts.hidden = true;
    ui.creditText.textContent = "Shown during car-loan interviews.";
    return;
  }
  ui.custEmpty.hidden = true;
  ui.custFacts.hidden = false;
  $("#cust-name").textContent = c.name || "–";
  $("#cust-id").textContent = c.id || "–";
  $("#cust-idn").textContent = c.id_number_masked || "–";
  $("#cust-phone").textContent = c.phone_masked || "–";
  riskBadge($("#cust-risk"), c.risk_level);
  $("#cust-photo").textContent = c.has_reference_photo ? "On file" : "None on file";
  $("#cust-service").textContent = service ? service.name || service.code : "–";
  ui.creditText.textContent = service && service.kind === "loan_interview"
    ? "The credit application will appear here." : "Not applicable for this service.";
}

// ------------------------------------------------------------------ offers
let offerTimer = null;

function showOffer(m) {
  st.offer = { call_id: m.call_id, total: m.expires_in_s, expiresAt: Date.now() + m.expires_in_s * 1000,
    customer: m.customer, service: m.service };
  const c = m.customer || {};
  ui.offerCustomer.textContent = c.name || "Customer";
  ui.offerService.textContent = (m.service && (m.service.name || m.service.code)) || "–";
  riskBadge(ui.offerRisk, c.risk_level);
  ui.offerPriority.hidden = !(m.priority > 0);
  ui.offerPriority.textContent = `Priority ${m.priority}`;
  showCustomer(c, m.service);
  setStage("offer");
  clearInterval(offerTimer);
  const tick = () => {
    if (!st.offer) return clearInterval(offerTimer);
    const left = Math.max(0, (st.offer.expiresAt - Date.now()) / 1000);
    ui.offerCountdown.textContent = String(Math.ceil(left));
    ui.offerBar.style.transform = `scaleX(${st.offer.total ? left / st.offer.total : 0})`;
  };
  tick();
  offerTimer = setInterval(tick, 200);
  ui.accept.disabled = false;
  ui.decline.disabled = false;
  ui.accept.focus();
}

function clearOffer() {
  st.offer = null;
  clearInterval(offerTimer);
}

async function acceptOffer() {
  if (!st.offer) return;
  const offer = st.offer;
  ui.accept.disabled = true;
  ui.decline.disabled = true;
  let reply;
  try {
    reply = await ask(st.socket, "call:accept", { call_id: offer.call_id });
  } catch (e) {
    clearOffer();
    showNotice(ui.notice, { kind: "warn", code: "accept", title: "The call could not be accepted", text: e.message });
    showCustomer(null);
    renderIdle();
    setStage("idle");
    return;
  }
  clearOffer();
  clearNotice(ui.notice);
  document.body.dataset.callId = reply.call_id;
  st.call = { id: reply.call_id, customer: reply.customer, service: offer.service,
    acceptedAt: Date.now(), iceServers: reply.ice_servers || [] };
  showCustomer(reply.customer, offer.service);
  ui.callCustomer.textContent = (reply.customer && reply.customer.name) || "Customer";
  ui.notesList.replaceChildren();
  ui.timer.textContent = "0:00";
  setStage("call");
  ui.hangup.focus();
  startMedia();
}

async function declineOffer() {
  if (!st.offer) return;
  const id = st.offer.call_id;
  clearOffer();
  showCustomer(null);
  renderIdle();
  setStage("idle");
  try { await ask(st.socket, "call:decline", { call_id: id }); } catch { /* already withdrawn */ }
}

// ------------------------------------------------------------------ media
function mediaMessage(title, text, actions = []) {
  if (!title) { ui.mediaMessage.hidden = true; ui.mediaMessage.replaceChildren(); return; }
  ui.mediaMessage.replaceChildren(h("strong", {}, title), h("span", {}, text),
    ...actions.map((a) => h("div", {}, h("button", { type: "button", class: "btn", style: "margin-top:.7rem",
      "data-testid": a.testid, onclick: a.onClick }, a.label))));
  ui.mediaMessage.hidden = false;
}

async function startMedia() {
  const call = st.call;
  if (!call) return;
  if (call.leg) { call.leg.close(); call.leg = null; }
  if (!st.stream) {
    try {
      st.stream = await getLocalMedia();
    } catch (e) {
      const text = e instanceof MediaAccessError ? e.message : String(e);
      showNotice(ui.notice, { kind: "warn", code: "agent_camera", title: "Your camera is not available",
        text: `${text} The customer will not see you, but you can still see and hear them.` });
    }
  }
  if (st.call !== call) return;
  if (st.stream) attachStream(ui.local, st.stream);
  const leg = new MediaLeg({
    socket: st.socket, callId: call.id, localStream: st.stream, iceServers: call.iceServers,
    onRemoteStream: (s) => attachStream(ui.remote, s),
    onState: (state, detail) => {
      if (call.leg !== leg) return;
      call.mediaState = state;
      document.body.dataset.mediaState = state;
      const texts = { negotiating: "Connecting video…", connected: "Video connected",
        reconnecting: "Video interrupted, reconnecting…", unavailable: "Video unavailable",
        failed: "Video failed", closed: "" };
      ui.mediaStateText.textContent = texts[state] ?? state;
      if (state === "negotiating") mediaMessage("Connecting video…", "Setting up the media path through the hub.");
      else if (state === "connected") mediaMessage(null);
      else if (state === "reconnecting") mediaMessage("Video interrupted", "Trying to restore the picture…");
      else if (state === "unavailable") {
        mediaMessage("Video is not available",
          `The hub cannot carry audio and video at the moment (${detail || "media_unavailable"}). The call stays open; end it if you cannot serve the customer.`);
      } else if (state === "failed") {
        mediaMessage("The video connection failed", detail || "",
          [{ label: "Reconnect video", testid: "retry-video", onClick: startMedia }]);
      }
    },
  });
  call.leg = leg;
  leg.start().catch((e) => {
    if (call.leg === leg) mediaMessage("The video connection failed", e.message || "",
      [{ label: "Reconnect video", testid: "retry-video", onClick: startMedia }]);
  });
}

function endCallMedia() {
  if (st.call && st.call.leg) { const l = st.call.leg; st.call.leg = null; l.close(); }
  ui.remote.srcObject = null;
  mediaMessage(null);
  document.body.dataset.mediaState = "closed";
}

async function hangup() {
  if (!st.call) return;
  ui.hangup.disabled = true;
  try {
    await ask(st.socket, "call:hangup", { call_id: st.call.id });
  } catch (e) {
    showNotice(ui.notice, { kind: "warn", code: "hangup", title: "Could not end the call", text: e.message });
  } finally {
    ui.hangup.disabled = false;
  }
}

// ------------------------------------------------------------------ wrap-up
let wrapTimer = null;

function showWrapup(m) {
  const who = END_BY[m.by] || m.by || "the system";
  const name = (st.wrap.customer && st.wrap.customer.name) || "the customer";
  ui.wrapupSummary.textContent = m.reason === "completed"
    ? `The call with ${name} was ended by ${who}. Record the outcome.`
    : `The call with ${name} ended (${humanize(m.reason)}). Record the outcome.`;
  $("#wrapup-outcome").value = m.by === "system" && m.reason !== "completed" ? "customer_left" : "resolved";
  $("#wrapup-notes").value = "";
  clearNotice(ui.wrapupNotice);
  setStage("wrapup");
  clearInterval(wrapTimer);
  const tick = () => {
    if (!st.wrap || !st.wrap.deadline) { ui.wrapupLeft.textContent = "Wrap-up"; return; }
    ui.wrapupLeft.textContent = `${fmtDuration(Math.max(0, (st.wrap.deadline - Date.now()) / 1000))} left`;
  };
  tick();
  wrapTimer = setInterval(tick, 500);
  $("#wrapup-outcome").focus();
}

async function submitWrapup(ev) {
  ev.preventDefault();
  if (!st.wrap) return;
  const btn = $("#wrapup-submit");
  btn.disabled = true;
  try {
    await ask(st.socket, "call:wrapup", { call_id: st.wrap.call_id, outcome: $("#wrapup-outcome").value,
      notes: $("#wrapup-notes").value, then: $("#wrapup-then").value });
    st.wrap = null;
    clearInterval(wrapTimer);
    showCustomer(null);
    ui.notesList.replaceChildren();
    renderIdle();
    setStage("idle");
  } catch (e) {
    if (e.code === "no_wrap_up") {
      st.wrap = null;
      showNotice(ui.notice, { kind: "warn", code: "wrap_timeout", title: "Wrap-up time ran out",
        text: "The outcome of the last call was not recorded." });
      showCustomer(null);
      renderIdle();
      setStage("idle");
    } else {
      showNotice(ui.wrapupNotice, { kind: "error", text: e.message, code: e.code });
    }
  } finally {
    btn.disabled = false;
  }
}

// ------------------------------------------------------------------ notes
async function addNote(ev) {
  ev.preventDefault();
  const text = ui.noteText.value.trim();
  if (!text || !st.call) return;
  ui.noteAdd.disabled = true;
  try {
    await ask(st.socket, "call:note", { call_id: st.call.id, text });
    const at = new Date();
    ui.notesList.append(h("li", {}, h("time", { datetime: at.toISOString() }, at.toLocaleTimeString()),
      h("span", {}, text)));
    ui.noteText.value = "";
  } catch (e) {
    showNotice(ui.notice, { kind: "warn", code: "note", title: "The note was not saved", text: e.message });
  } finally {
    ui.noteAdd.disabled = !st.call;
  }
}

// ------------------------------------------------------------------ socket
function connect() {
  const socket = connectSocket("/agent");
  st.socket = socket;
  socket.on("connect", async () => {
    clearNotice(ui.notice, "connection_lost");
    try {
      const snap = await ask(socket, "queue:snapshot", {});
      applyStats(snap.services || []);
    } catch { /* the next queue:stats fills it */ }
  });
  socket.on("disconnect", (reason) => {
    if (reason === "io client disconnect" || st.kickedOut) return;
    setAgentState({ state: "offline", since_s: 0 });
    if (st.call) { endCallMedia(); st.call = null; setStage("idle"); showCustomer(null); }
    clearOffer();
    showNotice(ui.notice, { kind: "warn", code: "connection_lost", title: "Connection lost",
      text: "Reconnecting… Calls in progress go back to the queue." });
  });
  socket.on("connect_error", async (err) => {
    const code = err && err.data && err.data.code;
    if (["unauthenticated", "token_expired", "wrong_role", "account_disabled", "invalid_token"].includes(code)) {
      socket.disconnect();
      st.user = await signIn(["agent"], { reason: code === "wrong_role"
        ? "This account cannot use the agent console." : "Your session has expired. Please sign in again." });
      connect();
      return;
    }
    showNotice(ui.notice, { kind: "warn", code: "connection_lost", title: "Hub unreachable",
      text: "Retrying automatically…" });
  });
  socket.on("agent:state", setAgentState);
  socket.on("queue:stats", (m) => applyStats(m.services || []));
  socket.on("call:offer", showOffer);
  socket.on("call:offer_withdrawn", (m) => {
    if (!st.offer || st.offer.call_id !== m.call_id) return;
    clearOffer();
    showCustomer(null);
    const why = { missed: "The offer timed out.", customer_disconnected: "The customer lost their connection.",
      abandoned: "The customer left the queue.", declined: "You declined the call." }[m.reason] || humanize(m.reason);
    if (m.reason !== "declined") {
      showNotice(ui.notice, { kind: "info", code: "withdrawn", title: "Offer withdrawn", text: why });
    }
    renderIdle();
    setStage("idle");
  });
  socket.on("call:ended", (m) => {
    if (st.offer && st.offer.call_id === m.call_id) { clearOffer(); renderIdle(); setStage("idle"); return; }
    const customer = st.call && st.call.id === m.call_id ? st.call.customer : null;
    endCallMedia();
    st.call = null;
    if (customer || (st.wrap && st.wrap.call_id === m.call_id) || st.state === "wrap_up") {
      st.wrap = { call_id: m.call_id, customer: customer || (st.wrap && st.wrap.customer),
        deadline: m.wrap_up_s ? Date.now() + m.wrap_up_s * 1000 : null };
      showWrapup(m);
    }
  });
  socket.on("session:replaced", () => {
    st.kickedOut = true;
    endCallMedia();
    setAgentState({ state: "offline", since_s: 0 });
    showNotice(ui.notice, { kind: "error", code: "replaced", title: "Console opened elsewhere",
      text: "You signed in to the console in another window. This one is now disconnected.",
      actions: [{ label: "Use this window", testid: "reconnect-button", onClick: () => location.reload() }] });
  });
}

async function setStatus(status) {
  try {
    await ask(st.socket, "agent:status", { status });
  } catch (e) {
    showNotice(ui.notice, { kind: "warn", code: "status", title: "Status not changed", text: e.message });
  }
}

function toggle(button, kind, labels) {
  const off = button.getAttribute("aria-pressed") !== "true";
  setTracksEnabled(st.stream, kind, !off);
  button.setAttribute("aria-pressed", String(off));
  button.textContent = off ? labels[1] : labels[0];
}

// ------------------------------------------------------------------ start
ui.avail.addEventListener("click", () => setStatus("available"));
ui.away.addEventListener("click", () => setStatus("away"));
ui.accept.addEventListener("click", acceptOffer);
ui.decline.addEventListener("click", declineOffer);
ui.hangup.addEventListener("click", hangup);
ui.mute.addEventListener("click", () => toggle(ui.mute, "audio", ["Mute", "Unmute"]));
ui.camera.addEventListener("click", () => toggle(ui.camera, "video", ["Camera off", "Camera on"]));
ui.wrapup.addEventListener("submit", submitWrapup);
ui.noteForm.addEventListener("submit", addNote);
$("#logout-button").addEventListener("click", signOut);
document.addEventListener("keydown", (ev) => {
  if (document.body.dataset.stage === "offer" && ev.key === "Escape") declineOffer();
});
setInterval(() => {
  tickState();
  if (st.stats.size) renderQueue();
  if (st.call) ui.timer.textContent = fmtDuration((Date.now() - st.call.acceptedAt) / 1000);
}, 1000);

async function main() {
  setStage("idle");
  renderIdle();
  st.user = await signIn(["agent"]);
  ui.who.textContent = st.user.display_name || st.user.username;
  ui.skills.replaceChildren(...(st.user.skills || []).map((s) => h("span", { class: "badge" }, humanize(s))));
  try {
    const { services } = await api("/api/services");
    st.services = new Map(services.map((s) => [s.code, s]));
  } catch { /* the queue panel shows what the stats name */ }
  renderQueue();
  connect();
}

main();

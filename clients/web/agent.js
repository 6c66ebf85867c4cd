// Agent console: status, live queue, offers, the call with the customer, notes and wrap-up.
import {
  $, ask, clearNotice, connectSocket, fmtDuration, h, humanize, showNotice, api,
} from "./common.js";
import { signIn, signOut } from "./login.js";
import { refreshSession } from "./common.js";
import {
  CHECK_ERRORS, FAIL_REASONS, IDENTITY, LIVENESS, PAD, PAD_CUES, SIGNALS, actionIcon, actionLabel,
  evidenceThumb, evidenceViewer, fmtDistance, mark, signalTitle, stepOf,
} from "./checks.js";
import {
  MediaAccessError, MediaLeg, attachStream, getLocalMedia, setTracksEnabled, showMediaMessage,
} from "./media.js";
import { WRAPUP_ERRORS, createFlowUi } from "./flow.js";
import { createCreditUi } from "./credit.js";

const flowUi = createFlowUi();
const creditUi = createCreditUi();

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
  checkIdentity: $("#check-identity"),
  checkLiveness: $("#check-liveness"),
  checksHint: $("#checks-hint"),
  checksAuto: $("#checks-auto"),
  checkNotice: $("#check-notice"),
  identityRow: $("[data-check=identity]"),
  identityState: $("#identity-state"),
  identityBody: $("#identity-body"),
  livenessRow: $("[data-check=liveness]"),
  livenessState: $("#liveness-state"),
  lpBox: $("#liveness-progress"),
  lpIcon: $("#lp-icon-slot"),
  lpStep: $("#lp-step"),
  lpPrompt: $("#lp-prompt"),
  lpSeconds: $("#lp-seconds"),
  lpBar: $("#lp-bar"),
  lpSteps: $("#lp-steps"),
  livenessResult: $("#liveness-result"),
  alerts: $("#analysis-alerts"),
  alertTitle: $("#alert-title"),
  alertText: $("#alert-text"),
  alertVerify: $("#alert-verify"),
  alertHistory: $("#alert-history"),
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

function isLead() { return Boolean(st.user && st.user.role === "lead"); }

function renderIdle() {
  if (isLead() && st.state !== "offline") {
    ui.idleTitle.textContent = "Team lead console";
    ui.idleText.textContent = "This console is never offered calls. It carries the calls you take over " +
      "from the wallboard when their agent's connection drops.";
  } else if (st.state === "available") {
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
  ui.avail.disabled = locked || isLead();  // a lead's console is never routed a call
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
    st.wrap = null; flowUi.clear();
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
    resetChecks(null);
    ui.custEmpty.hidden = false;
    ui.custFacts.hidden = true;
    ui.creditText.textContent = "Shown during car-loan interviews.";
    creditUi.clear();
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
  beginCall(reply, offer.service);
}

/** Start a call just answered (accepted, or taken over by a lead). */
function beginCall(reply, service) {
  clearNotice(ui.notice);
  document.body.dataset.callId = reply.call_id;
  st.call = { id: reply.call_id, customer: reply.customer, service: service,
    acceptedAt: Date.now(), iceServers: reply.ice_servers || [] };
  showCustomer(reply.customer, service);
  ui.callCustomer.textContent = (reply.customer && reply.customer.name) || "Customer";
  ui.notesList.replaceChildren();
  ui.timer.textContent = "0:00";
  setStage("call");
  resetChecks(st.call);
  flowUi.start(st.socket, reply.call_id, reply.flow);
  creditUi.start(st.socket, reply.call_id, service);
  ui.hangup.focus();
  startMedia();
}

/** A team lead takes over the call named in the page's address (?takeover=<call id>),
 * opened from the wallboard (protocol 1.5). */
async function takeOverFromAddress() {
  const params = new URLSearchParams(location.search);
  const callId = params.get("takeover");
  if (!callId || !isLead() || st.call || st.wrap) return;
  params.delete("takeover");
  history.replaceState(null, "", location.pathname + (params.size ? `?${params}` : ""));
  let reply;
  try {
    reply = await ask(st.socket, "call:take_over", { call_id: callId });
  } catch (e) {
    showNotice(ui.notice, { kind: "warn", code: "take_over", title: "The call could not be taken over",
      text: e.message });
    return;
  }
  document.body.dataset.takenOver = reply.call_id;
  beginCall(reply, reply.service);
  showNotice(ui.notice, { kind: "info", code: "taken_over", title: "You took over this call",
    text: "Its agent's connection dropped. The customer has been told who serves them now." });
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
  showMediaMessage(ui.mediaMessage, title, text, actions);
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
      checksMediaState();
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

/** The hub's media health news (call:media): a participant's media stopped reaching the
 *  hub, or flows again. The hub asks that participant's app to reconnect its video. */
function onMediaNews(m) {
  if (!st.call || st.call.id !== m.call_id) return;
  document.body.dataset.mediaHealth = `${m.participant}:${m.state}`;
  if (m.state === "stalled" && m.participant === "customer") {
    mediaMessage("The customer's video is not reaching the hub",
      "Their app is reconnecting the video. If it does not come back, ask them to check their connection.");
  } else if (m.state === "stalled") {
    mediaMessage("Your video is not reaching the hub", "Reconnecting your video…");
  } else if (m.state === "flowing" && mediaConnected()) {
    mediaMessage(null);
  }
}

function mediaConnected() {
  return st.call && st.call.mediaState === "connected";
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


// ------------------------------------------------------------------ identity and liveness checks
// The hub runs the analysis; the console asks for checks (check:identity, check:liveness) and
// shows what comes back (check:progress, check:result, analysis:alert). Checks a service runs
// automatically arrive the same way, without a request from here.
const openEvidence = evidenceViewer();
const STATE_TEXT = { idle: "Not started", waiting: "Automatic",
  requesting: "Starting…", running: "Checking…", interrupted: "Interrupted", stalled: "No result yet" };

const chk = {
  callId: null,
  acceptedAt: 0,
  auto: [],
  identity: null,
  liveness: null,
  alerts: [], // [{signal, at, resolved}]
  signal: "none",
};

function freshCheck(kind) {
  const auto = chk.auto.includes(kind);
  return { state: auto ? "waiting" : "idle", auto, checkId: null, result: null, watchdog: null,
    autoTimer: null, note: "", challenges: [], progress: null, deadline: 0, requestedIds: new Set() };
}

/** A new call (or none): forget the previous results. */
function resetChecks(call) {
  for (const c of [chk.identity, chk.liveness]) if (c) { clearTimeout(c.watchdog); clearTimeout(c.autoTimer); }
  const svc = call && call.service && (st.services.get(call.service.code) || call.service);
  chk.callId = call ? call.id : null;
  chk.acceptedAt = call ? call.acceptedAt : 0;
  chk.auto = (svc && Array.isArray(svc.auto_checks)) ? svc.auto_checks : [];
  chk.identity = freshCheck("identity");
  chk.liveness = freshCheck("liveness");
  if (call && call.customer && call.customer.has_reference_photo === false) {
    chk.identity.state = "idle";
    chk.identity.note = "No reference photo on file for this customer, so the face cannot be compared.";
  }
  chk.alerts = [];
  chk.signal = "none";
  ui.checksAuto.hidden = !(call && chk.auto.length);
  ui.checksAuto.textContent = `Automatic: ${chk.auto.map((k) => (k === "identity" ? "identity" : "liveness")).join(" + ")}`;
  clearNotice(ui.checkNotice);
  renderIdentity();
  renderLiveness();
  renderAlerts();
  updateCheckButtons();
}

function inCallForChecks() {
  return !!(st.call && st.call.id === chk.callId);
}

function updateCheckButtons() {
  const live = inCallForChecks();
  const busy = (c) => c && ["requesting", "running"].includes(c.state);
  ui.checkIdentity.disabled = !live || busy(chk.identity);
  ui.checkLiveness.disabled = !live || busy(chk.liveness);
  const noPhoto = live && st.call.customer && st.call.customer.has_reference_photo === false;
  ui.checksHint.textContent = !live ? "Available during a call."
    : noPhoto ? "No reference photo on file: identity cannot be compared."
      : "Results appear below and go on the call record.";
  ui.checksHint.dataset.kind = noPhoto ? "warn" : "";
}

function setRowState(row, stateEl, c, text) {
  row.dataset.state = c.result ? "done" : c.state;
  row.dataset.auto = String(!!c.auto);
  stateEl.textContent = text;
}

/** Keep a row from spinning forever if its result never comes. */
function watch(c, seconds) {
  clearTimeout(c.watchdog);
  const id = c.checkId;
  c.watchdog = setTimeout(() => {
    if (c.state !== "running" || c.checkId !== id) return;
    c.state = "stalled";
    renderIdentity();
    renderLiveness();
    updateCheckButtons();
  }, seconds * 1000);
}

function whenText(m) {
  const at = Date.parse(m.at);
  if (Number.isNaN(at)) return "";
  const t = new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return chk.acceptedAt ? `${t} · ${fmtDuration((at - chk.acceptedAt) / 1000)} into the call` : t;
}

function renderIdentity() {
  const c = chk.identity;
  const row = ui.identityRow;
  if (!c.result) {
    const text = c.state === "waiting" && inCallForChecks() && st.call.mediaState === "connected"
      ? "Automatic…" : STATE_TEXT[c.state] || c.state;
    setRowState(row, ui.identityState, c, text);
    row.dataset.verdict = "";
    row.dataset.requested = "";
    row.dataset.checkId = c.checkId || "";
    const note = c.state === "stalled" ? "The hub has not sent a result. You can start the check again." : c.note;
    ui.identityBody.replaceChildren(note ? h("p", { class: "small muted check-msg" }, note) : "");
    return;
  }
  const m = c.result;
  const v = IDENTITY[m.verdict] || { label: m.verdict ? humanize(m.verdict) : "Not completed", tone: "warn",
    text: (m.details && m.details.reason) ? humanize(m.details.reason) : "The check could not be completed." };
  setRowState(row, ui.identityState, c, "");
  ui.identityState.replaceChildren(h("span", { class: "verdict", "data-tone": v.tone, "data-testid": "identity-verdict" }, v.label));
  row.dataset.verdict = m.verdict || "";
  row.dataset.checkId = m.check_id || "";
  row.dataset.requested = String(c.requestedIds.has(m.check_id));
  const d = m.details || {};
  const figures = [];
  if (typeof d.distance === "number" && typeof d.threshold === "number") {
    const scale = Math.max(1, d.distance * 1.15, d.threshold * 1.6);
    const pct = (x) => `${Math.min(100, Math.max(0, (x / scale) * 100)).toFixed(1)}%`;
    figures.push(h("div", { class: "distance-meter", "data-tone": d.distance <= d.threshold ? "ok" : "bad",
      style: `--threshold:${pct(d.threshold)};--distance:${pct(d.distance)}`, "aria-hidden": "true" },
    h("span", { class: "tick" }), h("span", { class: "value" })),
    h("p", { class: "small figures" },
      h("span", { "data-testid": "identity-distance" }, `Distance ${fmtDistance(d.distance)}`),
      h("span", { class: "muted" }, ` · threshold ${fmtDistance(d.threshold)}`),
      h("span", { class: "muted" }, d.distance <= d.threshold ? " (within)" : " (above)"),
      typeof d.frames === "number" && d.frames > 1
        ? h("span", { class: "muted", "data-testid": "identity-frames" }, ` · median of ${d.frames} frames`) : null));
  }
  figures.push(h("p", { class: "small check-msg" }, v.text));
  figures.push(h("p", { class: "small muted when" }, [sourceText(c, m), whenText(m)].filter(Boolean).join(" · ")));
  ui.identityBody.replaceChildren(h("div", { class: "result-grid" },
    h("div", { class: "result-text" }, figures),
    m.evidence_url ? evidenceThumb(m.evidence_url, "Frame used for the identity check", openEvidence, "identity-evidence") : null));
}

function renderLiveness() {
  const c = chk.liveness;
  const row = ui.livenessRow;
  const running = c.state === "running" && !c.result;
  const warmup = running && !c.progress && c.challenges.some(Boolean);
  ui.lpBox.hidden = !running || !(c.progress || warmup);
  if (!c.result) {
    const text = running ? (c.progress ? "In progress" : "Starting…")
      : c.state === "waiting" && inCallForChecks() && st.call.mediaState === "connected"
        ? "Automatic, next" : STATE_TEXT[c.state] || c.state;
    setRowState(row, ui.livenessState, c, text);
    row.dataset.verdict = "";
    row.dataset.requested = "";
    row.dataset.checkId = c.checkId || "";
    const note = c.state === "stalled" ? "The hub has not sent a result. You can start the check again." : c.note;
    ui.livenessResult.hidden = !note || running;
    ui.livenessResult.replaceChildren(note && !running ? h("p", { class: "small muted check-msg" }, note) : "");
    if (running && c.progress) renderProgress();
    else if (warmup) renderWarmup();
    return;
  }
  const m = c.result;
  const v = LIVENESS[m.verdict] || { label: humanize(m.verdict || "not completed"), tone: "warn" };
  setRowState(row, ui.livenessState, c, "");
  ui.livenessState.replaceChildren(h("span", { class: "verdict", "data-tone": v.tone, "data-testid": "liveness-verdict" }, v.label));
  row.dataset.verdict = m.verdict || "";
  row.dataset.checkId = m.check_id || "";
  row.dataset.requested = String(c.requestedIds.has(m.check_id));
  const d = m.details || {};
  const list = Array.isArray(d.challenges) ? d.challenges : [];
  const passed = list.filter((x) => x.passed).length;
  ui.livenessResult.dataset.verdict = m.verdict || "";
  ui.livenessResult.replaceChildren(h("div", { class: "result-grid" },
    h("div", { class: "result-text" },
      list.length ? h("p", { class: "small" }, `${passed} of ${list.length} actions seen in time`) : null,
      h("ul", { class: "lv-challenges", "data-testid": "liveness-challenges" }, list.map((x) =>
        h("li", { "data-passed": String(!!x.passed), "data-action": x.action },
          mark(x.passed ? "ok" : "bad"), actionIcon(x.action, "tiny"),
          h("span", { class: "lv-name" }, actionLabel(x.action)),
          h("span", { class: "lv-when muted num" }, x.passed
            ? (typeof x.seen_at_s === "number" ? `${x.seen_at_s.toFixed(1)} s` : "")
            : ""),
          h("span", { class: "visually-hidden" }, x.passed ? ": seen" : ": not seen")))),
      m.verdict !== "pass" && d.reason ? h("p", { class: "small check-msg" }, FAIL_REASONS[d.reason] || humanize(d.reason)) : null,
      padLine(d.pad),
      h("p", { class: "small muted when" }, [sourceText(c, m), whenText(m)].filter(Boolean).join(" · "))),
    m.evidence_url ? evidenceThumb(m.evidence_url, "Frame from the liveness check", openEvidence, "liveness-evidence") : null,
    d.pad && d.pad.evidence_url ? evidenceThumb(d.pad.evidence_url, "Frame with the strongest screen or print cue", openEvidence, "pad-evidence") : null));
  ui.livenessResult.hidden = false;
}

/** The presentation-attack verdict of a liveness result (details.pad), if the hub sent one. */
function padLine(pad) {
  if (!pad || !pad.verdict) return null;
  const v = PAD[pad.verdict] || { label: humanize(pad.verdict), tone: "warn" };
  const cues = Array.isArray(pad.cues) ? pad.cues.map((k) => PAD_CUES[k] || humanize(k)) : [];
  return h("p", { class: "small pad-line", "data-testid": "liveness-pad", "data-verdict": pad.verdict },
    h("span", { class: "verdict", "data-tone": v.tone }, v.label),
    cues.length ? h("span", { class: "muted" }, `: ${cues.join(", ")}`) : null);
}

function renderProgress() {
  const c = chk.liveness;
  const p = c.progress;
  const total = p.total || c.challenges.length;
  ui.lpBox.dataset.action = p.action;
  ui.lpBox.dataset.index = String(p.index);
  if (ui.lpIcon.firstChild?.dataset?.action !== p.action) ui.lpIcon.replaceChildren(actionIcon(p.action, "animate"));
  ui.lpStep.textContent = stepOf(p.index, total);
  ui.lpPrompt.textContent = p.prompt || actionLabel(p.action);
  const actions = c.challenges.length ? c.challenges : Array.from({ length: total }, (_, i) => (i === p.index ? p.action : null));
  ui.lpSteps.replaceChildren(...actions.map((a, i) => {
    const state = i < p.index ? "done" : i === p.index ? "current" : "next";
    return h("li", { "data-state": state, "aria-current": state === "current" ? "step" : null },
      state === "done" ? mark("ok") : h("span", { class: "step-num", "aria-hidden": "true" }, String(i + 1)),
      h("span", {}, a ? actionLabel(a) : "…"));
  }));
  tickProgress();
}

/** Between the ack and the first challenge (the hub warms up for about a second). */
function renderWarmup() {
  const c = chk.liveness;
  ui.lpBox.dataset.action = "";
  ui.lpBox.dataset.index = "";
  ui.lpIcon.replaceChildren(actionIcon("generic"));
  ui.lpStep.textContent = "Getting ready";
  ui.lpPrompt.textContent = "The first challenge opens in a moment";
  ui.lpSeconds.textContent = "";
  ui.lpBar.style.transform = "scaleX(1)";
  ui.lpSteps.replaceChildren(...c.challenges.map((a, i) => h("li", { "data-state": "next" },
    h("span", { class: "step-num", "aria-hidden": "true" }, String(i + 1)), h("span", {}, a ? actionLabel(a) : "…"))));
}

function tickProgress() {
  const c = chk.liveness;
  if (!c || !c.progress || c.result || c.state !== "running") return;
  const left = Math.max(0, (c.deadline - Date.now()) / 1000);
  ui.lpSeconds.textContent = `${Math.ceil(left)} s`;
  const total = c.progress.expires_in_s || 1;
  ui.lpBar.style.transform = `scaleX(${Math.min(1, left / total)})`;
}

function sourceText(c, m) {
  if (c.requestedIds.has(m.check_id)) return "Requested by you";
  return c.auto ? "Automatic for this service" : "Started by the hub";
}

function renderAny(kind) {
  if (kind === "identity") renderIdentity(); else renderLiveness();
}

function showCheckError(e) {
  const known = CHECK_ERRORS[e.code];
  showNotice(ui.checkNotice, { kind: e.code === "check_running" ? "info" : "warn", code: e.code,
    title: known ? known.title : "The check could not be started",
    text: known ? known.text : e.message });
}

async function requestCheck(kind) {
  if (!inCallForChecks()) return;
  const c = kind === "identity" ? chk.identity : chk.liveness;
  const callId = chk.callId;
  clearNotice(ui.checkNotice);
  clearTimeout(c.autoTimer);
  c.note = "";
  const before = { state: c.state, result: c.result, checkId: c.checkId, challenges: c.challenges };
  Object.assign(c, { state: "requesting", result: null, progress: null, checkId: null, challenges: [] });
  renderAny(kind);
  updateCheckButtons();
  try {
    const ack = await ask(st.socket, `check:${kind}`, { call_id: callId });
    if (chk.callId !== callId) return;
    c.requestedIds.add(ack.check_id);
    if (c.result && c.checkId === ack.check_id) { renderAny(kind); return; } // result before ack
    c.checkId = ack.check_id;
    if (c.state === "requesting") c.state = "running";
    if (kind === "liveness") {
      c.challenges = Array.isArray(ack.challenges) ? ack.challenges : [];
      watch(c, 15 + 10 * Math.max(3, c.challenges.length));
    } else {
      watch(c, 30);
    }
  } catch (e) {
    if (chk.callId !== callId) return;
    if (c.state === "requesting") { // nothing arrived meanwhile: back to what was shown
      Object.assign(c, before, { state: before.result ? "done" : (before.state === "waiting" ? "waiting" : "idle") });
      if (e.code === "check_running" && !before.result) { c.state = "running"; watch(c, 40); }
    }
    showCheckError(e);
  }
  renderAny(kind);
  updateCheckButtons();
}

function onCheckProgress(m) {
  if (m.call_id !== chk.callId || (m.kind && m.kind !== "liveness")) return;
  const c = chk.liveness;
  if (c.checkId !== m.check_id) {
    // a check this console did not start (automatic), or the progress came before the ack
    c.challenges = [];
    c.result = null;
    c.checkId = m.check_id;
  }
  clearTimeout(c.autoTimer);
  c.note = "";
  c.state = "running";
  c.progress = m;
  c.deadline = Date.now() + (m.expires_in_s || 0) * 1000;
  if (c.challenges.length < (m.total || 0)) {
    c.challenges = Array.from({ length: m.total }, (_, i) => c.challenges[i] || null);
  }
  c.challenges[m.index] = m.action;
  watch(c, (m.expires_in_s || 5) + 20);
  renderLiveness();
  updateCheckButtons();
}

function onCheckResult(m) {
  if (m.call_id !== chk.callId) return;
  const c = m.kind === "identity" ? chk.identity : m.kind === "liveness" ? chk.liveness : null;
  if (!c) return;
  clearTimeout(c.watchdog);
  clearTimeout(c.autoTimer);
  c.note = "";
  c.checkId = m.check_id;
  c.result = m;
  if (m.kind === "identity") armAutoWatch("liveness", 30); // the next automatic check follows
  c.state = "done";
  c.progress = null;
  renderAny(m.kind);
  updateCheckButtons();
}

// alerts: the current face signal, prominent; earlier problems listed beside it
function onAnalysisAlert(m) {
  if (m.call_id !== chk.callId || !m.signal) return;
  chk.signal = m.signal;
  if (m.signal === "face_ok") {
    for (const a of chk.alerts) a.resolved = true;
  } else {
    const last = chk.alerts[chk.alerts.length - 1];
    if (!(last && last.signal === m.signal && !last.resolved)) chk.alerts.push({ signal: m.signal, at: m.at, resolved: false });
    if (chk.alerts.length > 8) chk.alerts.splice(0, chk.alerts.length - 8);
  }
  renderAlerts();
}

function renderAlerts() {
  const sig = chk.signal;
  const info = SIGNALS[sig];
  ui.alerts.dataset.signal = sig;
  ui.alerts.dataset.tone = info ? info.tone : "none";
  document.body.dataset.faceSignal = sig;
  const hadProblem = chk.alerts.length > 0;
  if (sig === "none" || !info) {
    ui.alertTitle.textContent = "Face monitoring";
    ui.alertText.textContent = "Alerts appear here if the face leaves the picture, someone else appears, or the face changes.";
  } else if (sig === "face_ok") {
    ui.alertTitle.textContent = hadProblem ? "Face back in view" : info.title;
    ui.alertText.textContent = hadProblem ? "One face, as expected. Earlier alerts stay listed for this call." : info.text;
  } else {
    const current = chk.alerts[chk.alerts.length - 1];
    const since = current && alertOffset(current);
    ui.alertTitle.textContent = since ? `${info.title} · since ${since}` : info.title;
    ui.alertText.textContent = info.text;
  }
  const changed = chk.alerts.some((a) => a.signal === "face_changed");
  ui.alertVerify.hidden = !(changed && inCallForChecks());
  // earlier alerts of this call (the current one is in the title)
  const earlier = chk.alerts.filter((a, i) => a.resolved || i < chk.alerts.length - 1);
  ui.alertHistory.hidden = earlier.length === 0;
  ui.alertHistory.replaceChildren(...earlier.map((a) => h("li", { "data-signal": a.signal,
    "data-resolved": String(a.resolved) }, h("span", { class: "num" }, alertOffset(a)), " ", signalTitle(a.signal))));
}

function alertOffset(a) {
  const at = Date.parse(a.at);
  return !Number.isNaN(at) && chk.acceptedAt ? fmtDuration((at - chk.acceptedAt) / 1000) : "";
}

/** The call ended: no new checks; a check still running is reported as interrupted unless
 * its result follows shortly. */
function checksCallEnded(callId) {
  if (callId !== chk.callId) return;
  updateCheckButtons();
  renderAlerts();
  for (const [kind, c] of [["identity", chk.identity], ["liveness", chk.liveness]]) {
    if (c.state === "waiting") { c.state = "idle"; renderAny(kind); }
    if (!["running", "requesting"].includes(c.state)) continue;
    clearTimeout(c.watchdog);
    c.watchdog = setTimeout(() => {
      if (chk.callId !== callId || c.result) return;
      c.state = "interrupted";
      c.progress = null;
      renderAny(kind);
    }, 5000);
  }
}

/**
 * Automatic checks run one after the other once the video arrives, and the hub announces
 * nothing until their first progress or result; one that never reports (skipped by the hub)
 * falls back to "not started" so the agent can run it by hand.
 */
function armAutoWatch(kind, seconds) {
  const c = kind === "identity" ? chk.identity : chk.liveness;
  if (!c || c.state !== "waiting") return;
  clearTimeout(c.autoTimer);
  const callId = chk.callId;
  c.autoTimer = setTimeout(() => {
    if (chk.callId !== callId || c.state !== "waiting") return;
    c.state = "idle";
    c.note = "The automatic check did not start. Run it yourself if you need it.";
    renderAny(kind);
  }, seconds * 1000);
}

function checksMediaState() {
  if (!chk.identity) return;
  if (inCallForChecks() && st.call.mediaState === "connected") {
    if (!chk.identity.autoTimer) armAutoWatch("identity", 30);
    if (!chk.liveness.autoTimer) armAutoWatch("liveness", chk.identity.state === "waiting" ? 60 : 30);
  }
  renderIdentity();
  renderLiveness();
}

ui.checkIdentity.addEventListener("click", () => requestCheck("identity"));
ui.checkLiveness.addEventListener("click", () => requestCheck("liveness"));
ui.alertVerify.addEventListener("click", () => requestCheck("identity"));
resetChecks(null);

// ------------------------------------------------------------------ wrap-up
let wrapTimer = null;

function showWrapup(m) {
  const who = END_BY[m.by] || m.by || "the system";
  const name = (st.wrap.customer && st.wrap.customer.name) || "the customer";
  ui.wrapupSummary.textContent = m.reason === "completed"
    ? `The call with ${name} was ended by ${who}. Record the outcome.`
    : `The call with ${name} ended (${humanize(m.reason)}). Record the outcome.`;
  const info = flowUi.wrapupInfo(st.wrap && st.wrap.call_id);
  $("#wrapup-outcome").value = m.by === "system" && m.reason !== "completed" ? "customer_left"
    : !info || info.resolvable ? "resolved" : info.level === "block" ? "fraud_suspected" : "unresolved";
  $("#wrapup-notes").value = "";
  $("#wrapup-skip-reason").value = "";
  renderWrapupFlow();
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

/** The wrap-up form says what resolving needs: open required steps (with a reason to skip
 * them), the risk level and the team lead's approval. */
function renderWrapupFlow() {
  const info = flowUi.wrapupInfo(st.wrap && st.wrap.call_id);
  const resolved = $("#wrapup-outcome").value === "resolved";
  const open = info ? info.openRequired : [];
  $("#wrapup-skip").hidden = !(resolved && open.length && !(info && info.declined));
  $("#wrapup-open-steps").textContent = open.length ? `Open: ${open.join(", ")}.` : "";
  const risk = $("#wrapup-risk");
  risk.hidden = !info || !info.risk;
  if (info && info.risk) {
    risk.textContent = `Risk ${humanize(info.level)} (score ${info.risk.score})`
      + (info.declined ? " · the customer did not confirm" : "")
      + (info.level === "high" ? (info.approvalValid ? " · approved by a team lead" : " · resolving needs a team lead's approval") : "")
      + (info.level === "block" ? " · cannot be resolved" : "");
  }
}

async function submitWrapup(ev) {
  ev.preventDefault();
  if (!st.wrap) return;
  const btn = $("#wrapup-submit");
  btn.disabled = true;
  const payload = { call_id: st.wrap.call_id, outcome: $("#wrapup-outcome").value,
    notes: $("#wrapup-notes").value, then: $("#wrapup-then").value };
  const skip = $("#wrapup-skip-reason").value.trim();
  if (payload.outcome === "resolved" && !$("#wrapup-skip").hidden && skip) payload.skip_reason = skip;
  try {
    await ask(st.socket, "call:wrapup", payload);
    st.wrap = null;
    flowUi.clear();
    creditUi.clear();
    clearInterval(wrapTimer);
    showCustomer(null);
    ui.notesList.replaceChildren();
    renderIdle();
    setStage("idle");
  } catch (e) {
    if (e.code === "no_wrap_up") {
      st.wrap = null; flowUi.clear(); creditUi.clear();
      showNotice(ui.notice, { kind: "warn", code: "wrap_timeout", title: "Wrap-up time ran out",
        text: "The outcome of the last call was not recorded." });
      showCustomer(null);
      renderIdle();
      setStage("idle");
    } else {
      showNotice(ui.wrapupNotice, { kind: "error", text: WRAPUP_ERRORS[e.code] || e.message, code: e.code });
      if (e.code === "steps_incomplete") { $("#wrapup-skip").hidden = false; $("#wrapup-skip-reason").focus(); }
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
    if (code === "token_expired" && await refreshSession()) { socket.connect(); return; }
    if (["unauthenticated", "session_revoked", "session_expired", "token_expired", "wrong_role", "account_disabled", "invalid_token"].includes(code)) {
      socket.disconnect();
      st.user = await signIn(["agent", "lead"], { reason: code === "wrong_role"
        ? "This account cannot use the agent console." : "Your session has expired. Please sign in again." });
      connect();
      return;
    }
    showNotice(ui.notice, { kind: "warn", code: "connection_lost", title: "Hub unreachable",
      text: "Retrying automatically…" });
  });
  socket.on("agent:state", (m) => { setAgentState(m); if (m.reason === "signed_in") takeOverFromAddress(); });
  socket.on("queue:stats", (m) => applyStats(m.services || []));
  socket.on("call:offer", showOffer);
  socket.on("call:offer_withdrawn", (m) => {
    if (!st.offer || st.offer.call_id !== m.call_id) return;
    clearOffer();
    showCustomer(null);
    const why = { missed: "The offer timed out.", customer_disconnected: "The customer lost their connection.",
      taken_over: "A team lead took the call over.",
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
    checksCallEnded(m.call_id);
    if (customer || (st.wrap && st.wrap.call_id === m.call_id) || st.state === "wrap_up") {
      st.wrap = { call_id: m.call_id, customer: customer || (st.wrap && st.wrap.customer),
        deadline: m.wrap_up_s ? Date.now() + m.wrap_up_s * 1000 : null };
      showWrapup(m);
    }
  });
  socket.on("flow:update", (m) => { flowUi.update(m); if (st.wrap && st.wrap.call_id === m.call_id) renderWrapupFlow(); });
  socket.on("approval:decided", (m) => {
    if (!m || m.call_id !== flowUi.callId) return;
    showNotice(ui.notice, { kind: m.state === "approved" ? "ok" : "warn", code: "approval",
      title: m.state === "approved" ? "A team lead approved the call" : "A team lead refused the approval",
      text: [m.decided_by, m.decision_note].filter(Boolean).join(": ") });
  });
  socket.on("credit:delivery", (m) => creditUi.onDelivery(m));
  socket.on("check:progress", onCheckProgress);
  socket.on("check:result", onCheckResult);
  socket.on("analysis:alert", onAnalysisAlert);
  socket.on("call:media", onMediaNews);
  socket.on("media:restart", (m) => { if (st.call && st.call.id === m.call_id) startMedia(); });
  socket.on("session:ended", async (m) => {
    st.kickedOut = true;
    endCallMedia();
    setAgentState({ state: "offline", since_s: 0 });
    socket.disconnect();
    st.user = await signIn(["agent", "lead"], { reason: m.code === "account_disabled"
      ? "This account has been disabled." : m.code === "wrong_role"
        ? "This account can no longer use the agent console." : "Your session was ended. Please sign in again." });
    st.kickedOut = false;
    connect();
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
$("#wrapup-outcome").addEventListener("change", renderWrapupFlow);
setInterval(tickProgress, 200);
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
  st.user = await signIn(["agent", "lead"]);
  document.body.dataset.role = st.user.role;
  ui.who.textContent = st.user.display_name || st.user.username;
  ui.skills.replaceChildren(...(st.user.skills || []).map((s) => h("span", { class: "badge" }, humanize(s))));
  try {
    const { services } = await api("/api/services");
    st.services = new Map(services.map((s) => [s.code, s]));
  } catch { /* the queue panel shows what the stats name */ }
  renderQueue();
  connect();
  import("./findings.js").then((m) => m.mount());  // the agent's own review findings
}

main();

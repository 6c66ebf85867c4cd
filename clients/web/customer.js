// Customer page: choose a service, wait in line, talk to an adviser, see why a call ended.
// Token sources, in order: URL fragment "#token=...", postMessage({type: "cloudcounter:token",
// token}) from the bank's app, or (demo mode only) the hub's demo endpoints.
import {
  $, ApiError, api, ask, clearNotice, connectSocket, fmtDuration, fmtWait, h, showNotice,
} from "./common.js";
import {
  MediaAccessError, MediaLeg, attachStream, getLocalMedia, setTracksEnabled, showMediaMessage,
  stopStream,
} from "./media.js";
import { ACTIONS, actionIcon, stepOf } from "./checks.js";
import { createBookingUi } from "./appointments.js";

const booking = createBookingUi($("#booking"));

// A media leg "disconnected" this long is replaced by a new one (docs/media.md).
const LEG_RESTART_MS = 2000;
const FATAL_CONNECT = new Set(["unauthenticated", "token_expired", "unknown_customer",
  "unsupported_protocol", "invalid_token", "forbidden"]);

const ui = {
  status: $("#call-status"),
  notice: $("#notice"),
  services: $("#services"),
  callButton: $("#call-button"),
  demoPanel: $("#demo-panel"),
  demoSelect: $("#demo-customer"),
  position: $("#queue-position"),
  wait: $("#queue-wait"),
  queueService: $("#queue-service"),
  cancel: $("#cancel-button"),
  callback: $("#callback-button"),
  remote: $("#remote-video"),
  local: $("#local-video"),
  selfView: $("#self-view"),
  mediaMessage: $("#media-message"),
  agentName: $("#agent-name"),
  timer: $("#call-timer"),
  mute: $("#mute-button"),
  camera: $("#camera-button"),
  hangup: $("#hangup-button"),
  endedReason: $("#ended-reason"),
  newCall: $("#new-call-button"),
  lp: $("#liveness-prompt"),
  lpStep: $("#lp-step"),
  lpDots: $("#lp-dots"),
  lpIcon: $("#lp-icon-slot"),
  lpRing: $("#lp-ring"),
  lpSeconds: $("#lp-seconds"),
  lpPrompt: $("#lp-prompt"),
  lpHelp: $("#lp-help"),
};

const st = {
  token: null,
  demo: false,
  socket: null,
  services: new Map(),
  selected: null,
  stream: null,
  call: null, // {id, service, agent, acceptedAt, leg}
  wasDisconnected: false,
  stateCheck: null,
  stateSeen: false,  // a call:state arrived since the last disconnect
  timer: null,
};

// ------------------------------------------------------------------ view and status
function setView(name) {
  document.body.dataset.view = name;
  for (const v of ["start", "queue", "call", "ended"]) $(`#view-${v}`).hidden = v !== name;
  ui.selfView.hidden = !(st.stream && (name === "queue" || name === "call"));
}

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function updateCallButton() {
  ui.callButton.disabled = !(st.selected && st.token && !st.call);
}

// ------------------------------------------------------------------ services
function initials(name) {
  return name.split(/\s+/).filter((w) => /^[A-Za-z]/.test(w)).slice(0, 2).map((w) => w[0]).join("").toUpperCase();
}

function renderServices(list) {
  st.services = new Map(list.map((s) => [s.code, s]));
  const buttons = list.map((s) => h("button", {
    type: "button", class: "service", "aria-pressed": "false",
    "data-testid": `service-${s.code}`, "data-code": s.code,
    onclick: () => selectService(s.code),
  },
  h("span", { class: "svc-icon", "aria-hidden": "true" }, initials(s.name)),
  h("span", {}, h("span", { class: "svc-name" }, s.name),
    h("span", { class: "svc-kind" }, s.kind === "loan_interview" ? "Video interview · about 15 min" : "Counter service")),
  h("span", { class: "svc-check", "aria-hidden": "true" })));
  ui.services.append(...buttons);
}

function selectService(code) {
  st.selected = code;
  for (const b of ui.services.querySelectorAll(".service")) {
    b.setAttribute("aria-pressed", String(b.dataset.code === code));
  }
  updateCallButton();
  if (st.token) setStatus("ready", `Ready: ${st.services.get(code).name}`);
}

// ------------------------------------------------------------------ token and connection
async function initToken() {
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("service")) st.preselect = frag.get("service");
  if (frag.get("token")) {
    const token = frag.get("token");
    history.replaceState(null, "", location.pathname + location.search); // keep it out of history
    return useToken(token);
  }
  window.addEventListener("message", onMessage);
  for (const target of [window.parent !== window ? window.parent : null, window.opener]) {
    if (target) target.postMessage({ type: "cloudcounter:ready" }, "*");
  }
  try {
    const { customers } = await api("/api/demo/customers");
    st.demo = true;
    ui.demoSelect.replaceChildren(...customers.map((c) => h("option", { value: c.id }, c.name)));
    ui.demoPanel.hidden = false;
    ui.demoSelect.addEventListener("change", () => demoSignIn(ui.demoSelect.value));
    const wanted = new URLSearchParams(location.search).get("customer");
    if (wanted && customers.some((c) => c.id === wanted)) ui.demoSelect.value = wanted;
    if (customers.length) await demoSignIn(ui.demoSelect.value);
  } catch (e) {
    if (!st.token) setStatus("waiting_token", "Waiting for your banking app to sign you in…");
  }
}

function onMessage(ev) {
  const d = ev.data;
  if (!d || d.type !== "cloudcounter:token" || typeof d.token !== "string") return;
  if (!(ev.source === window || ev.source === window.parent || ev.source === window.opener)) return;
  useToken(d.token);
}

async function demoSignIn(customerId) {
  if (st.call) return;
  try {
    const { token } = await api("/api/demo/customer-token", { method: "POST", body: { customer_id: customerId } });
    useToken(token);
  } catch (e) {
    showNotice(ui.notice, { kind: "error", title: "Cannot sign in", text: e.message, code: "demo_token" });
  }
}

function useToken(token) {
  if (st.call) return;
  st.token = token;
  if (st.socket) { st.socket.removeAllListeners(); st.socket.disconnect(); }
  st.socket = connectSocket("/customer", { token });
  wireSocket(st.socket);
  booking.attach(st.socket);
  setStatus("connecting", "Connecting to the video counter…");
  updateCallButton();
}

function wireSocket(socket) {
  socket.on("connect", () => {
    clearNotice(ui.notice, "connection_lost");
    clearNotice(ui.notice, "unreachable");
    if (st.wasDisconnected && st.call) {
      showNotice(ui.notice, { kind: "ok", title: "Reconnected", text: "You are back online.", code: "reconnected" });
      setTimeout(() => clearNotice(ui.notice, "reconnected"), 3000);
      // The hub answers with call:state if our call is still alive within its grace period.
      // socket.io may deliver that call:state before this "connect" event: it counts too.
      clearTimeout(st.stateCheck);
      if (!st.stateSeen) {
        st.stateCheck = setTimeout(() => {
          if (st.call && !st.stateSeen) endCall({ reason: "lost", by: "system" });
        }, 4000);
      }
    }
    st.wasDisconnected = false;
    if (!st.call) {
      const svc = st.selected && st.services.get(st.selected);
      setStatus("ready", svc ? `Ready: ${svc.name}` : "Connected. Choose a service.");
    }
  });
  socket.on("disconnect", (reason) => {
    if (reason === "io client disconnect") return;
    st.wasDisconnected = true;
    st.stateSeen = false;  // the next connection must hear from the hub again
    clearTimeout(st.stateCheck);
    setStatus("reconnecting", "Connection lost. Reconnecting…");
    showNotice(ui.notice, {
      kind: "warn", title: "Connection lost", code: "connection_lost",
      text: st.call ? "Reconnecting… Your place is kept for a short while." : "Reconnecting…",
    });
  });
  socket.on("connect_error", (err) => {
    const code = err && err.data && err.data.code;
    if (code && FATAL_CONNECT.has(code)) {
      socket.disconnect();
      st.token = null;
      updateCallButton();
      setStatus("error", "Signed out");
      showNotice(ui.notice, {
        kind: "error", code: "session", title: "Your session has ended",
        text: code === "token_expired" ? "Your sign-in has expired. Please open the video counter again from your banking app."
          : "We could not sign you in. Please open the video counter again from your banking app.",
        actions: st.demo ? [{ label: "Sign in again", testid: "resign-button", onClick: () => demoSignIn(ui.demoSelect.value) }] : [],
      });
      if (st.call) endCall({ reason: "session", by: "system" });
      return;
    }
    st.wasDisconnected = true;
    setStatus("reconnecting", "Cannot reach the video counter. Retrying…");
    showNotice(ui.notice, { kind: "warn", title: "No connection", code: "unreachable",
      text: "We cannot reach the video counter. Retrying automatically…" });
  });

  socket.on("call:callback_due", (m) => {
    if (!st.call || m.call_id !== st.call.id) return;
    st.call.callback = false;
    document.body.dataset.callback = "due";
    showNotice(ui.notice, { kind: "ok", code: "callback_due", title: "Your turn",
      text: "Your place has come up: an adviser will answer you now." });
    showQueue(1, 0);
  });
  socket.on("call:queued", (m) => {
    if (!st.call || m.call_id !== st.call.id) return;
    if (m.requeued) {
      hideChallenge();
      closeLeg();
      showNotice(ui.notice, { kind: "info", title: "Your adviser was disconnected", code: "requeued",
        text: "You keep your place in line; the next adviser will join you." });
    }
    showQueue(m.position, m.estimated_wait_s);
  });
  socket.on("call:position", (m) => {
    if (st.call && m.call_id === st.call.id && document.body.dataset.view === "queue") {
      showQueue(m.position, m.estimated_wait_s);
    }
  });
  socket.on("call:accepted", (m) => {
    if (!st.call || m.call_id !== st.call.id) return;
    st.call.agent = (m.agent && m.agent.display_name) || "Your adviser";
    st.call.iceServers = m.ice_servers || [];
    startCallView();
  });
  socket.on("prompt:show", showPrompt);
  socket.on("prompt:closed", (m) => { if (pr.prompt && m.prompt_id === pr.prompt.prompt_id) hidePrompt(); });
  socket.on("flow:state", (m) => {
    if (!st.call || m.call_id !== st.call.id || m.state !== "declined") return;
    hidePrompt();
    $("#flow-declined").hidden = false;
  });
  socket.on("liveness:challenge", showChallenge);
  socket.on("media:restart", (m) => {  // the hub receives nothing from us: new connection
    if (st.call && m.call_id === st.call.id && document.body.dataset.view === "call") startMedia();
  });
  socket.on("call:media", (m) => {
    if (!st.call || m.call_id !== st.call.id || document.body.dataset.view !== "call") return;
    document.body.dataset.mediaHealth = `${m.participant}:${m.state}`;
    if (m.state === "stalled") {
      mediaMessage(m.participant === "customer" ? "Your video is not reaching your adviser"
        : "Your adviser's video has stopped", "Reconnecting the video…");
    } else if (m.state === "flowing" && st.call.mediaState === "connected") {
      mediaMessage(null);
    }
  });
  socket.on("liveness:done", livenessDone);
  socket.on("call:state", (m) => {
    clearTimeout(st.stateCheck);
    st.stateSeen = true;
    if (!st.call) st.call = { id: m.call_id };
    if (m.call_id !== st.call.id) return;
    if (m.state === "in_call") {
      // the hub says who the adviser is and how to reach the media path again
      if (m.agent && m.agent.display_name) st.call.agent = m.agent.display_name;
      if (Array.isArray(m.ice_servers)) st.call.iceServers = m.ice_servers;
      if (m.prompt) showPrompt(m.prompt);
      if (document.body.dataset.view !== "call") startCallView();
      else if (!st.call.leg || !["connected", "negotiating"].includes(st.call.mediaState)) startMedia();
    } else if (m.state !== "ended") {
      const known = m.position !== undefined && m.position !== null;
      if (known || document.body.dataset.view !== "queue") {
        showQueue(known ? m.position : null, m.estimated_wait_s ?? null);
      }
    }
  });
  socket.on("call:ended", (m) => {
    if (!st.call || m.call_id !== st.call.id) return;
    endCall(m);
  });
}

function connected() {
  if (st.socket && st.socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new ApiError(0, "unreachable", "The video counter cannot be reached right now.")), 10000);
    st.socket.once("connect", () => { clearTimeout(t); resolve(); });
  });
}

// ------------------------------------------------------------------ the call
async function requestCall() {
  if (!st.selected || st.call) return;
  ui.callButton.disabled = true;
  clearNotice(ui.notice);
  setStatus("starting", "Starting your camera…");
  try {
    if (!st.stream) st.stream = await getLocalMedia();
  } catch (e) {
    const code = e instanceof MediaAccessError ? e.code : "failed";
    setStatus("camera_blocked", code === "permission_denied" ? "Camera access blocked" : "Camera unavailable");
    showNotice(ui.notice, {
      kind: "error", code: `media_${code}`,
      title: code === "permission_denied" ? "Camera and microphone are blocked" : "We cannot use your camera",
      text: e.message, actions: [{ label: "Try again", testid: "retry-media", onClick: requestCall }],
    });
    updateCallButton();
    return;
  }
  attachStream(ui.local, st.stream);
  setStatus("requesting", "Requesting a video call…");
  try {
    await connected();
    const svc = st.selected;
    const reply = await ask(st.socket, "call:request", { service: svc });
    st.call = { id: reply.call_id, service: svc };
    document.body.dataset.callId = reply.call_id;
    showQueue(reply.position, reply.estimated_wait_s);
    scheduleTokenRefresh(300);
  } catch (e) {
    setStatus("error", "The call could not be started");
    showNotice(ui.notice, { kind: "error", code: e.code || "request", title: "The call could not be started",
      text: e.message, actions: [{ label: "Try again", testid: "retry-request", onClick: requestCall }] });
    updateCallButton();
  }
}

function showQueue(position, eta) {
  const waitingCallback = st.call && st.call.callback;
  ui.callback.hidden = Boolean(waitingCallback);
  ui.callback.disabled = false;
  $("#callback-note").hidden = !waitingCallback;
  const svc = st.call && st.services.get(st.call.service);
  ui.queueService.textContent = svc ? svc.name : "";
  if (position !== null && position !== undefined) ui.position.textContent = String(position);
  ui.wait.textContent = fmtWait(eta);
  setStatus("queued", position ? `Waiting for an adviser · number ${position} in line` : "Waiting for an adviser");
  setView("queue");
}

function startCallView() {
  clearNotice(ui.notice, "requeued");
  ui.agentName.textContent = st.call.agent || "Your adviser";
  st.call.acceptedAt = st.call.acceptedAt || Date.now();
  clearInterval(st.timer);
  const tick = () => { ui.timer.textContent = fmtDuration((Date.now() - st.call.acceptedAt) / 1000); };
  tick();
  st.timer = setInterval(tick, 1000);
  setStatus("connecting", `Connecting to ${st.call.agent || "your adviser"}…`);
  setView("call");
  startMedia();
}

function mediaMessage(title, text, actions = []) {
  showMediaMessage(ui.mediaMessage, title, text, actions);
}

function startMedia() {
  closeLeg();
  const call = st.call;
  const leg = new MediaLeg({
    socket: st.socket, callId: call.id, localStream: st.stream, iceServers: call.iceServers,
    onRemoteStream: (s) => attachStream(ui.remote, s),
    onState: (state, detail) => {
      if (st.call !== call || call.leg !== leg) return;
      call.mediaState = state;
      document.body.dataset.mediaState = state;
      const who = call.agent || "your adviser";
      if (state === "negotiating") mediaMessage("Connecting video…", "This usually takes a few seconds.");
      else if (state === "connected") { mediaMessage(null); setStatus("in_call", `In a call with ${who}`); }
      else if (state === "reconnecting") {
        mediaMessage("Video interrupted", "Trying to restore the picture…");
        // The path broke (often: the phone changed networks). The hub cannot restart ICE
        // inside a connection, so a leg still broken after LEG_RESTART_MS is replaced.
        clearTimeout(call.legRestart);
        call.legRestart = setTimeout(() => {
          if (st.call === call && call.leg === leg && call.mediaState === "reconnecting"
              && st.socket && st.socket.connected) startMedia();
        }, LEG_RESTART_MS);
      } else if (state === "unavailable") {
        setStatus("in_call", `Connected to ${who} · video unavailable`);
        mediaMessage("Video is not available right now",
          `${who} has joined, but the video service is temporarily unavailable. You can end the call and try again later.`);
      } else if (state === "failed") {
        mediaMessage("The video connection failed", detail || "Check your network connection.",
          [{ label: "Reconnect video", testid: "retry-video", onClick: startMedia }]);
      }
    },
  });
  call.leg = leg;
  leg.start().catch((e) => {
    if (call.leg === leg) {
      call.mediaState = "failed";
      document.body.dataset.mediaState = "failed";
      mediaMessage("The video connection failed", e.message || "",
        [{ label: "Reconnect video", testid: "retry-video", onClick: startMedia }]);
    }
  });
}

function closeLeg() {
  if (st.call && st.call.leg) {
    const leg = st.call.leg;
    st.call.leg = null;
    leg.close();
  }
  ui.remote.srcObject = null;
  mediaMessage(null);
}


// ------------------------------------------------------------------ liveness prompts
// The hub sends each challenge (liveness:challenge) and the end of the check (liveness:done);
// the page shows the action large over the adviser's video, with its countdown.
const lv = { deadline: 0, total: 0, timer: null, hideTimer: null, callId: null };

function showChallenge(m) {
  if (!st.call || m.call_id !== st.call.id) return;
  clearTimeout(lv.hideTimer);
  lv.callId = m.call_id;
  lv.total = m.expires_in_s || 0;
  lv.deadline = Date.now() + lv.total * 1000;
  const action = ACTIONS[m.action];
  ui.lp.dataset.state = "challenge";
  ui.lp.dataset.action = m.action;
  ui.lp.dataset.index = String(m.index);
  ui.lpStep.textContent = stepOf(m.index, m.total);
  ui.lpDots.replaceChildren(...Array.from({ length: m.total || 0 }, (_, i) =>
    h("li", { "data-state": i < m.index ? "done" : i === Number(m.index) ? "current" : "next" })));
  ui.lpIcon.replaceChildren(actionIcon(m.action, "animate"));
  ui.lpPrompt.textContent = m.prompt || (action ? action.prompt : m.action);
  ui.lpHelp.textContent = "Look at the camera, then do this once.";
  ui.lp.hidden = false;
  clearInterval(lv.timer);
  tickChallenge();
  lv.timer = setInterval(tickChallenge, 200);
}

function tickChallenge() {
  const left = Math.max(0, (lv.deadline - Date.now()) / 1000);
  ui.lpSeconds.textContent = String(Math.ceil(left));
  ui.lpRing.style.strokeDashoffset = String(lv.total ? 100 - (left / lv.total) * 100 : 100);
  // no next prompt long after the window closed: the check ended without telling us
  if (left === 0 && Date.now() - lv.deadline > 10000) hideChallenge();
}

function livenessDone(m) {
  if (!st.call || m.call_id !== st.call.id) return;
  clearInterval(lv.timer);
  ui.lp.dataset.state = "done";
  ui.lp.dataset.verdict = m.verdict || "";
  ui.lpStep.textContent = "Check complete";
  for (const d of ui.lpDots.children) d.dataset.state = "done";
  const done = h("span", { class: "lp-done-icon", "aria-hidden": "true" });
  done.innerHTML = '<svg viewBox="0 0 24 24"><path d="M5 12.5l4.5 4.5L19 7.5"/></svg>';
  ui.lpIcon.replaceChildren(done);
  ui.lpPrompt.textContent = "Thank you, that's all";
  ui.lpHelp.textContent = "Your adviser will continue with you.";
  ui.lp.hidden = false;
  lv.hideTimer = setTimeout(hideChallenge, 3500);
}

function hideChallenge() {
  clearInterval(lv.timer);
  clearTimeout(lv.hideTimer);
  ui.lp.hidden = true;
  ui.lp.dataset.state = "idle";
}

// ------------------------------------------------------------------ statements and questions
// The adviser shows a statement (read it aloud, then confirm or not) or a question; the hub
// records the exact text, its SHA-256 (echoed back with the answer) and both moments.
const pr = { prompt: null };

function showPrompt(m) {
  if (!st.call || m.call_id !== st.call.id) return;
  pr.prompt = m;
  const box = $("#prompt");
  box.dataset.kind = m.kind;
  box.dataset.state = "open";
  box.dataset.stepId = m.step_id;
  $("#prompt-title").textContent = m.kind === "statement" ? "Please read this aloud, then answer" : "Your adviser asks";
  $("#prompt-text").textContent = m.text;
  $("#prompt-help").textContent = m.kind === "statement"
    ? "Your answer and this recording are kept as the bank's record of your request." : "";
  $("#prompt-options").replaceChildren(...(m.options || []).map((o) => h("button", {
    type: "button", class: `btn${o.value === "confirm" ? " btn-primary" : ""}`,
    "data-testid": `prompt-answer-${o.value}`, onclick: () => answerPrompt(m, o.value),
  }, o.label)));
  box.hidden = false;
  const first = box.querySelector("button");
  if (first) first.focus();
}

async function answerPrompt(m, answer) {
  const box = $("#prompt");
  box.dataset.state = "sent";
  try {
    await ask(st.socket, "prompt:answer", { call_id: m.call_id, prompt_id: m.prompt_id,
      step_id: m.step_id, sha256: m.sha256, answer });
    if (pr.prompt && pr.prompt.prompt_id === m.prompt_id) {
      $("#prompt-help").textContent = "Thank you, your answer is recorded.";
      box.dataset.state = "answered";
      box.dataset.answer = answer;
      setTimeout(() => { if (pr.prompt && pr.prompt.prompt_id === m.prompt_id) hidePrompt(); }, 1500);
    }
  } catch (e) {
    box.dataset.state = "open";
    if (e.code === "prompt_not_open") { hidePrompt(); return; }
    $("#prompt-help").textContent = `Your answer was not recorded (${e.message}). Please try again.`;
  }
}

function hidePrompt() {
  pr.prompt = null;
  const box = $("#prompt");
  box.hidden = true;
  box.dataset.state = "idle";
}

const END_TEXT = {
  agent: "Your adviser ended the call. Thank you for banking with us.",
  customer: "You ended the call. Thank you for banking with us.",
  abandoned: "You left the queue. You can start a new call at any time.",
  timed_out: "No adviser became free in time. Please try again later.",
  rejected: "We cannot take your call right now. Please try again later.",
  failed: "The call was interrupted by a technical problem. Please start a new call.",
  lost: "Your call ended while you were offline. Please start a new call.",
  session: "Your call ended because you were signed out.",
};

// Protocol 1.2: a long wait outlives the customer token (10 minutes by default). While the
// call lasts, ask the hub for a fresh one before it expires and reconnect with the newest.
function scheduleTokenRefresh(seconds) {
  clearTimeout(st.refreshTimer);
  st.refreshTimer = setTimeout(async () => {
    if (!st.call || !st.socket) return;
    try {
      const { token, expires_in_s: ttl } = await ask(st.socket, "auth:refresh");
      st.token = token;
      st.socket.auth = { ...st.socket.auth, token };
      scheduleTokenRefresh(Math.max(30, ttl - 120));
    } catch (e) {
      if (st.call) scheduleTokenRefresh(30);  // offline for now: try again soon
    }
  }, seconds * 1000);
}

function endCall(m) {
  clearTimeout(st.refreshTimer);
  hideChallenge();
  hidePrompt();
  $("#flow-declined").hidden = true;
  clearTimeout(st.stateCheck);
  clearInterval(st.timer);
  closeLeg();
  stopStream(st.stream);
  st.stream = null;
  ui.local.srcObject = null;
  st.call = null;
  document.body.dataset.mediaState = "closed";
  let text;
  let problem = false;
  if (m.reason === "completed") text = m.by === "customer" ? END_TEXT.customer : END_TEXT.agent;
  else { text = END_TEXT[m.reason] || END_TEXT.failed; problem = m.reason !== "abandoned"; }
  document.body.dataset.endedKind = problem ? "problem" : "ok";
  ui.endedReason.textContent = text;
  ui.endedReason.dataset.reason = m.reason;
  ui.endedReason.dataset.by = m.by || "";
  setStatus("ended", m.reason === "completed" && m.by === "agent" ? "Call ended by your adviser" : "Call ended");
  setView("ended");
  ui.newCall.focus();
}

async function hangup() {
  if (!st.call) return;
  const id = st.call.id;
  try {
    await ask(st.socket, "call:hangup", { call_id: id }, 8000);
  } catch (e) {
    if (!st.call || st.call.id !== id) return; // ended meanwhile
  }
  if (st.call && st.call.id === id) endCall({ call_id: id, reason: st.call.acceptedAt ? "completed" : "abandoned", by: "customer" });
}

function toggle(button, kind, labels) {
  const off = button.getAttribute("aria-pressed") !== "true";
  setTracksEnabled(st.stream, kind, !off);
  button.setAttribute("aria-pressed", String(off));
  button.setAttribute("aria-label", off ? labels[1] : labels[0]);
  button.title = off ? labels[1] : labels[0];
}

// ------------------------------------------------------------------ start
ui.callButton.addEventListener("click", requestCall);
ui.cancel.addEventListener("click", hangup);
// Protocol 1.2: leave the queue keeping the place (call:callback); the hub says when the
// place comes up (call:callback_due) and answers the customer first on return.
ui.callback.addEventListener("click", async () => {
  if (!st.call) return;
  ui.callback.disabled = true;
  try {
    await ask(st.socket, "call:callback", { call_id: st.call.id });
    st.call.callback = true;
    $("#callback-note").hidden = false;
    ui.callback.hidden = true;
    document.body.dataset.callback = "waiting";
    setStatus("callback", "We will call you back: your place is kept");
  } catch (e) {
    ui.callback.disabled = false;
    showNotice(ui.notice, { kind: "error", code: e.code || "callback", title: "No callback", text: e.message });
  }
});
ui.hangup.addEventListener("click", hangup);
ui.mute.addEventListener("click", () => toggle(ui.mute, "audio", ["Mute microphone", "Unmute microphone"]));
ui.camera.addEventListener("click", () => toggle(ui.camera, "video", ["Turn camera off", "Turn camera on"]));
ui.newCall.addEventListener("click", () => {
  for (const b of [ui.mute, ui.camera]) b.setAttribute("aria-pressed", "false");
  clearNotice(ui.notice);
  setView("start");
  if (!st.token && st.demo) demoSignIn(ui.demoSelect.value);
  const svc = st.selected && st.services.get(st.selected);
  if (st.token) setStatus("ready", svc ? `Ready: ${svc.name}` : "Choose a service.");
  updateCallButton();
});

async function main() {
  setView("start");
  try {
    const { services } = await api("/api/services");
    renderServices(services);
  } catch (e) {
    setStatus("error", "Services unavailable");
    showNotice(ui.notice, { kind: "error", title: "The video counter is unavailable", text: e.message,
      code: "services", actions: [{ label: "Reload", onClick: () => location.reload() }] });
    return;
  }
  setStatus("loading", "Choose a service");
  await initToken();
  if (st.preselect && st.services.has(st.preselect)) selectService(st.preselect);
}

main();

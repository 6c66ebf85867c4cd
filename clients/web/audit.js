// Auditor page: search recorded calls; replay the customer's and the agent's recordings in sync
// (one control drives both) beside the call's timeline; selecting an event seeks both players.
import { $, api, clearNotice, fmtDateTime, fmtDuration, h, humanize, showNotice } from "./common.js";
import { signIn, signOut } from "./login.js";
import {
  FAIL_REASONS, IDENTITY, LIVENESS, PAD, PAD_CUES, SIGNALS, actionIcon, actionLabel, evidenceThumb,
  evidenceViewer, fmtDistance, mark, signalTitle, stepOf,
} from "./checks.js";

const PAGE = 25;
const ui = {
  notice: $("#notice"),
  rows: $("#calls-rows"),
  empty: $("#calls-empty"),
  count: $("#list-count"),
  pageInfo: $("#page-info"),
  prev: $("#page-prev"),
  next: $("#page-next"),
  form: $("#search-form"),
  service: $("#search-service"),
  title: $("#replay-title"),
  meta: $("#replay-meta"),
  timeline: $("#timeline"),
  play: $("#replay-play"),
  seek: $("#replay-seek"),
  time: $("#replay-time"),
  speed: $("#replay-speed"),
  segment: $("#replay-segment"),
};
const st = { offset: 0, total: 0, services: new Map(), sync: null, callId: null };

// ------------------------------------------------------------------ synchronized players
/**
 * Drives several <video> elements from one virtual clock t (seconds since the earliest recording
 * started). Each player shows t - offset; players outside their recording wait paused. The clock
 * holds while a player that should be playing is still buffering, so the two never drift apart.
 */
class SyncPlayer {
  constructor(players, onTick) {
    this.players = players; // [{video, offset, duration}]
    this.onTick = onTick;
    this.t = 0;
    this.rate = 1;
    this.playing = false;
    this.total = Math.max(0, ...players.map((p) => p.offset + p.duration));
    this.frame = this.frame.bind(this);
  }

  inRange(p, t) { return t >= p.offset && t < p.offset + p.duration - 0.05; }

  play() {
    if (this.t >= this.total - 0.05) this.seek(0);
    this.playing = true;
    this.t0 = this.t;
    this.wall0 = performance.now();
    this.apply(true);
    requestAnimationFrame(this.frame);
    this.onTick(this.t);
  }

  pause() {
    this.playing = false;
    for (const p of this.players) p.video.pause();
    this.onTick(this.t);
  }

  seek(t) {
    this.t = Math.min(Math.max(0, t), this.total);
    this.t0 = this.t;
    this.wall0 = performance.now();
    for (const p of this.players) {
      const local = Math.min(Math.max(0, this.t - p.offset), Math.max(0, p.duration - 0.05));
      p.video.currentTime = local;
    }
    this.apply(true);
    this.onTick(this.t);
  }

  setRate(rate) {
    this.t0 = this.t;
    this.wall0 = performance.now();
    this.rate = rate;
    for (const p of this.players) p.video.playbackRate = rate;
  }

  apply(force) {
    for (const p of this.players) {
      const local = this.t - p.offset;
      if (!this.playing || !this.inRange(p, this.t)) {
        if (!p.video.paused) p.video.pause();
        continue;
      }
      if (force || Math.abs(p.video.currentTime - local) > 0.35) p.video.currentTime = local;
      if (p.video.paused) p.video.play().catch(() => {});
    }
  }

  frame(now) {
    if (!this.playing) return;
    const stalled = this.players.some((p) => this.inRange(p, this.t) && !p.video.paused
      && p.video.readyState < 3);
    if (stalled) { this.t0 = this.t; this.wall0 = now; } else {
      this.t = this.t0 + ((now - this.wall0) / 1000) * this.rate;
    }
    if (this.t >= this.total) {
      this.t = this.total;
      this.pause();
      return;
    }
    this.apply(false);
    this.onTick(this.t);
    requestAnimationFrame(this.frame);
  }

  destroy() {
    this.playing = false;
    for (const p of this.players) { p.video.pause(); p.video.removeAttribute("src"); p.video.load(); }
  }
}

// ------------------------------------------------------------------ list
function query(offset) {
  const p = new URLSearchParams();
  const add = (k, v) => { if (v) p.set(k, v); };
  add("q", $("#search-q").value.trim());
  add("service", ui.service.value);
  add("agent", $("#search-agent").value.trim());
  add("date_from", $("#search-from").value);
  add("date_to", $("#search-to").value);
  p.set("limit", String(PAGE));
  p.set("offset", String(offset));
  return p;
}

let listSeq = 0;

async function loadList(offset = 0) {
  st.offset = offset;
  const seq = ++listSeq; // a slower earlier answer must not replace a newer one
  const params = query(offset);
  let data;
  try {
    data = await api(`/api/calls?${params}`);
  } catch (e) {
    if (seq !== listSeq) return undefined;
    return apiFailed(e, "The call list could not be loaded");
  }
  if (seq !== listSeq) return undefined;
  clearNotice(ui.notice);
  st.total = data.total || 0;
  const rows = (data.calls || []).map(callRow);
  // a refreshed list keeps the keyboard focus on the same call
  const focused = document.activeElement && ui.rows.contains(document.activeElement)
    ? document.activeElement.closest("[data-call-id]") : null;
  ui.rows.replaceChildren(...rows);
  if (focused) rows.find((r) => r.dataset.callId === focused.dataset.callId)?.focus();
  document.body.dataset.listQuery = params.get("q") || "";  // what the list shows
  ui.empty.hidden = rows.length > 0;
  ui.count.textContent = `${st.total} call${st.total === 1 ? "" : "s"}`;
  ui.pageInfo.textContent = st.total ? `${offset + 1}–${offset + rows.length} of ${st.total}` : "";
  ui.prev.disabled = offset === 0;
  ui.next.disabled = offset + rows.length >= st.total;
}

function callRow(c) {
  const open = () => { location.hash = `call=${encodeURIComponent(c.id)}`; };
  const recs = c.recordings || [];
  const tr = h("tr", {
    tabindex: "0", "data-testid": "recording-row", "data-call-id": c.id,
    onclick: open, onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); open(); } },
  },
  h("td", {}, h("time", { datetime: c.requested_at || "" }, fmtDateTime(c.requested_at))),
  h("td", {}, c.service_name || c.service || "–"),
  h("td", {}, c.agent || "–"),
  h("td", {}, c.customer_name || "–"),
  h("td", { class: "num" }, fmtDuration(c.duration_s)),
  h("td", {}, h("span", { class: `outcome ${c.outcome || ""}` }, c.outcome ? humanize(c.outcome) : humanize(c.end_reason || "–"))),
  h("td", {}, recs.length ? recs.map((r) => humanize(r.participant)).join(" + ") : h("span", { class: "muted" }, "None")),
  h("td", {}, h("button", { type: "button", class: "btn", tabindex: "-1", "aria-label": `Replay call with ${c.customer_name || c.id}`,
    onclick: (ev) => { ev.stopPropagation(); open(); } }, "Replay")));
  return tr;
}

function apiFailed(e, title) {
  if (e.status === 401) { location.reload(); return; }
  const text = e.status === 404 && e.code === "http_404"
    ? "This hub does not offer call records yet (GET /api/calls)." : e.message;
  showNotice(ui.notice, { kind: "error", code: e.code, title, text,
    actions: [{ label: "Retry", testid: "retry-button", onClick: route }] });
}

// ------------------------------------------------------------------ replay
function eventText(ev) {
  const p = ev.payload || {};
  if (ev.kind === "agent.note" && p.text) return p.text;
  if (ev.kind === "call.wrapped_up") return [humanize(p.outcome || ""), p.notes].filter(Boolean).join(" · ");
  const parts = Object.entries(p).filter(([, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => `${humanize(k)}: ${v}`);
  return parts.join(" · ");
}

const openEvidence = evidenceViewer();
const CHECK_NAMES = { identity: "Identity", liveness: "Liveness" };
const CHECK_REASONS = {
  no_reference_photo: "No reference photo on file for this customer",
  no_video: "No video from the customer",
  vision_unavailable: "Face analysis was unavailable",
  check_running: "A check was already running",
  segment_ended: "The video segment ended before the result",
};

/** Where an auditor fetches a check's evidence frame (the payload names the file). */
function evidenceUrl(callId, p) {
  if (p.evidence_url) return p.evidence_url;
  if (!p.evidence) return null;
  return `/api/calls/${encodeURIComponent(callId)}/evidence/${encodeURIComponent(p.evidence)}`;
}

/** How a timeline entry reads: title, optional badge, text, extra nodes, tone, evidence URL. */
function eventView(ev, callId) {
  const p = ev.payload || {};
  const checkName = CHECK_NAMES[p.kind] || humanize(p.kind || "check");
  switch (ev.kind) {
    case "check.requested": {
      const list = Array.isArray(p.challenges) ? p.challenges.map(actionLabel).join(", ") : "";
      const auto = ev.actor === "system" || p.auto || p.automatic;
      return { title: `${checkName} check started`, tone: "check",
        text: [auto ? "Automatic for this service" : "Requested by the agent",
          list ? `Challenges: ${list}` : null].filter(Boolean).join(" · ") };
    }
    case "liveness.challenge":
      return { title: `Liveness ${stepOf(p.index, p.total).toLowerCase()}: ${actionLabel(p.action)}`, tone: "check",
        text: p.expires_in_s ? `${p.expires_in_s} s to respond` : "" };
    case "check.result": {
      const d = p.details || {};
      const known = p.kind === "identity" ? IDENTITY[p.verdict] : LIVENESS[p.verdict];
      const badge = h("span", { class: "verdict", "data-tone": known ? known.tone : "warn", "data-testid": "timeline-verdict" },
        known ? known.label : humanize(p.verdict || "unknown"));
      let text = "";
      let extra = null;
      if (typeof d.distance === "number") {
        text = `Distance ${fmtDistance(d.distance)} · threshold ${fmtDistance(d.threshold)}`
          + (typeof d.threshold === "number" ? (d.distance <= d.threshold ? " (within)" : " (above)") : "");
      }
      if (Array.isArray(d.challenges)) {
        extra = h("ul", { class: "tl-challenges" }, d.challenges.map((x) =>
          h("li", { "data-passed": String(!!x.passed) }, mark(x.passed ? "ok" : "bad"), actionIcon(x.action, "tiny"),
            h("span", {}, actionLabel(x.action)),
            h("span", { class: "muted num" }, x.passed && typeof x.seen_at_s === "number" ? `${x.seen_at_s.toFixed(1)} s` : ""),
            h("span", { class: "visually-hidden" }, x.passed ? "seen" : "not seen"))));
        if (p.verdict !== "pass" && d.reason) text = FAIL_REASONS[d.reason] || humanize(d.reason);
      }
      const tone = known ? known.tone : "warn";
      return { title: `${checkName} check`, badge, text, extra, tone: `result-${tone}`,
        evidence: evidenceUrl(callId, p), evidenceCaption: `Frame used for the ${checkName.toLowerCase()} check` };
    }
    case "check.pad": {
      const v = PAD[p.verdict] || { label: humanize(p.verdict || "unknown"), tone: "warn" };
      const badge = h("span", { class: "verdict", "data-tone": v.tone, "data-testid": "timeline-pad" }, v.label);
      const cues = Array.isArray(p.cues) ? p.cues.map((k) => PAD_CUES[k] || humanize(k)) : [];
      return { title: "Presentation-attack check", badge, tone: `result-${v.tone}`,
        text: cues.length ? `Cues: ${cues.join(", ")}` : "",
        evidence: evidenceUrl(callId, p), evidenceCaption: "Frame with the strongest screen or print cue" };
    }
    case "check.skipped":
      return { title: `${checkName} check skipped`, tone: "result-warn",
        text: (CHECK_REASONS[p.reason] || humanize(p.reason || "")) };
    case "check.abandoned":
      return { title: `${checkName} check ended without a verdict`, tone: "result-warn",
        text: CHECK_REASONS[p.reason] || humanize(p.reason || "") };
    case "script.started":
      return { title: `Script: ${p.title || "service script"}`, tone: "check",
        text: `Version ${p.version} · ${p.steps} steps` };
    case "step.completed":
      return { title: `Step done: ${humanize(p.step_id || "")}`, tone: "result-ok",
        text: [STEP_METHOD[p.method] || humanize(p.method || ""), p.note ? `“${p.note}”` : null]
          .filter(Boolean).join(" · ") };
    case "prompt.shown":
      return { title: `${p.kind === "statement" ? "Statement" : "Question"} shown to the customer`,
        tone: "check", text: p.text || "",
        extra: p.sha256 ? h("span", { class: "muted small mono" }, `SHA-256 ${p.sha256.slice(0, 16)}…`) : null };
    case "statement.answered":
    case "question.answered": {
      const declined = p.state === "declined";
      const badge = h("span", { class: "verdict", "data-tone": declined ? "bad" : "ok", "data-testid": "timeline-answer" },
        humanize(p.answer || p.state || ""));
      return { title: ev.kind === "statement.answered" ? "Statement answered" : "Question answered", badge,
        tone: declined ? "result-bad" : "result-ok",
        text: [STEP_METHOD[p.method] || humanize(p.method || ""), p.text ? `“${p.text}”` : null,
          p.note ? `Note: ${p.note}` : null, typeof p.delay_s === "number" ? `answered after ${p.delay_s.toFixed(1)} s` : null]
          .filter(Boolean).join(" · ") };
    }
    case "prompt.withdrawn":
      return { title: "Prompt withdrawn", text: humanize(p.reason || "") };
    case "business.declined":
      return { title: "The customer declined: business ended", tone: "result-bad", text: humanize(p.step_id || "") };
    case "risk.assessed": {
      const badge = h("span", { class: `badge ${p.level}`, "data-testid": "timeline-risk" }, `${humanize(p.level)} · ${p.score}`);
      return { title: "Risk assessed", badge, tone: p.level === "high" || p.level === "block" ? "result-bad" : "check",
        text: [`rules v${p.rules_version}`, ...(p.reasons || []).map((r) => `${r.text} (+${r.weight})`)].join(" · ") };
    }
    case "risk.concern":
      return { title: "Agent has concerns", tone: "result-warn", text: p.note || "" };
    case "approval.requested":
      return { title: "Approval requested from a team lead", tone: "result-warn",
        text: [p.agent, p.note, p.risk ? `risk ${p.risk.level} (${p.risk.score})` : null].filter(Boolean).join(" · ") };
    case "approval.decided":
      return { title: `Approval ${p.decision}`, tone: p.decision === "approved" ? "result-ok" : "result-bad",
        text: [`${p.lead} for ${p.agent}`, p.note].filter(Boolean).join(" · ") };
    case "network.changed":
      return { title: "Customer reconnected from another network address", tone: "result-warn",
        text: `${p.previous} → ${p.address}` };
    case "evidence.failed":
      return { title: "Evidence frame not saved", tone: "result-warn", text: eventText(ev) };
    case "evidence.accessed":
      return { title: "Evidence frame viewed", text: p.file || "" };
    case "analysis.alert": {
      const info = SIGNALS[p.signal];
      return { title: p.signal === "face_ok" ? "Face back in view" : `Alert: ${signalTitle(p.signal)}`,
        tone: p.signal === "face_ok" ? "alert-ok" : `alert-${info ? info.tone : "warn"}`,
        text: p.signal === "face_ok" ? "" : (info ? info.text : "") };
    }
    default:
      return { title: humanize(ev.kind), text: eventText(ev) };
  }
}

const STEP_METHOD = { auto: "Automatic, from the check", agent: "By the agent",
  agent_manual: "Verified another way by the agent", agent_spoken: "Answered aloud, recorded by the agent",
  customer_app: "By the customer on screen", skipped: "Skipped" };

/** Where an event is in the recordings: the hub stores the segment and offset of business
 * events; others are placed by their time. */
function eventPosition(ev, origin) {
  const r = ev.payload && ev.payload.recording;
  if (r && typeof r.offset_s === "number") return { segment: r.segment || 1, at: r.offset_s };
  return { segment: null, at: (Date.parse(ev.at) - origin) / 1000 };
}

const signed = (s) => (s <= -1 ? `−${fmtDuration(-s)}` : fmtDuration(Math.max(0, s)));

async function openReplay(callId) {
  let data;
  try {
    data = await api(`/api/calls/${encodeURIComponent(callId)}`);
  } catch (e) {
    return apiFailed(e, "The call could not be opened");
  }
  clearNotice(ui.notice);
  showView("replay");
  st.callId = callId;
  const c = data.call || {};
  const recs = data.recordings || c.recordings || [];
  ui.title.textContent = `${c.customer_name || "Customer"} · ${c.service_name || c.service || ""}`;
  ui.meta.textContent = [fmtDateTime(c.requested_at), c.agent ? `agent ${c.agent}` : null,
    c.duration_s !== undefined && c.duration_s !== null ? `duration ${fmtDuration(c.duration_s)}` : null,
    c.outcome ? `outcome ${humanize(c.outcome)}` : (c.end_reason ? humanize(c.end_reason) : null),
    c.risk ? `risk ${c.risk.level} (${c.risk.score})` : null,
    c.script_version ? `script v${c.script_version}` : null, c.id]
    .filter(Boolean).join(" · ");

  // A call re-queued after its agent was lost has several segments, each with its own pair.
  const segments = [...new Set(recs.map((r) => r.segment || 1))].sort((a, b) => a - b);
  const picker = $("#segment-picker");
  picker.hidden = segments.length < 2;
  ui.segment.replaceChildren(...segments.map((n) => h("option", { value: String(n) }, `Part ${n} of ${segments.length}`)));
  ui.segment.onchange = () => loadSegment(data, Number(ui.segment.value));
  loadSegment(data, segments[0] || 1);
  ui.play.focus();
}

function loadSegment(data, segment) {
  const c = data.call || {};
  const recs = (data.recordings || c.recordings || []).filter((r) => (r.segment || 1) === segment);
  const starts = recs.map((r) => Date.parse(r.started_at)).filter((x) => !Number.isNaN(x));
  const origin = starts.length ? Math.min(...starts) : Date.parse(c.answered_at || c.requested_at || 0);
  const players = [];
  for (const who of ["customer", "agent"]) {
    const video = $(`#player-${who}`);
    const rec = recs.find((r) => r.participant === who);
    $(`#empty-${who}`).hidden = !!rec;
    $(`#cap-${who}`).textContent = rec ? fmtDuration(rec.duration_s) : "";
    if (!rec) { video.removeAttribute("src"); video.load(); continue; }
    const offset = (Date.parse(rec.started_at) - origin) / 1000;
    video.dataset.offset = String(offset);
    video.src = rec.url;
    players.push({ video, offset, duration: Number(rec.duration_s) || 0 });
  }
  if (st.sync) st.sync.destroy();
  // A recording written live may report no duration in its header; learn it from the file.
  for (const p of players) {
    p.video.addEventListener("loadedmetadata", () => {
      if (Number.isFinite(p.video.duration) && p.video.duration > p.duration) {
        p.duration = p.video.duration;
        if (st.sync) {
          st.sync.total = Math.max(0, ...st.sync.players.map((q) => q.offset + q.duration));
          ui.seek.max = String(st.sync.total);
          onTick(st.sync.t);
        }
      }
    }, { once: true });
  }
  st.sync = new SyncPlayer(players, onTick);
  ui.play.disabled = players.length === 0;
  st.sync.setRate(Number(ui.speed.value));
  ui.seek.max = String(st.sync.total);
  ui.seek.value = "0";

  const items = (data.timeline || []).map((ev) => {
    const pos = eventPosition(ev, origin);
    const at = pos.segment === null || pos.segment === segment ? pos.at : (Date.parse(ev.at) - origin) / 1000;
    const view = eventView(ev, c.id || st.callId);
    return h("li", { class: "tl-item", "data-tone": view.tone || null, "data-kind": ev.kind },
      h("button", {
        type: "button", class: "tl-seek", "data-testid": "timeline-event", "data-kind": ev.kind,
        "data-offset": String(at), "data-tone": view.tone || null,
        "aria-label": `${signed(at)} ${view.title} by ${ev.actor}`,
        "data-segment": pos.segment === null ? null : String(pos.segment),
        onclick: () => {
          if (pos.segment !== null && pos.segment !== segment) {  // in another part of the call
            ui.segment.value = String(pos.segment);
            loadSegment(data, pos.segment);
            st.sync.seek(Math.max(0, pos.at));
            return;
          }
          st.sync.seek(Math.max(0, at));
        },
      }, h("span", { class: "t" }, signed(at)),
      h("span", { class: "k" }, view.badge ? h("span", { class: "k-line" }, view.title, " ", view.badge) : view.title,
        h("span", { class: "a" }, ev.actor),
        view.text ? h("span", { class: "p" }, view.text) : null)),
      view.extra || view.evidence ? h("div", { class: "tl-extra" }, view.extra || null,
        view.evidence ? evidenceThumb(view.evidence, view.evidenceCaption, openEvidence, "timeline-evidence") : null) : null);
  });
  ui.timeline.replaceChildren(...items);
  onTick(0);
}

function onTick(t) {
  const sync = st.sync;
  if (!sync) return;
  document.body.dataset.playing = String(sync.playing);
  ui.play.setAttribute("aria-label", sync.playing ? "Pause both recordings" : "Play both recordings");
  ui.time.textContent = `${fmtDuration(t)} / ${fmtDuration(sync.total)}`;
  if (document.activeElement !== ui.seek) ui.seek.value = String(t);
  let current = null;
  for (const b of ui.timeline.querySelectorAll("button.tl-seek")) {
    if (Number(b.dataset.offset) <= t + 0.05) current = b;
  }
  for (const b of ui.timeline.querySelectorAll("button.tl-seek.current")) if (b !== current) b.classList.remove("current");
  if (current) current.classList.add("current");
}

// ------------------------------------------------------------------ routing
function showView(name) {
  document.body.dataset.view = name;
  $("#view-list").hidden = name !== "list";
  $("#view-replay").hidden = name !== "replay";
}

function route() {
  const m = /^#call=(.+)$/.exec(location.hash);
  if (m) return openReplay(decodeURIComponent(m[1]));
  if (st.sync) { st.sync.destroy(); st.sync = null; }
  showView("list");
  return loadList(st.offset);
}

ui.form.addEventListener("submit", (ev) => { ev.preventDefault(); loadList(0); });
ui.prev.addEventListener("click", () => loadList(Math.max(0, st.offset - PAGE)));
ui.next.addEventListener("click", () => loadList(st.offset + PAGE));
ui.play.addEventListener("click", () => { if (!st.sync) return; if (st.sync.playing) st.sync.pause(); else st.sync.play(); });
ui.seek.addEventListener("input", () => st.sync && st.sync.seek(Number(ui.seek.value)));
ui.speed.addEventListener("change", () => st.sync && st.sync.setRate(Number(ui.speed.value)));
$("#back-button").addEventListener("click", () => { history.pushState(null, "", location.pathname); route(); });
$("#logout-button").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
document.addEventListener("keydown", (ev) => {
  if (document.body.dataset.view !== "replay" || !st.sync) return;
  const tag = (ev.target && ev.target.tagName) || "";
  if (["INPUT", "SELECT", "TEXTAREA", "BUTTON"].includes(tag)) return;
  if (ev.key === " " || ev.key === "k") { ev.preventDefault(); ui.play.click(); }
  if (ev.key === "ArrowLeft") st.sync.seek(st.sync.t - 5);
  if (ev.key === "ArrowRight") st.sync.seek(st.sync.t + 5);
});

async function main() {
  const user = await signIn(["auditor", "admin"]);
  $("#who").textContent = user.display_name || user.username;
  try {
    const { services } = await api("/api/services");
    for (const s of services) ui.service.append(h("option", { value: s.code }, s.name));
  } catch { /* the filter stays at "all" */ }
  route();
  // post-event supervision: task list, summary, the review panel beside the replay
  import("./review.js").then((m) => m.mount(user, {
    getTime: () => (st.sync ? st.sync.t : null), seek: (t) => st.sync && st.sync.seek(t),
  }));
}

main();

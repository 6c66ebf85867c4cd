// The supervisor wallboard on the team lead's page: the centre at a glance, pushed by the hub
// (wallboard:update on /supervisor every few seconds; wallboard:snapshot on connect).
import { $, fmtDuration, h, humanize } from "./common.js";
import { monitorButton } from "./monitor.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const pct = (v) => (v === null || v === undefined ? "–" : `${Math.round(v * 100)} %`);

function levelClass(v, target) {
  if (v === null || v === undefined) return "";
  return v >= target ? "good" : v >= target - 0.15 ? "warn" : "bad";
}

/** Arrivals per 15 minutes (bars) and the service level (line) over the day. */
function dayChart(service, target) {
  const buckets = service.day || [];
  const W = 360, H = 90, pad = 14;
  const max = Math.max(1, ...buckets.map((b) => b.arrived));
  const bw = buckets.length ? (W - 2 * pad) / Math.max(buckets.length, 8) : 0;
  const bars = buckets.map((b, i) => {
    const bh = ((H - 2 * pad) * b.arrived) / max;
    return svg("rect", { x: pad + i * bw + 1, y: H - pad - bh, width: Math.max(1, bw - 2), height: bh,
      class: "bar" }, svg("title", {}, `${b.start.slice(11, 16)} UTC: ${b.arrived} arrived, ${b.answered} answered, ${b.abandoned} abandoned, service level ${pct(b.service_level)}`));
  });
  const pts = buckets.map((b, i) => (b.service_level === null ? null
    : `${pad + i * bw + bw / 2},${H - pad - (H - 2 * pad) * b.service_level}`)).filter(Boolean);
  const targetY = H - pad - (H - 2 * pad) * target;
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "day-chart", role: "img",
    "aria-label": `${service.name}: arrivals per 15 minutes and service level today` },
  svg("line", { x1: pad, x2: W - pad, y1: targetY, y2: targetY, class: "target" }),
  ...bars,
  pts.length > 1 ? svg("polyline", { points: pts.join(" "), class: "level" }) : svg("g"),
  svg("text", { x: pad, y: 10, class: "axis" }, `max ${max} / 15 min · line: service level, dashed: target ${pct(target)}`));
}

function serviceTile(s, target) {
  const short = s.agents_staffed < s.agents_needed;
  return h("section", { class: "card wb-service", "data-testid": "wb-service", "data-service": s.service },
    h("div", { class: "panel-head" }, h("h3", {}, s.name),
      h("span", { class: "muted" }, `target ${s.target_answer_s} s`)),
    h("div", { class: "wb-figures" },
      h("div", { class: "wb-big", "data-testid": "wb-waiting" }, h("b", {}, String(s.waiting)), h("span", {}, "waiting")),
      h("div", { class: "wb-big" }, h("b", {}, fmtDuration(s.longest_wait_s)), h("span", {}, "longest wait")),
      h("div", { class: `wb-big ${levelClass(s.service_level_15m, target)}` }, h("b", {}, pct(s.service_level_15m)), h("span", {}, "service level 15 min")),
      h("div", { class: `wb-big ${levelClass(s.service_level_60m, target)}`, "data-testid": "wb-level-60" }, h("b", {}, pct(s.service_level_60m)), h("span", {}, "service level 60 min")),
      h("div", { class: "wb-big" }, h("b", {}, `${s.answered_60m} / ${s.abandoned_60m}`), h("span", {}, "answered / abandoned, 60 min")),
      h("div", { class: `wb-big ${short ? "bad" : "good"}`, "data-testid": "wb-staffing" },
        h("b", {}, `${s.agents_staffed} / ${s.agents_needed}`), h("span", {}, "agents staffed / needed"))),
    dayChart(s, target));
}

export function renderWallboard(board) {
  const root = $("#wallboard");
  if (!root || !board) return;
  const target = board.service_level_target;
  const waiting = board.services.reduce((n, s) => n + s.waiting, 0);
  document.body.dataset.wallboardWaiting = String(waiting);
  $("#wb-updated").textContent = `updated ${board.at.slice(11, 19)} UTC`;
  $("#wb-services").replaceChildren(...board.services.filter((s) => s.arrived_60m || s.waiting || s.agents_staffed || (s.day || []).length)
    .map((s) => serviceTile(s, target)));
  $("#wb-agents").replaceChildren(...board.agents.map((a) => h("tr", { "data-testid": "wb-agent", "data-username": a.username },
    h("td", {}, a.display_name || a.username, a.lead ? [" ", h("span", { class: "badge" }, "lead")] : ""), h("td", {}, h("span", { class: `badge state-${a.state}` }, humanize(a.state))),
    h("td", {}, fmtDuration(a.in_state_s)), h("td", { class: "muted" }, a.skills.join(", ")))));
  $("#wb-agents-empty").hidden = board.agents.length > 0;
  $("#wb-calls").replaceChildren(...board.calls.map((c) => h("tr", { "data-testid": "wb-call", "data-call-id": c.call_id },
    h("td", { class: "mono" }, c.call_id.slice(-6)), h("td", {}, humanize(c.service)), h("td", {}, c.agent || "–"),
    h("td", {}, humanize(c.state)), h("td", {}, fmtDuration(c.duration_s)),
    h("td", {}, h("span", { class: `badge ${c.risk_level}` }, humanize(c.risk_level))),
    h("td", {}, monitorButton(c)))));
  $("#wb-calls-empty").hidden = board.calls.length > 0;
  renderDropped(board.dropped || []);
}

/** Calls waiting again after their agent dropped (protocol 1.5): a lead takes one over in
 * the agent console, opened in a new tab on /agent?takeover=<call id>. */
function renderDropped(dropped) {
  $("#wb-dropped-panel").hidden = dropped.length === 0;
  $("#wb-dropped").replaceChildren(...dropped.map((c) => h("tr", { "data-testid": "wb-dropped-call", "data-call-id": c.call_id },
    h("td", { class: "mono" }, c.call_id.slice(-6)), h("td", {}, humanize(c.service)), h("td", {}, c.dropped_by),
    h("td", {}, fmtDuration(c.since_s)), h("td", {}, c.customer_online ? "connected" : "away"),
    h("td", {}, h("span", { class: `badge ${c.risk_level}` }, humanize(c.risk_level))),
    h("td", {}, c.customer_online
      ? h("a", { class: "btn btn-small btn-primary", href: `/agent?takeover=${encodeURIComponent(c.call_id)}`,
        target: "_blank", rel: "noopener", "data-testid": "take-over-button" }, "Take over")
      : h("span", { class: "muted" }, "customer away")))));
}

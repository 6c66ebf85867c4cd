// Identity and liveness checks: shared words and pictures for the three pages.
// The illustrations are inline SVG animated by CSS (checks.css); no third-party assets.
import { h, humanize } from "./common.js";

/** Liveness actions as the hub names them; `prompt` is for the customer, `label` for staff. */
export const ACTIONS = {
  blink: { label: "Blink", prompt: "Blink your eyes" },
  turn_left: { label: "Turn left", prompt: "Turn your head to your left" },
  turn_right: { label: "Turn right", prompt: "Turn your head to your right" },
  open_mouth: { label: "Open mouth", prompt: "Open your mouth" },
};
export const actionLabel = (a) => (ACTIONS[a] && ACTIONS[a].label) || humanize(a);

/** Identity verdicts: label, tone (ok | bad | warn) and a sentence for the agent. */
export const IDENTITY = {
  match: { label: "Match", tone: "ok", text: "The face matches the reference photo." },
  no_match: { label: "No match", tone: "bad",
    text: "The face does not match the reference photo. Verify the customer another way." },
  no_face: { label: "No face found", tone: "warn",
    text: "No face was visible. Ask the customer to face the camera, then try again." },
  multiple_faces: { label: "Several faces", tone: "warn",
    text: "More than one face was in the picture. Ask the customer to be alone, then try again." },
  low_quality: { label: "Picture not good enough", tone: "warn",
    text: "The face was too small, blurred, turned or badly lit to compare. Ask the customer to face the camera in good light, then try again." },
};
export const LIVENESS = {
  pass: { label: "Passed", tone: "ok" },
  fail: { label: "Failed", tone: "bad" },
};
export const FAIL_REASONS = {
  timeout: "An action was not seen in its time window.",
  wrong_action: "Another action than the one asked for was performed: a recorded video does what it recorded.",
  presentation_attack: "The actions were seen, but the face looks presented on a screen or a print. Verify the customer another way.",
  multiple_faces: "Several faces appeared during the check.",
  no_face: "The face left the picture during the check.",
  face_changed: "The face changed during the check.",
  no_video: "No video could be analysed for 15 seconds.",
  call_ended: "The call ended before the check was complete.",
  ended: "The call ended before the check was complete.",
};

/** Presentation-attack (PAD) verdicts of a liveness check, and the cues that fired. */
export const PAD = {
  bona_fide: { label: "No sign of a screen or print", tone: "ok" },
  attack: { label: "Screen or print suspected", tone: "bad" },
  inconclusive: { label: "Not enough head movement to judge", tone: "warn" },
};
export const PAD_CUES = {
  bezel_or_edge: "a screen bezel or paper edge around the face",
  moire: "moiré stripes of a re-filmed screen",
  glare: "glare on a glossy surface",
  refresh_bands: "refresh bands of a screen",
  flat_surface: "the face moves like a flat surface",
};

/** analysis:alert signals. face_ok clears the current alert. */
export const SIGNALS = {
  no_face: { title: "No face in view", text: "Ask the customer to face the camera.", tone: "warn" },
  multiple_faces: { title: "Several faces in view",
    text: "Someone else may be present. Ask the customer to be alone for this call.", tone: "warn" },
  face_changed: { title: "The face has changed",
    text: "The person on camera no longer looks like the one at the start of the call. Verify identity again before you continue.",
    tone: "bad" },
  face_ok: { title: "One face in view", text: "Face monitoring is active.", tone: "ok" },
};
export const signalTitle = (s) => (SIGNALS[s] && SIGNALS[s].title) || humanize(s);

/** Messages for the error codes of check:identity and check:liveness. */
export const CHECK_ERRORS = {
  unknown_call: { title: "This call is no longer active", text: "Checks can only run during a call." },
  no_reference_photo: { title: "No reference photo on file for this customer",
    text: "The face cannot be compared. Verify the customer's identity another way." },
  check_running: { title: "A check is already running", text: "Wait for its result, then try again." },
  no_video: { title: "No video from the customer yet",
    text: "Wait until you can see the customer, then try again." },
  vision_unavailable: { title: "Face checks are unavailable at the moment",
    text: "Verify the customer's identity another way and note it in the call." },
  timeout: { title: "The hub did not answer", text: "Try again in a moment." },
};

/** Format a descriptor distance ("0.42"). */
export const fmtDistance = (x) => (typeof x === "number" && isFinite(x) ? x.toFixed(2) : "–");

/** "Step n of m" from the hub's zero-based index. */
export const stepOf = (index, total) => `Step ${Number(index) + 1} of ${total}`;

// ------------------------------------------------------------------ pictures
const FACE = '<circle class="face" cx="32" cy="32" r="21"/>';
const EYES_OPEN = '<g class="eyes-open"><circle cx="24.5" cy="28" r="2.6"/><circle cx="39.5" cy="28" r="2.6"/></g>';
const SMILE = '<path class="mouth" d="M25 41q7 5 14 0"/>';
const ARROW_L = '<path class="arrow" d="M9 32H1m3.5-4L1 32l3.5 4"/>';
const ARROW_R = '<path class="arrow" d="M55 32h8m-3.5-4 3.5 4-3.5 4"/>';
const SVG = {
  blink: `${FACE}${EYES_OPEN}<g class="eyes-closed"><path d="M21 28.5q3.5 3 7 0"/><path d="M36 28.5q3.5 3 7 0"/></g>${SMILE}`,
  turn_left: `${FACE}<g class="features"><circle cx="20.5" cy="28" r="2.6"/><circle cx="33" cy="28" r="2.3"/><path class="nose" d="M24 31l-3.5 5h3.5"/><path class="mouth" d="M20 42q5 3.5 10 0"/></g>${ARROW_L}`,
  turn_right: `${FACE}<g class="features"><circle cx="31" cy="28" r="2.3"/><circle cx="43.5" cy="28" r="2.6"/><path class="nose" d="M40 31l3.5 5H40"/><path class="mouth" d="M34 42q5 3.5 10 0"/></g>${ARROW_R}`,
  open_mouth: `${FACE}${EYES_OPEN}<ellipse class="mouth-open" cx="32" cy="42" rx="5.5" ry="6"/>`,
  generic: `${FACE}${EYES_OPEN}${SMILE}`,
};

/** An illustration of a liveness action: <span class="action-icon" data-action=...><svg>. */
export function actionIcon(action, extraClass = "") {
  const span = h("span", { class: `action-icon ${extraClass}`.trim(), "data-action": action, "aria-hidden": "true" });
  span.innerHTML = `<svg viewBox="0 0 64 64" focusable="false">${SVG[action] || SVG.generic}</svg>`;
  return span;
}

/** A small inline status mark: tick, cross or dash. */
export function mark(kind) {
  const span = h("span", { class: `mark mark-${kind}`, "aria-hidden": "true" });
  span.innerHTML = kind === "ok"
    ? '<svg viewBox="0 0 16 16"><path d="M3.5 8.5l3 3 6-7"/></svg>'
    : kind === "bad" ? '<svg viewBox="0 0 16 16"><path d="M4.5 4.5l7 7m0-7-7 7"/></svg>'
      : '<svg viewBox="0 0 16 16"><path d="M4 8h8"/></svg>';
  return span;
}

/**
 * One <dialog> per page showing an evidence frame large. Returns open(url, caption).
 * Escape and the close button close it; focus returns to the opener.
 */
export function evidenceViewer() {
  let dlg = document.getElementById("evidence-dialog");
  if (!dlg) {
    dlg = h("dialog", { id: "evidence-dialog", class: "evidence-dialog", "data-testid": "evidence-dialog",
      "aria-labelledby": "evidence-caption" },
    h("div", { class: "evidence-head" },
      h("strong", { id: "evidence-caption" }, "Evidence frame"),
      h("button", { type: "button", class: "btn", "data-testid": "evidence-close",
        onclick: () => dlg.close() }, "Close")),
    h("img", { id: "evidence-large", alt: "" }),
    h("p", { class: "muted small evidence-note" },
      "The frame the hub analysed, stored with the call record."));
    dlg.addEventListener("click", (ev) => { if (ev.target === dlg) dlg.close(); });
    document.body.append(dlg);
  }
  return (url, caption) => {
    dlg.querySelector("#evidence-caption").textContent = caption || "Evidence frame";
    const img = dlg.querySelector("#evidence-large");
    img.src = url;
    img.alt = caption || "Evidence frame";
    dlg.showModal();
  };
}

/** A thumbnail button that opens the evidence frame large. */
export function evidenceThumb(url, caption, open, testid = "evidence-thumb") {
  return h("button", { type: "button", class: "evidence-thumb", "data-testid": testid,
    "aria-label": `Open ${caption.toLowerCase()} larger`, title: "Open larger",
    onclick: (ev) => { ev.stopPropagation(); open(url, caption); } },
  h("img", { src: url, alt: caption, loading: "eager", decoding: "async" }));
}

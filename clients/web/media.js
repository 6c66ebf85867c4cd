// Camera/microphone access and the WebRTC leg to the hub (non-trickle: the offer carries every
// ICE candidate; the hub answers in the media:offer acknowledgement).
import { AckError, ask, h } from "./common.js";

export class MediaAccessError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code; // permission_denied | no_device | device_busy | insecure_context | failed
  }
}

const ACCESS_MESSAGES = {
  permission_denied: "Camera or microphone access was blocked. Allow access in your browser's " +
    "site settings, then try again.",
  no_device: "No camera or microphone was found. Connect one (or close apps that use it) and try again.",
  device_busy: "Your camera or microphone is in use by another app. Close it and try again.",
  insecure_context: "This page must be opened over HTTPS to use the camera.",
  failed: "The camera could not be started.",
};

export function accessMessage(code) {
  return ACCESS_MESSAGES[code] || ACCESS_MESSAGES.failed;
}

/** Front camera (facingMode "user") and microphone. Throws MediaAccessError. */
export async function getLocalMedia({ video = true, audio = true } = {}) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MediaAccessError("insecure_context", accessMessage("insecure_context"));
  }
  const constraints = {
    audio: audio ? { echoCancellation: true, noiseSuppression: true } : false,
    video: video ? { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 },
      frameRate: { ideal: 24, max: 30 } } : false,
  };
  try {
    return await navigator.mediaDevices.getUserMedia(constraints);
  } catch (e) {
    const name = e && e.name;
    let code = "failed";
    if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
      code = "permission_denied";
    } else if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
      code = "no_device";
    } else if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
      code = "device_busy";
    }
    throw new MediaAccessError(code, accessMessage(code));
  }
}

export function stopStream(stream) {
  if (stream) stream.getTracks().forEach((t) => t.stop());
}

export function preferCodec(transceiver, kind, mime) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver?.getCapabilities) return;
  const caps = RTCRtpReceiver.getCapabilities(kind);
  if (!caps) return;
  const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mime);
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== mime);
  if (first.length) {
    try { transceiver.setCodecPreferences([...first, ...rest]); } catch { /* keep defaults */ }
  }
}

export function gatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        clearTimeout(timer);
        resolve();
      }
    };
    const timer = setTimeout(() => {  // send what we have rather than wait forever
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, timeoutMs);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

/**
 * One WebRTC leg to the hub for a call. onState(state, detail) receives
 * "negotiating" | "connected" | "reconnecting" | "failed" | "unavailable" | "closed";
 * onRemoteStream(stream) receives the other party's media.
 */
export class MediaLeg {
  constructor({ socket, callId, localStream, iceServers = [], onState = () => {},
    onRemoteStream = () => {} }) {
    this.socket = socket;
    this.callId = callId;
    this.localStream = localStream;
    this.iceServers = iceServers;
    this.onState = onState;
    this.onRemoteStream = onRemoteStream;
    this.pc = null;
    this.remote = new MediaStream();
    this.closed = false;
  }

  async start() {
    this.onState("negotiating");
    const pc = new RTCPeerConnection({ iceServers: this.iceServers || [], bundlePolicy: "max-bundle" });
    this.pc = pc;
    for (const kind of ["audio", "video"]) {
      const track = this.localStream ? this.localStream.getTracks().find((t) => t.kind === kind) : null;
      const tr = pc.addTransceiver(track || kind, {
        direction: track ? "sendrecv" : "recvonly",
        streams: this.localStream ? [this.localStream] : [],
      });
      preferCodec(tr, kind, kind === "video" ? "video/vp8" : "audio/opus");
    }
    pc.addEventListener("track", (ev) => {
      if (!this.remote.getTracks().includes(ev.track)) this.remote.addTrack(ev.track);
      this.onRemoteStream(this.remote);
    });
    pc.addEventListener("connectionstatechange", () => {
      if (this.closed) return;
      const s = pc.connectionState;
      if (s === "connected") this.onState("connected");
      else if (s === "disconnected") this.onState("reconnecting");
      else if (s === "failed") this.onState("failed", "The video connection failed.");
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, 4000);
    if (this.closed) return;
    let reply;
    try {
      reply = await ask(this.socket, "media:offer",
        { call_id: this.callId, type: "offer", sdp: pc.localDescription.sdp }, 20000);
    } catch (e) {
      if (this.closed) return;
      if (e instanceof AckError && e.code === "media_unavailable") {
        this.onState("unavailable", e.message);
      } else {
        this.onState("failed", e.message || "The video connection could not be set up.");
      }
      this.pc.close();
      return;
    }
    if (this.closed) return;
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
  }

  close() {
    this.closed = true;
    if (this.pc) this.pc.close();
    this.pc = null;
    this.remote.getTracks().forEach((t) => t.stop());
    this.onState("closed");
  }
}

/** Toggle every track of a kind; returns the new enabled state. */
export function setTracksEnabled(stream, kind, enabled) {
  if (!stream) return enabled;
  stream.getTracks().filter((t) => t.kind === kind).forEach((t) => { t.enabled = enabled; });
  return enabled;
}

/** A <video> element's media element state, for status displays and tests. */
export function attachStream(video, stream) {
  if (video.srcObject !== stream) video.srcObject = stream;
  const p = video.play();
  if (p && p.catch) p.catch(() => { /* autoplay refused: muted previews always play */ });
}

/** A message over a video area (no camera, reconnecting...) with optional buttons
 *  ({label, testid, onClick}); without a title the box is hidden. */
export function showMediaMessage(box, title, text, actions = []) {
  if (!title) { box.hidden = true; box.replaceChildren(); return; }
  box.replaceChildren(h("strong", {}, title), h("span", {}, text),
    ...actions.map((a) => h("div", {}, h("button", { type: "button", class: "btn", style: "margin-top:.7rem",
      "data-testid": a.testid, onclick: a.onClick }, a.label))));
  box.hidden = false;
}

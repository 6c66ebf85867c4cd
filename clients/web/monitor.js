// Silent monitoring on the team lead's page (protocol 1.4): watch and listen to a live call,
// one receive-only peer connection per participant (monitor:offer), nothing sent back. The
// call's timeline records it ("monitored by"); the customer and the agent are not told.
import { $, ask, h, showNotice } from "./common.js";
import { gatheringComplete, preferCodec } from "./media.js";

const st = { socket: null, callId: null, pcs: [] };

export function setMonitorSocket(socket) { st.socket = socket; }

async function watch(callId, participant, video) {
  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle" });
  st.pcs.push(pc);
  for (const kind of ["audio", "video"]) {
    preferCodec(pc.addTransceiver(kind, { direction: "recvonly" }), kind,
      kind === "video" ? "video/vp8" : "audio/opus");
  }
  const stream = new MediaStream();
  pc.addEventListener("track", (ev) => { stream.addTrack(ev.track); video.srcObject = stream; });
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc, 2000);
  const reply = await ask(st.socket, "monitor:offer",
    { call_id: callId, participant, type: "offer", sdp: pc.localDescription.sdp }, 20000);
  await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
}

export async function stopMonitoring() {
  const callId = st.callId;
  for (const pc of st.pcs) pc.close();
  st.pcs = [];
  st.callId = null;
  $("#monitor").hidden = true;
  document.body.dataset.monitoring = "";
  if (callId && st.socket) {
    try { await ask(st.socket, "monitor:stop", { call_id: callId }); } catch (e) { /* gone */ }
  }
}

export async function startMonitoring(call) {
  if (st.callId) await stopMonitoring();
  st.callId = call.call_id;
  $("#monitor").hidden = false;
  $("#monitor-title").textContent = `Watching ${call.call_id.slice(-6)} · ${call.agent || ""}`;
  document.body.dataset.monitoring = call.call_id;
  try {
    await Promise.all([watch(call.call_id, "customer", $("#monitor-customer")),
      watch(call.call_id, "agent", $("#monitor-agent"))]);
  } catch (e) {
    showNotice($("#notice"), { kind: "error", code: e.code || "monitor", title: "Cannot watch this call", text: e.message });
    await stopMonitoring();
  }
}

export function monitorButton(call) {
  if (call.state !== "in_call") return "";
  return h("button", { type: "button", class: "btn btn-small", "data-testid": `watch-${call.call_id}`,
    onclick: () => startMonitoring(call) }, "Watch");
}

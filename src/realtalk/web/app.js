// The page: controls, status, live transcript, push-to-talk, tool calls.
import { RealtimeSession, SessionError } from "./realtime.js";

const $ = (id) => document.getElementById(id);
const ui = {
  start: $("start"),
  stop: $("stop"),
  pttMode: $("ptt-mode"),
  talk: $("talk"),
  talkHint: $("talk-hint"),
  status: $("status"),
  error: $("error"),
  transcript: $("transcript"),
  empty: $("empty"),
  engine: $("engine"),
  audio: $("agent-audio"),
};

let session = null;
let agentSpeaking = false;
let talking = false;
const entries = new Map(); // item_id -> <li>
const toolNames = new Map(); // call_id -> tool name (beta events carry no name)
const pendingTools = new Map(); // response_id -> [Promise]

// A small window for tests and debugging: what the page saw.
window.realtalk = {
  events: [],
  get state() { return ui.status.dataset.state; },
  transcript: () => [...ui.transcript.children].map((li) => ({
    role: li.dataset.role, text: li.querySelector(".text").textContent, classes: li.className,
  })),
  audioEnergy: () => (session ? session.audioEnergy() : 0),
  stats: async () => {
    const out = [];
    (await session?.pc?.getStats())?.forEach((r) => { if (r.type === "inbound-rtp") out.push(r); });
    return out;
  },
  microphoneLive: () => Boolean(lastMicrophone?.getTracks().some((t) => t.readyState === "live")),
};
let lastMicrophone = null;

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

function entry(itemId, role) {
  let li = entries.get(itemId);
  if (!li) {
    li = document.createElement("li");
    li.className = `${role} pending`;
    li.dataset.role = role;
    li.dataset.item = itemId;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : role === "assistant" ? "Agent" : "Tool";
    const text = document.createElement("span");
    text.className = "text";
    li.append(who, text);
    ui.transcript.append(li);
    entries.set(itemId, li);
    ui.empty.hidden = true;
    li.scrollIntoView({ block: "nearest" });
  }
  return li;
}

function appendText(itemId, role, delta) {
  const li = entry(itemId, role);
  li.querySelector(".text").textContent += delta;
}

function finishText(itemId, role, text) {
  const li = entry(itemId, role);
  if (text !== undefined) li.querySelector(".text").textContent = text;
  li.classList.remove("pending", "partial");
}

// The user's words as they are spoken: the engine sends the words its live transcription
// has settled on as deltas while the user talks; the final transcript replaces them.
function showPartial(itemId, delta) {
  appendText(itemId, "user", delta);
  entries.get(itemId).classList.add("partial");
}

function listening() {
  setStatus("listening", ui.pttMode.checked ? "Connected. Hold the button or Space to talk." : "Listening… just talk.");
}

function handle(event) {
  window.realtalk.events.push(event);
  switch (event.type) {
    case "session.created":
      listening();
      if (ui.pttMode.checked) applyMode();
      break;
    case "input_audio_buffer.speech_started":
      entry(event.item_id, "user");
      if (agentSpeaking) markInterrupted();
      setStatus("user-speaking", "You are speaking…");
      break;
    case "input_audio_buffer.speech_stopped":
      setStatus("listening", "Thinking…");
      break;
    case "input_audio_buffer.committed":
      entry(event.item_id, "user");
      break;
    case "conversation.item.input_audio_transcription.delta":
      showPartial(event.item_id, event.delta || "");
      break;
    case "conversation.item.input_audio_transcription.completed":
      finishText(event.item_id, "user", event.transcript.trim() || "(nothing heard)");
      break;
    case "conversation.item.input_audio_transcription.failed":
      finishText(event.item_id, "user", "(could not transcribe)");
      break;
    case "response.output_audio_transcript.delta":
    case "response.audio_transcript.delta":
    case "response.output_text.delta":
    case "response.text.delta":
      appendText(event.item_id, "assistant", event.delta);
      break;
    case "response.output_audio_transcript.done":
    case "response.audio_transcript.done":
      finishText(event.item_id, "assistant", event.transcript);
      break;
    case "response.output_text.done":
    case "response.text.done":
      finishText(event.item_id, "assistant", event.text);
      break;
    case "response.output_item.added":
      if (event.item.type === "function_call") toolNames.set(event.item.call_id, event.item.name);
      break;
    case "response.function_call_arguments.done":
      runTool(event);
      break;
    case "output_audio_buffer.started":
      agentSpeaking = true;
      setStatus("agent-speaking", "Agent speaking… (talk to interrupt)");
      break;
    case "output_audio_buffer.stopped":
      agentSpeaking = false;
      listening();
      break;
    case "output_audio_buffer.cleared":
      if (agentSpeaking) markInterrupted();
      agentSpeaking = false;
      break;
    case "conversation.item.truncated":
      entries.get(event.item_id)?.classList.add("interrupted");
      break;
    case "response.done":
      for (const item of event.response.output || []) {
        if (event.response.status === "cancelled") entries.get(item.id)?.classList.add("interrupted");
        entries.get(item.id)?.classList.remove("pending");
      }
      continueAfterTools(event.response.id);
      if (!agentSpeaking && ui.status.dataset.state !== "user-speaking") listening();
      break;
    case "error":
      showError(`The engine reported: ${event.error.message}`);
      break;
  }
}

function markInterrupted() {
  setStatus("user-speaking", "You interrupted the agent.");
  const last = [...entries.values()].filter((li) => li.dataset.role === "assistant").pop();
  last?.classList.add("interrupted");
}

function runTool(event) {
  const name = event.name || toolNames.get(event.call_id) || "unknown";
  if ((session?.info?.server_tools || []).includes(name)) {
    // The engine runs this one itself; just show it.
    const li = entry(`tool-${event.call_id}`, "tool");
    li.querySelector(".text").textContent = `${name}(${event.arguments}) — run by the server`;
    li.classList.remove("pending");
    return;
  }
  const li = entry(`tool-${event.call_id}`, "tool");
  li.querySelector(".text").textContent = `${name}(${event.arguments})`;
  const work = (async () => {
    let output;
    try {
      const response = await fetch(`/api/tools/${encodeURIComponent(name)}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: event.arguments || "{}",
      });
      const body = await response.json().catch(() => ({ error: response.statusText }));
      output = response.ok ? body : { error: body.error?.message || body.detail || `HTTP ${response.status}` };
    } catch (error) {
      output = { error: `The tool could not be reached: ${error.message}` };
    }
    li.querySelector(".text").textContent = `${name} → ${JSON.stringify(output)}`;
    li.classList.remove("pending");
    session?.send({
      type: "conversation.item.create",
      item: { type: "function_call_output", call_id: event.call_id, output: JSON.stringify(output) },
    });
  })();
  const list = pendingTools.get(event.response_id) || [];
  list.push(work);
  pendingTools.set(event.response_id, list);
}

async function continueAfterTools(responseId) {
  const list = pendingTools.get(responseId);
  if (!list) return;
  pendingTools.delete(responseId);
  await Promise.all(list);
  session?.send({ type: "response.create" });
}

function applyMode() {
  const ptt = ui.pttMode.checked;
  ui.talk.hidden = !ptt;
  ui.talkHint.hidden = !ptt;
  if (!session) return;
  const turnDetection = ptt ? null : (session.info?.session?.turn_detection || { type: "server_vad" });
  session.send({ type: "session.update", session: { type: "realtime", audio: { input: { turn_detection: turnDetection } } } });
  session.setMicrophoneEnabled(!ptt);
  listening();
}

function pressTalk() {
  if (!session || !ui.pttMode.checked || talking) return;
  talking = true;
  ui.talk.setAttribute("aria-pressed", "true");
  if (agentSpeaking) {
    session.send({ type: "response.cancel" });
    session.send({ type: "output_audio_buffer.clear" });
    markInterrupted();
  }
  session.send({ type: "input_audio_buffer.clear" });
  session.setMicrophoneEnabled(true);
  setStatus("user-speaking", "Recording… release to send.");
}

function releaseTalk() {
  if (!talking) return;
  talking = false;
  ui.talk.setAttribute("aria-pressed", "false");
  setStatus("listening", "Thinking…");
  // Let the last few hundred milliseconds of speech arrive before committing.
  setTimeout(() => {
    session?.setMicrophoneEnabled(false);
    session?.send({ type: "input_audio_buffer.commit" });
    session?.send({ type: "response.create" });
  }, 300);
}

async function start() {
  showError("");
  ui.start.disabled = true;
  setStatus("connecting", "Connecting…");
  session = new RealtimeSession({ audioElement: ui.audio });
  session.addEventListener("server-event", (e) => handle(e.detail));
  session.addEventListener("microphone", (e) => { lastMicrophone = e.detail; });
  session.addEventListener("connection", (e) => {
    if (e.detail === "failed") fail("The connection to the voice engine failed. Check your network and press Start again.");
  });
  session.addEventListener("closed", () => {
    if (session) fail("The voice engine closed the connection.");
  });
  try {
    await session.start();
    const engine = session.info.engine;
    ui.engine.textContent = `Engine: ${engine.kind} (${engine.model})`;
    ui.stop.disabled = false;
  } catch (error) {
    fail(error instanceof SessionError ? error.message : `Could not start: ${error.message}`);
  }
}

function stop() {
  const current = session;
  session = null;
  current?.stop();
  agentSpeaking = false;
  talking = false;
  ui.start.disabled = false;
  ui.stop.disabled = true;
  setStatus("idle", "Stopped. Press Start to talk again.");
}

function fail(message) {
  stop();
  showError(message);
  setStatus("error", "Not connected.");
}

ui.start.addEventListener("click", start);
ui.stop.addEventListener("click", stop);
ui.pttMode.addEventListener("change", applyMode);
ui.talk.addEventListener("pointerdown", pressTalk);
ui.talk.addEventListener("pointerup", releaseTalk);
ui.talk.addEventListener("pointerleave", releaseTalk);
ui.talk.addEventListener("keydown", (e) => { if ((e.key === "Enter") && !e.repeat) pressTalk(); });
ui.talk.addEventListener("keyup", (e) => { if (e.key === "Enter") releaseTalk(); });
document.addEventListener("keydown", (e) => {
  if (e.code === "Space" && !e.repeat && ui.pttMode.checked && e.target.tagName !== "INPUT" && e.target.tagName !== "BUTTON") {
    e.preventDefault();
    pressTalk();
  }
});
document.addEventListener("keyup", (e) => {
  if (e.code === "Space" && ui.pttMode.checked) {
    e.preventDefault();
    releaseTalk();
  }
});
window.addEventListener("beforeunload", () => session?.stop());

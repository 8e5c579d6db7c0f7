// The page: settings, controls, status, levels, live transcript, typed messages,
// push-to-talk, tool cards, per-turn latency and the events panel.
import { EventLog } from "./eventlog.js";
import { LevelDisplay } from "./levels.js";
import { RealtimeSession, SessionError } from "./realtime.js";
import { listMicrophones, loadSettings, saveSettings, sessionUpdate } from "./settings.js";

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
  voice: $("voice"),
  turnDetection: $("turn-detection"),
  silenceMs: $("silence-ms"),
  device: $("device"),
  instructions: $("instructions"),
  settingsForm: $("settings-form"),
  messageForm: $("message-form"),
  message: $("message"),
  send: $("send"),
};
const settings = loadSettings();
const levels = new LevelDisplay($("mic-level"), $("agent-level"));
const eventLog = new EventLog($("event-log"), $("event-count"));

let session = null;
let agentSpeaking = false;
let talking = false;
const entries = new Map(); // item_id -> <li>
const toolNames = new Map(); // call_id -> tool name (beta events carry no name)
const pendingTools = new Map(); // response_id -> [Promise]
const toolCards = new Map(); // call_id -> card parts
const replyItems = new Map(); // response_id -> item_id of the spoken reply
let speechEnded = null; // performance.now() when the user's turn ended, until the reply sounds
let turnEndNoticed = null; // when the page learned that the turn had ended
let pendingLatency = null; // a label waiting for its reply's line

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
  levels: () => ({ mic: levels.peaks.mic, agent: levels.peaks.agent }),
  latencies: [], // each reply's measurement: {speechEnded, noticed, started, heard, seconds}
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
    if (role === "assistant" && pendingLatency) placeLatency(li, pendingLatency);
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

// Latency as a person hears it: from the end of their turn to the first sound of the reply.
// A spoken turn ends at the microphone's last sound (the engine says so only after its
// silence window); the reply starts when its sound reaches the speaker (the meters, every
// 20 ms), or, with no sound to hear, when the engine says it started.
function turnEnded(spoken) {
  const now = performance.now();
  const lastSound = levels.lastSound.mic;
  speechEnded = spoken && lastSound !== null && now - lastSound < 10_000 ? lastSound : now;
  turnEndNoticed = now;
}

async function replyStarted(responseId) {
  if (speechEnded === null) return;
  const ended = speechEnded;
  const started = performance.now();
  speechEnded = null;
  const heard = await levels.soundAfter("agent", Math.max(ended, started - 100));
  const seconds = ((heard ?? started) - ended) / 1000;
  window.realtalk.latencies.push({ speechEnded: ended, noticed: turnEndNoticed, started, heard, seconds });
  const label = `answered in ${seconds.toFixed(2)} s`;
  const li = entries.get(replyItems.get(responseId));
  if (li) placeLatency(li, label);
  else pendingLatency = label;
}

function placeLatency(li, label) {
  pendingLatency = null;
  const span = li.querySelector(".latency") || document.createElement("span");
  span.className = "latency";
  span.textContent = label;
  li.append(span);
}

function showItem(item) {
  if (item.type === "message" && item.role === "user") {
    const typed = (item.content || []).filter((c) => c.type === "input_text").map((c) => c.text);
    if (typed.length) finishText(item.id, "user", typed.join(" "));
  } else if (item.type === "function_call_output" && toolCards.has(item.call_id)) {
    fillCard(item.call_id, item.output);
  }
}

function listening() {
  setStatus("listening", ui.pttMode.checked ? "Connected. Hold the button or Space to talk." : "Listening… just talk.");
}

function handle(event) {
  window.realtalk.events.push(event);
  eventLog.add("received", event);
  switch (event.type) {
    case "session.created":
      session.send(sessionUpdate(settings, session.info?.session?.turn_detection));
      session.setMicrophoneEnabled(!ui.pttMode.checked);
      ui.message.disabled = false;
      ui.send.disabled = false;
      listening();
      break;
    case "conversation.item.created":
    case "conversation.item.added":
      showItem(event.item);
      break;
    case "input_audio_buffer.speech_started":
      entry(event.item_id, "user");
      if (agentSpeaking) markInterrupted();
      setStatus("user-speaking", "You are speaking…");
      break;
    case "input_audio_buffer.speech_stopped":
      turnEnded(true);
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
      if (event.item.type === "message") replyItems.set(event.response_id, event.item.id);
      break;
    case "response.function_call_arguments.done":
      runTool(event);
      break;
    case "output_audio_buffer.started":
      agentSpeaking = true;
      replyStarted(event.response_id);
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

// A tool call as a card in the transcript: name, arguments, result.
function toolCard(callId, name, args) {
  const li = entry(`tool-${callId}`, "tool");
  const text = li.querySelector(".text");
  const title = document.createElement("strong");
  title.className = "tool-name";
  title.textContent = name;
  const list = document.createElement("dl");
  const argsValue = document.createElement("dd");
  const resultValue = document.createElement("dd");
  argsValue.textContent = args || "{}";
  resultValue.textContent = "…";
  const term = (label) => Object.assign(document.createElement("dt"), { textContent: label });
  list.append(term("Arguments"), argsValue, term("Result"), resultValue);
  text.replaceChildren(title, list);
  li.classList.add("card");
  toolCards.set(callId, { li, result: resultValue });
  return li;
}

function fillCard(callId, output) {
  const card = toolCards.get(callId);
  card.result.textContent = typeof output === "string" ? output : JSON.stringify(output);
  card.li.classList.remove("pending");
}

function runTool(event) {
  const name = event.name || toolNames.get(event.call_id) || "unknown";
  const li = toolCard(event.call_id, name, event.arguments);
  if ((session?.info?.server_tools || []).includes(name)) {
    // The engine runs this one itself; its output arrives as a conversation item.
    const note = Object.assign(document.createElement("span"), { className: "by", textContent: " — run by the server" });
    li.querySelector(".text").append(note);
    li.classList.remove("pending");
    return;
  }
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
    fillCard(event.call_id, output);
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

// Settings: shown from localStorage, saved on every change, sent once connected.
function showSettings() {
  ui.voice.value = settings.voice;
  ui.turnDetection.value = settings.turnDetection;
  ui.silenceMs.value = settings.silenceMs;
  ui.instructions.value = settings.instructions;
  ui.pttMode.checked = settings.turnDetection === "push_to_talk";
  ui.silenceMs.disabled = settings.turnDetection !== "server_vad";
  ui.talk.hidden = !ui.pttMode.checked;
  ui.talkHint.hidden = !ui.pttMode.checked;
}

function readSettings() {
  Object.assign(settings, {
    voice: ui.voice.value,
    turnDetection: ui.turnDetection.value,
    silenceMs: ui.silenceMs.value,
    instructions: ui.instructions.value,
    device: ui.device.value,
  });
  saveSettings(settings);
  showSettings();
}

function applyMode() {
  if (ui.pttMode.checked) settings.lastVad = settings.turnDetection === "push_to_talk" ? settings.lastVad : settings.turnDetection;
  ui.turnDetection.value = ui.pttMode.checked ? "push_to_talk" : settings.lastVad || "server_vad";
  readSettings();
  applySettings();
}

function applySettings() {
  if (!session) return;
  session.send(sessionUpdate(settings, session.info?.session?.turn_detection));
  session.setMicrophoneEnabled(!ui.pttMode.checked);
  listening();
}

function sendMessage(submit) {
  submit.preventDefault();
  const text = ui.message.value.trim();
  if (!session || !text) return;
  ui.message.value = "";
  session.send({
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  });
  session.send({ type: "response.create" });
  turnEnded(false);
  setStatus("listening", "Thinking…");
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
  turnEnded(true);
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
  eventLog.clear();
  session = new RealtimeSession({ audioElement: ui.audio, deviceId: settings.device });
  session.addEventListener("server-event", (e) => handle(e.detail));
  session.addEventListener("client-event", (e) => eventLog.add("sent", e.detail));
  session.addEventListener("microphone", (e) => {
    lastMicrophone = e.detail;
    levels.watch("mic", e.detail);
    listMicrophones(ui.device, settings.device);
  });
  session.addEventListener("remote-stream", (e) => levels.watch("agent", e.detail));
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
  levels.stop();
  speechEnded = null;
  ui.message.disabled = true;
  ui.send.disabled = true;
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
for (const control of [ui.voice, ui.turnDetection, ui.silenceMs, ui.instructions, ui.device]) {
  control.addEventListener("change", () => { readSettings(); applySettings(); });
}
ui.messageForm.addEventListener("submit", sendMessage);
ui.settingsForm.addEventListener("submit", (e) => e.preventDefault());
showSettings();
listMicrophones(ui.device, settings.device);
ui.talk.addEventListener("pointerdown", pressTalk);
ui.talk.addEventListener("pointerup", releaseTalk);
ui.talk.addEventListener("pointerleave", releaseTalk);
ui.talk.addEventListener("keydown", (e) => { if ((e.key === "Enter") && !e.repeat) pressTalk(); });
ui.talk.addEventListener("keyup", (e) => { if (e.key === "Enter") releaseTalk(); });
document.addEventListener("keydown", (e) => {
  if (e.code === "Space" && !e.repeat && ui.pttMode.checked && !["INPUT", "BUTTON", "TEXTAREA", "SELECT", "SUMMARY"].includes(e.target.tagName)) {
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

// The conversation records' page: list, timeline, latency waterfall, audio, delete.
// The standard key is asked for once and kept only in this tab (sessionStorage).

const KEY = "realtalk.history.key";
const PAGE = 20;
const STAGES = [
  ["end_of_speech_to_commit", "speech end → commit"],
  ["stt", "transcription"],
  ["llm_first_token", "LLM first token"],
  ["tts_first_audio", "TTS first audio"],
  ["commit_to_first_audio", "commit → first audio"],
];

const $ = (id) => document.getElementById(id);
const els = {
  keyForm: $("key-form"), key: $("key"), error: $("error"), panes: $("panes"),
  list: $("list"), listEmpty: $("list-empty"), more: $("more"), forget: $("forget"),
  detail: $("detail"), title: $("detail-title"), meta: $("detail-meta"), close: $("close"),
  player: $("player"), track: $("track"), audio: $("audio"), timeline: $("timeline"),
  exportButton: $("export"), deleteButton: $("delete"),
};

let cursor = null;      // the last listed conversation's started_at (the next page's `before`)
let current = null;     // the open conversation's record
let audioUrl = null;    // the blob URL playing now

function key() { return sessionStorage.getItem(KEY); }

function showError(message) {
  els.error.textContent = message;
  els.error.hidden = !message;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${key()}`, ...(options.headers || {}) },
  });
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    askForKey("That key was refused: enter the server's standard key.");
    throw new Error("unauthorized");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message || message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function askForKey(message = "") {
  els.panes.hidden = true;
  els.keyForm.hidden = false;
  showError(message);
  els.key.focus();
}

const when = (seconds) => new Date(seconds * 1000).toLocaleString();
const clock = (seconds) => {
  const s = Math.max(0, seconds);
  return `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}`;
};

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

// ---- the list -------------------------------------------------------------------------

async function loadPage(reset) {
  if (reset) {
    cursor = null;
    els.list.replaceChildren();
  }
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (cursor !== null) query.set("before", String(cursor));
  try {
    const page = await (await api(`/api/conversations?${query}`)).json();
    for (const row of page.data) els.list.append(listItem(row));
    if (page.data.length) cursor = page.data[page.data.length - 1].started_at;
    els.more.hidden = !page.has_more;
    els.listEmpty.hidden = els.list.children.length > 0;
    showError("");
  } catch (err) {
    if (err.message !== "unauthorized") showError(`Could not list conversations: ${err.message}`);
  }
}

function listItem(row) {
  const length = row.ended_at ? `${Math.round(row.ended_at - row.started_at)} s` : "in progress";
  const button = el(
    "button",
    { type: "button", className: "open" },
    el("span", { className: "when", textContent: when(row.started_at) }),
    el("span", { className: "what", textContent: `${row.transport} · ${length}${row.end_reason ? ` · ${row.end_reason}` : ""}` }),
  );
  button.dataset.id = row.id;
  button.addEventListener("click", () => open(row.id));
  return el("li", {}, button);
}

// ---- one conversation -----------------------------------------------------------------

async function open(id) {
  let record;
  try {
    record = await (await api(`/api/conversations/${encodeURIComponent(id)}`)).json();
  } catch (err) {
    if (err.message !== "unauthorized") showError(`Could not open the conversation: ${err.message}`);
    return;
  }
  current = record;
  for (const b of els.list.querySelectorAll("button.open")) {
    b.setAttribute("aria-current", String(b.dataset.id === id));
  }
  els.title.textContent = `Conversation of ${when(record.started_at)}`;
  const stages = Object.entries(record.stages || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
  els.meta.textContent = `${record.id} · ${record.transport} (${record.generation}) · ` +
    `${record.end_reason || "in progress"}${stages ? ` · ${stages}` : ""}`;
  renderTimeline(record);
  await setupAudio(record);
  els.detail.hidden = false;
  els.panes.classList.add("open");
  els.title.focus();
}

function closeDetail() {
  stopAudio();
  current = null;
  els.detail.hidden = true;
  els.panes.classList.remove("open");
  const selected = els.list.querySelector('button[aria-current="true"]');
  if (selected) selected.setAttribute("aria-current", "false");
  (selected || els.list.querySelector("button") || els.more).focus();
}

function renderTimeline(record) {
  const results = new Map();
  for (const e of record.entries) if (e.kind === "tool_result") results.set(e.call_id, e);
  const items = [];
  for (const e of record.entries) {
    const offset = e.at - record.started_at;
    const stamp = el("span", { className: "t", textContent: clock(offset) });
    let item = null;
    if (e.kind === "user" || e.kind === "assistant") {
      const who = e.kind === "user" ? "You" : "Agent";
      item = el("li", { className: e.kind }, stamp, el("span", { className: "who", textContent: who }));
      if (e.via === "text") item.append(el("span", { className: "t", textContent: "(typed) " }));
      item.append(document.createTextNode(e.text || ""));
      if (e.interrupted) {
        item.append(el("span", { className: "badge", textContent: "interrupted", title: e.reason || "" }));
      }
      item.dataset.at = String(offset);
      item.tabIndex = 0;
    } else if (e.kind === "tool_call") {
      const result = results.get(e.call_id);
      item = el(
        "li", { className: "tool" }, stamp,
        el("span", { className: "who", textContent: `Tool ${e.name}` }),
        el("pre", { textContent: `arguments: ${e.arguments}` }),
        el("pre", { textContent: result ? `result: ${result.output}` : "no result" }),
      );
    } else if (e.kind === "latency") {
      item = el("li", { className: "note" }, waterfall(e.seconds || {}));
    } else if (e.kind === "truncated") {
      item = el("li", { className: "note", textContent: `${clock(offset)} reply audio cut at ${e.audio_end_ms} ms` });
    } else if (e.kind === "error") {
      item = el("li", { className: "error-entry" }, stamp, document.createTextNode(`Error: ${e.message || e.code || ""}`));
    }
    if (item) items.push(item);
  }
  els.timeline.replaceChildren(...items);
}

function waterfall(seconds) {
  // Bars on one time axis from the end of speech: commit, then STT, LLM and TTS in turn; the
  // last bar is the whole wait from commit to the first audio out.
  const commit = seconds.end_of_speech_to_commit || 0;
  const starts = {
    end_of_speech_to_commit: 0,
    stt: commit,
    llm_first_token: commit + (seconds.stt || 0),
    tts_first_audio: commit + (seconds.stt || 0) + (seconds.llm_first_token || 0),
    commit_to_first_audio: commit,
  };
  const present = STAGES.filter(([name]) => typeof seconds[name] === "number");
  const end = Math.max(0.001, ...present.map(([name]) => starts[name] + seconds[name]));
  const box = el("div", { className: "waterfall", role: "group", ariaLabel: "Turn latency" });
  for (const [name, label] of present) {
    const bar = el("span", { className: "bar" });
    bar.style.left = `${(100 * starts[name]) / end}%`;
    bar.style.width = `${Math.max(0.5, (100 * seconds[name]) / end)}%`;
    box.append(el(
      "div", { className: "stage" },
      el("span", { textContent: label }),
      el("span", { className: "track" }, bar),
      el("span", { className: "num", textContent: `${seconds[name].toFixed(2)} s` }),
    ));
  }
  return box;
}

// ---- audio --------------------------------------------------------------------------

function stopAudio() {
  els.audio.pause();
  els.audio.removeAttribute("src");
  if (audioUrl) URL.revokeObjectURL(audioUrl);
  audioUrl = null;
}

async function setupAudio(record) {
  stopAudio();
  const tracks = (record.audio || []).map((name) => name.split(".").at(-2));
  els.player.hidden = tracks.length === 0;
  if (!tracks.length) return;
  tracks.push("both"); // the server mixes whatever was recorded into stereo
  for (const option of els.track.options) option.disabled = !tracks.includes(option.value);
  if (!tracks.includes(els.track.value)) els.track.value = tracks[0];
  await loadTrack();
}

async function loadTrack() {
  if (!current) return;
  const id = current.id;
  stopAudio();
  try {
    // <audio src> cannot send the Authorization header: fetch it into a blob URL.
    const query = new URLSearchParams({ track: els.track.value });
    const blob = await (await api(`/api/conversations/${encodeURIComponent(id)}/audio?${query}`)).blob();
    if (!current || current.id !== id) return;
    audioUrl = URL.createObjectURL(blob);
    els.audio.src = audioUrl;
  } catch (err) {
    if (err.message !== "unauthorized") showError(`Could not load the audio: ${err.message}`);
  }
}

function highlight() {
  const now = els.audio.currentTime;
  let playing = null;
  for (const item of els.timeline.querySelectorAll("li[data-at]")) {
    if (Number(item.dataset.at) <= now) playing = item;
  }
  for (const item of els.timeline.querySelectorAll("li.playing")) {
    if (item !== playing) item.classList.remove("playing");
  }
  if (playing && !playing.classList.contains("playing")) {
    playing.classList.add("playing");
    playing.scrollIntoView({ block: "nearest" });
  }
}

function seekTo(item) {
  if (!audioUrl || !item.dataset.at) return;
  els.audio.currentTime = Number(item.dataset.at);
  els.audio.play().catch(() => {});
}

// ---- delete / export ----------------------------------------------------------------

async function remove() {
  if (!current) return;
  const id = current.id;
  if (!confirm(`Delete this conversation (${when(current.started_at)}) and its audio? This cannot be undone.`)) return;
  try {
    await api(`/api/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (err) {
    if (err.message !== "unauthorized") showError(`Could not delete: ${err.message}`);
    return;
  }
  els.list.querySelector(`button[data-id="${CSS.escape(id)}"]`)?.closest("li")?.remove();
  els.listEmpty.hidden = els.list.children.length > 0;
  closeDetail();
}

function exportJson() {
  if (!current) return;
  const blob = new Blob([JSON.stringify(current, null, 2)], { type: "application/json" });
  const link = el("a", { href: URL.createObjectURL(blob), download: `${current.id}.json` });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// ---- wiring ---------------------------------------------------------------------------

els.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, els.key.value.trim());
  els.key.value = "";
  start();
});
els.forget.addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  closeDetail();
  askForKey();
});
els.more.addEventListener("click", () => loadPage(false));
els.close.addEventListener("click", closeDetail);
els.track.addEventListener("change", loadTrack);
els.audio.addEventListener("timeupdate", highlight);
els.audio.addEventListener("seeked", highlight);
els.timeline.addEventListener("click", (event) => {
  const item = event.target.closest("li[data-at]");
  if (item) seekTo(item);
});
els.timeline.addEventListener("keydown", (event) => {
  const item = event.target.closest("li[data-at]");
  if (item && (event.key === "Enter" || event.key === " ")) {
    event.preventDefault();
    seekTo(item);
  }
});
els.deleteButton.addEventListener("click", remove);
els.exportButton.addEventListener("click", exportJson);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !els.detail.hidden) closeDetail();
});

function start() {
  els.keyForm.hidden = true;
  els.panes.hidden = false;
  loadPage(true);
}

if (key()) start(); else askForKey();

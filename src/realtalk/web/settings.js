// Settings chosen before Start, remembered in localStorage and sent as one session.update.

const KEY = "realtalk.settings";
const DEFAULTS = { voice: "", instructions: "", turnDetection: "server_vad", silenceMs: "", device: "" };

export function loadSettings() {
  try {
    return { ...DEFAULTS, ...JSON.parse(localStorage.getItem(KEY) || "{}") };
  } catch {
    return { ...DEFAULTS };
  }
}

export function saveSettings(settings) {
  localStorage.setItem(KEY, JSON.stringify(settings));
}

// The turn detection to ask for; server VAD starts from the server's own (serverTurn), so an
// unchanged setting changes nothing. undefined: keep what the server has.
export function turnDetection(settings, serverTurn) {
  switch (settings.turnDetection) {
    case "push_to_talk":
      return null;
    case "semantic_vad":
      return { type: "semantic_vad" };
    default: {
      const base = serverTurn?.type === "server_vad" ? serverTurn : { type: "server_vad" };
      const silence = Number.parseInt(settings.silenceMs, 10);
      return Number.isFinite(silence) ? { ...base, silence_duration_ms: silence } : base;
    }
  }
}

// The session.update for these settings; an empty voice or instructions keeps the server's.
export function sessionUpdate(settings, serverTurn) {
  const session = { type: "realtime", audio: { input: { turn_detection: turnDetection(settings, serverTurn) } } };
  if (settings.voice) session.audio.output = { voice: settings.voice };
  if (settings.instructions.trim()) session.instructions = settings.instructions.trim();
  return { type: "session.update", session };
}

// Fills the input-device list; labels are known only once the microphone was allowed.
export async function listMicrophones(select, chosen) {
  const devices = (await navigator.mediaDevices?.enumerateDevices?.()) || [];
  const inputs = devices.filter((d) => d.kind === "audioinput" && d.deviceId && d.deviceId !== "default");
  select.replaceChildren(new Option("Default microphone", ""));
  inputs.forEach((d, i) => select.append(new Option(d.label || `Microphone ${i + 1}`, d.deviceId)));
  select.value = inputs.some((d) => d.deviceId === chosen) ? chosen : "";
}

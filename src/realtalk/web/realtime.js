// A Realtime voice session over WebRTC, the way OpenAI's browser recipe does it:
// the backend mints an ephemeral key, the page posts its SDP offer to the engine's
// /realtime/calls, audio rides RTP and events ride the "oai-events" data channel.
// Works unchanged against realtalk's embedded engine or OpenAI's hosted API.

export class SessionError extends Error {
  constructor(message, kind) {
    super(message);
    this.kind = kind;
  }
}

export class RealtimeSession extends EventTarget {
  constructor({ backendUrl = "", audioElement, deviceId = "" }) {
    super();
    this.backendUrl = backendUrl;
    this.audioElement = audioElement;
    this.deviceId = deviceId;
    this.pc = null;
    this.channel = null;
    this.microphone = null;
    this.info = null;
  }

  async start() {
    this.microphone = await openMicrophone(this.deviceId);
    this.emit("microphone", this.microphone);
    const response = await fetch(`${this.backendUrl}/api/realtime/session`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },  // the backend refuses other bodies
      body: "{}",
    });
    if (!response.ok) {
      const reason = await errorMessage(response);
      throw new SessionError(`Could not get a session key from the server: ${reason}`, "backend");
    }
    this.info = await response.json();

    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.ontrack = (event) => {
      this.audioElement.srcObject = event.streams[0] || new MediaStream([event.track]);
      this.emit("remote-stream", this.audioElement.srcObject);
    };
    pc.onconnectionstatechange = () => {
      this.emit("connection", pc.connectionState);
    };
    for (const track of this.microphone.getAudioTracks()) pc.addTrack(track, this.microphone);

    const channel = pc.createDataChannel("oai-events");
    this.channel = channel;
    channel.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this.emit("server-event", event);
    };
    const opened = new Promise((resolve, reject) => {
      channel.onopen = resolve;
      channel.onerror = () => reject(new SessionError("The event channel failed to open.", "connect"));
    });
    channel.onclose = () => this.emit("closed");

    await pc.setLocalDescription(await pc.createOffer());
    const base = this.info.engine.base_url.replace(/\/$/, "");
    let answer;
    try {
      answer = await fetch(`${base}/realtime/calls`, {
        method: "POST",
        body: pc.localDescription.sdp,
        headers: {
          Authorization: `Bearer ${this.info.client_secret}`,
          "Content-Type": "application/sdp",
        },
      });
    } catch (error) {
      throw new SessionError(`Could not reach the voice engine at ${base}.`, "connect");
    }
    if (answer.status === 401) {
      const reason = await errorMessage(answer);
      throw new SessionError(`The session key was rejected or has expired (${reason}). Press Start to try again.`, "expired");
    }
    if (!answer.ok) {
      const reason = await errorMessage(answer);
      throw new SessionError(`The voice engine refused the call (HTTP ${answer.status}): ${reason}`, "connect");
    }
    await pc.setRemoteDescription({ type: "answer", sdp: await answer.text() });
    await withTimeout(opened, 15000, "The connection to the voice engine timed out.");
    this.callLocation = answer.headers.get("Location");
  }

  send(event) {
    if (this.channel && this.channel.readyState === "open") {
      this.channel.send(JSON.stringify(event));
      this.emit("client-event", event);
    }
  }

  setMicrophoneEnabled(enabled) {
    for (const track of this.microphone?.getAudioTracks() || []) track.enabled = enabled;
  }

  async audioEnergy() {
    // Total energy of the agent's audio received so far (WebRTC inbound-rtp stats).
    if (!this.pc) return 0;
    let energy = 0;
    (await this.pc.getStats()).forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "audio") {
        energy += report.totalAudioEnergy || 0;
      }
    });
    return energy;
  }

  stop() {
    this.channel?.close();
    this.pc?.getSenders().forEach((sender) => sender.track && sender.track.stop());
    this.pc?.close();
    this.microphone?.getTracks().forEach((track) => track.stop());
    if (this.audioElement) this.audioElement.srcObject = null;
    this.pc = null;
    this.channel = null;
    this.microphone = null;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

async function openMicrophone(deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new SessionError("This browser cannot record audio here (a secure context — https or localhost — is needed).", "microphone");
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: {
        echoCancellation: true,
        noiseSuppression: true,
        autoGainControl: true,
        ...(deviceId ? { deviceId: { exact: deviceId } } : {}),
      },
    });
  } catch (error) {
    if (error.name === "NotAllowedError" || error.name === "SecurityError") {
      throw new SessionError("Microphone access was denied. Allow the microphone for this page and press Start again.", "microphone");
    }
    if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
      throw new SessionError("No microphone was found. Connect one and press Start again.", "microphone");
    }
    throw new SessionError(`The microphone could not be opened: ${error.message}`, "microphone");
  }
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error?.message || body.detail || response.statusText;
  } catch {
    return response.statusText || `HTTP ${response.status}`;
  }
}

function withTimeout(promise, ms, message) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new SessionError(message, "connect")), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

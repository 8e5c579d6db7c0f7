// Sound levels: a Web Audio AnalyserNode on a MediaStream, read a few times a second.
// The level is the RMS of the latest window of samples, in 0..1.

const WINDOW = 1024;

export class LevelMeter {
  constructor(context, stream) {
    this.source = context.createMediaStreamSource(stream);
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = WINDOW;
    this.samples = new Float32Array(WINDOW);
    this.source.connect(this.analyser);
  }

  level() {
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const s of this.samples) sum += s * s;
    return Math.sqrt(sum / this.samples.length);
  }

  close() {
    this.source.disconnect();
  }
}

// A level (RMS, 0..1) at or above this is sound: speech is ~0.05-0.3, a quiet room < 0.01.
export const SOUND = 0.02;
const EVERY_MS = 20;

// Shows two meters (microphone, agent) on <meter> elements, scaled so speech fills them, and
// notes when each side last made a sound (the page's latency label is measured from these).
export class LevelDisplay {
  constructor(micElement, agentElement) {
    this.elements = { mic: micElement, agent: agentElement };
    this.meters = {};
    this.peaks = { mic: 0, agent: 0 };
    this.lastSound = { mic: null, agent: null }; // performance.now() of the latest sound
    this.waiting = []; // [name, since, resolve]: waiting for a sound after `since`
    this.context = null;
    this.timer = null;
  }

  watch(name, stream) {
    this.context ||= new AudioContext();
    this.context.resume();
    this.meters[name]?.close();
    this.meters[name] = new LevelMeter(this.context, stream);
    this.timer ||= setInterval(() => this.update(), EVERY_MS);
  }

  update() {
    const now = performance.now();
    for (const [name, meter] of Object.entries(this.meters)) {
      const level = meter.level();
      const value = Math.min(1, level * 4);
      this.elements[name].value = value;
      this.peaks[name] = Math.max(this.peaks[name], value);
      if (level >= SOUND) this.lastSound[name] = now;
    }
    this.waiting = this.waiting.filter(([name, since, resolve]) => {
      const at = this.lastSound[name];
      if (at === null || at < since) return true;
      resolve(at);
      return false;
    });
  }

  // When `name` next makes a sound after `since` (a performance.now() time); null if it
  // stays silent for `limitMs` or the meters stop.
  soundAfter(name, since, limitMs = 3000) {
    return new Promise((resolve) => {
      const entry = [name, since, resolve];
      this.waiting.push(entry);
      setTimeout(() => {
        if (this.waiting.includes(entry)) {
          this.waiting = this.waiting.filter((e) => e !== entry);
          resolve(null);
        }
      }, limitMs);
    });
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    for (const [, , resolve] of this.waiting) resolve(null);
    this.waiting = [];
    this.lastSound = { mic: null, agent: null };
    for (const meter of Object.values(this.meters)) meter.close();
    this.meters = {};
    for (const element of Object.values(this.elements)) element.value = 0;
    this.context?.close();
    this.context = null;
  }
}

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

// Shows two meters (microphone, agent) on <meter> elements; scaled so speech fills them.
export class LevelDisplay {
  constructor(micElement, agentElement) {
    this.elements = { mic: micElement, agent: agentElement };
    this.meters = {};
    this.peaks = { mic: 0, agent: 0 };
    this.context = null;
    this.timer = null;
  }

  watch(name, stream) {
    this.context ||= new AudioContext();
    this.context.resume();
    this.meters[name]?.close();
    this.meters[name] = new LevelMeter(this.context, stream);
    this.timer ||= setInterval(() => this.update(), 100);
  }

  update() {
    for (const [name, meter] of Object.entries(this.meters)) {
      const value = Math.min(1, meter.level() * 4);
      this.elements[name].value = value;
      this.peaks[name] = Math.max(this.peaks[name], value);
    }
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    for (const meter of Object.values(this.meters)) meter.close();
    this.meters = {};
    for (const element of Object.values(this.elements)) element.value = 0;
    this.context?.close();
    this.context = null;
  }
}

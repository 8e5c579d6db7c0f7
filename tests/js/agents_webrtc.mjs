// The OpenAI Agents SDK for JavaScript in a browser: RealtimeSession over OpenAIRealtimeWebRTC,
// pointed at realtalk's /v1/realtime/calls with an ephemeral key, from a page on another origin.
// Bundled by esbuild (tests/test_agents_js.py does it) into an IIFE that defines
// `window.runAgentsWebRTC({baseUrl, ephemeralKey})`, resolving to a JSON-able summary.
//
// The microphone is Chromium's fake device playing a WAV: silence, then a spoken order
// question, then silence. The conversation:
//   1. voice: the question → the SDK runs the tool → the answer plays on the audio track
//   2. text: a request for a long story → session.interrupt() while it plays
//      (response.cancel + output_audio_buffer.clear) → playout stops
//   3. text: a plain question → a spoken answer (the session still works)
import { OpenAIRealtimeWebRTC, RealtimeAgent, RealtimeSession, tool } from '@openai/agents-realtime';
import { z } from 'zod';
import { SchemaCheck } from './sdk_schema.mjs';

const STEP_LIMIT_MS = 120_000;
// The hint realtalk's own page gives its recognizer: the format of an order number.
const TRANSCRIPTION_HINT = 'Order numbers are written as digits, like order 1001.';
const ORDERS = {
  1001: { status: 'shipped', arrives: 'Tuesday' },
  1002: { status: 'processing', ships: 'in two days' },
  1003: { status: 'delivered', delivered: 'last week' },
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function run({ baseUrl, ephemeralKey }) {
  const started = performance.now();
  const since = () => Math.round(performance.now() - started);
  const raw = [];
  const sent = [];
  const sessionEvents = [];
  const toolCalls = [];
  const errors = [];
  const schema = new SchemaCheck();
  const waiters = new Set();

  const notify = () => {
    for (const waiter of [...waiters]) {
      if (waiter.test()) {
        waiters.delete(waiter);
        waiter.resolve();
      }
    }
  };
  const until = (what, test, limitMs = STEP_LIMIT_MS) => {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = { test, resolve };
      waiters.add(waiter);
      setTimeout(() => {
        if (waiters.delete(waiter)) reject(new Error(`timed out waiting for ${what}`));
      }, limitMs);
    });
  };

  // What the SDK sends on the data channel, recorded without changing it.
  const originalSend = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function send(data) {
    try {
      const { audio: _audio, ...shown } = JSON.parse(String(data));
      sent.push({ ...shown, at: since() });
    } catch {
      sent.push({ type: '<not json>', at: since() });
    }
    return originalSend.call(this, data);
  };

  const getOrderStatus = tool({
    name: 'get_order_status',
    description: "Look up the status of a customer's order by its order number.",
    parameters: z.object({ order_id: z.string().describe('The order number, e.g. 1001') }),
    async execute({ order_id }) {
      toolCalls.push(order_id);
      const order = ORDERS[order_id.replace(/\D/g, '')];
      return JSON.stringify(order ? { order_id, ...order } : { order_id, error: 'no such order' });
    },
  });
  const agent = new RealtimeAgent({
    name: 'Shop assistant',
    instructions:
      'You are a friendly assistant in a shop. Use the get_order_status tool for questions ' +
      'about orders. Answer other questions in one short sentence. When asked for a story, ' +
      'tell a long one of at least six sentences.',
    tools: [getOrderStatus],
  });

  const audioElement = document.createElement('audio');
  document.body.append(audioElement);
  const transport = new OpenAIRealtimeWebRTC({ baseUrl, audioElement });
  const session = new RealtimeSession(agent, {
    transport,
    model: 'gpt-realtime',
    // A vocabulary hint for the speech recognizer, as an application would give OpenAI's.
    config: {
      audio: {
        input: { transcription: { model: 'gpt-4o-mini-transcribe', prompt: TRANSCRIPTION_HINT } },
      },
    },
  });

  transport.on('*', (event) => {
    raw.push({ ...event, received_at: since() });
    schema.check(event);
    notify();
  });
  for (const name of [
    'audio_start',
    'audio_stopped',
    'audio_interrupted',
    'agent_end',
    'agent_tool_start',
    'agent_tool_end',
  ]) {
    session.on(name, (...args) => {
      sessionEvents.push({ name, at: since(), ...(name === 'agent_end' ? { text: args[2] } : {}) });
      notify();
    });
  }
  session.on('error', (event) => {
    const error = event.error;
    errors.push(
      error instanceof Error
        ? { message: error.message }
        : JSON.parse(JSON.stringify(error ?? null)),
    );
    notify();
  });

  /** Energy and samples of the agent's audio received on the track so far (inbound-rtp). */
  const playout = async () => {
    const peer = transport.connectionState.peerConnection;
    let energy = 0;
    let samples = 0;
    if (peer) {
      (await peer.getStats()).forEach((report) => {
        if (report.type === 'inbound-rtp' && report.kind === 'audio') {
          energy += report.totalAudioEnergy ?? 0;
          samples += report.totalSamplesReceived ?? 0;
        }
      });
    }
    return { energy, samples };
  };

  const count = (name) => sessionEvents.filter((e) => e.name === name).length;
  const rawAfter = (index, type) => raw.slice(index).filter((e) => e.type === type);
  const spokenReplyDone = (index) =>
    rawAfter(index, 'response.done').find((e) =>
      (e.response.output ?? []).some((item) => item.type === 'message'),
    );
  const transcriptOf = (items) =>
    (items ?? [])
      .flatMap((item) => item.content ?? [])
      .map((part) => part.transcript ?? part.text ?? '')
      .join(' ');
  const forResponse = (index, type, id) =>
    rawAfter(index, type).filter((e) => e.response_id === id);

  /** Waits for a spoken reply and its playout (output_audio_buffer.stopped). */
  async function spokenTurn(index) {
    await until('the spoken reply', () => spokenReplyDone(index) !== undefined);
    const done = spokenReplyDone(index);
    const id = done.response.id;
    const before = (await playout()).energy;
    await until('output_audio_buffer.stopped', () =>
      forResponse(index, 'output_audio_buffer.stopped', id).length > 0,
    );
    await sleep(300); // stats lag the track a little
    return {
      status: done.response.status,
      transcript: transcriptOf(done.response.output),
      output_audio_done: forResponse(index, 'response.output_audio.done', id).length > 0,
      buffer_started: forResponse(index, 'output_audio_buffer.started', id).length > 0,
      buffer_stopped: true,
      energy_during_reply: (await playout()).energy - before,
      function_calls: rawAfter(index, 'response.function_call_arguments.done').map((e) => e.name),
    };
  }

  const summary = {
    ok: false,
    page_origin: location.origin,
    engine_origin: new URL(baseUrl).origin,
  };
  try {
    await session.connect({ apiKey: ephemeralKey });
    summary.connected = true;
    summary.call_id = transport.callId ?? null;

    // 1. The spoken question (from the fake microphone) → tool → spoken answer.
    await until('the tool call', () => toolCalls.length > 0);
    summary.voice_turn = await spokenTurn(0);
    summary.voice_turn.user_transcripts = rawAfter(
      0,
      'conversation.item.input_audio_transcription.completed',
    ).map((e) => e.transcript);

    // 2. A long story, interrupted while it plays.
    let index = raw.length;
    const stoppedBefore = count('audio_stopped');
    session.sendMessage('Please tell me a long story about a dragon and a knight.');
    await until('the story to play', () => rawAfter(index, 'output_audio_buffer.started').length > 0);
    const storyId = rawAfter(index, 'output_audio_buffer.started')[0].response_id;
    const energyAtStart = (await playout()).energy;
    await sleep(1500);
    const energyBefore = (await playout()).energy;
    const sentBefore = sent.length;
    const rawBefore = raw.length;
    session.interrupt();
    const interruptSent = sent.slice(sentBefore).map((e) => e.type);
    await until('output_audio_buffer.cleared', () =>
      rawAfter(rawBefore, 'output_audio_buffer.cleared').length > 0,
    );
    await until('the story to end', () =>
      raw.some((e) => e.type === 'response.done' && e.response.id === storyId),
    );
    const clearedAt = since();
    const afterClear = [];
    for (let i = 0; i < 8; i += 1) {
      const { energy, samples } = await playout();
      afterClear.push({ at: since() - clearedAt, energy, samples });
      await sleep(250);
    }
    // What was already in flight and in the jitter buffer plays out first: count from 0.75 s.
    const energyAtClear = afterClear[3].energy;
    const energyAfter = afterClear.at(-1).energy;
    await until('audio_stopped', () => count('audio_stopped') > stoppedBefore, 5_000).catch(() => {});
    const storyDone = raw.find((e) => e.type === 'response.done' && e.response.id === storyId);
    const truncated = rawAfter(rawBefore, 'conversation.item.truncated')[0] ?? null;
    summary.interrupted_turn = {
      response_id: storyId,
      sent: interruptSent,
      status: storyDone.response.status,
      status_details: storyDone.response.status_details ?? null,
      cleared: rawAfter(rawBefore, 'output_audio_buffer.cleared').map((e) => e.response_id),
      truncated: truncated && { item_id: truncated.item_id, audio_end_ms: truncated.audio_end_ms },
      energy_while_playing: energyBefore - energyAtStart,
      energy_after_clear: energyAfter - energyAtClear,
      after_clear: afterClear.map((p) => ({
        at: p.at,
        energy: p.energy - afterClear[0].energy,
        samples: p.samples - afterClear[0].samples,
      })),
      output_audio_done: forResponse(index, 'response.output_audio.done', storyId).length > 0,
      audio_stopped: count('audio_stopped') - stoppedBefore,
      events_after_interrupt: raw
        .slice(rawBefore)
        .map((e) => e.type)
        .filter((t) => !t.endsWith('.delta')),
    };

    // 3. The session goes on.
    index = raw.length;
    session.sendMessage('What is the capital of France?');
    summary.text_turn = await spokenTurn(index);
    summary.ok = true;
  } catch (error) {
    summary.failure = String(error?.stack ?? error);
  } finally {
    session.close();
    RTCDataChannel.prototype.send = originalSend;
  }
  summary.tool_calls = toolCalls;
  summary.history = session.history.map((item) => ({
    type: item.type,
    role: item.role ?? null,
    status: item.status ?? null,
    name: item.name ?? null,
    output: item.output ?? null,
    text: (item.content ?? []).map((part) => part.transcript ?? part.text ?? '').join(' '),
  }));
  summary.session_events = Object.fromEntries(
    ['audio_start', 'audio_stopped', 'audio_interrupted', 'agent_end', 'agent_tool_start', 'agent_tool_end'].map(
      (name) => [name, count(name)],
    ),
  );
  summary.sent_types = [...new Set(sent.map((e) => e.type))].sort();
  summary.errors = errors;
  summary.server_error_events = raw.filter((e) => e.type === 'error');
  summary.schema = schema.summary();
  summary.event_count = raw.length;
  summary.events = raw.map(({ received_at: _at, ...event }) => event);
  return summary;
}

window.runAgentsWebRTC = run;

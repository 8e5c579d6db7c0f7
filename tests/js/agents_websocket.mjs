// The OpenAI Agents SDK for JavaScript (RealtimeSession + OpenAIRealtimeWebSocket) against
// realtalk, as an application written for OpenAI would use it, with only the URL changed.
//
//   node agents_websocket.mjs   (run by tests/test_agents_js.py)
//
// Environment: REALTALK_WS_URL (ws://host:port/v1/realtime), REALTALK_API_KEY (the standard
// key), QUESTION_PCM (raw pcm16 24 kHz mono: a spoken order-status question, with silence
// after it), EVENTS_OUT (a file: every raw server event, one JSON object a line).
// Prints one JSON summary on stdout. Exits 0 even when a check fails: the test asserts.
//
// The conversation:
//   1. audio: the spoken question → the model calls the tool, then speaks the result
//   2. text: a request for a long story → interrupted by session.interrupt() while it speaks
//   3. text: a plain question → a spoken answer (the session still works after the interruption)
import { readFileSync, writeFileSync } from 'node:fs';
import {
  OpenAIRealtimeWebSocket,
  RealtimeAgent,
  RealtimeSession,
  tool,
} from '@openai/agents-realtime';
import { WebSocket } from 'ws';
import { z } from 'zod';
import { SchemaCheck } from './sdk_schema.mjs';

const URL = process.env.REALTALK_WS_URL;
const API_KEY = process.env.REALTALK_API_KEY;
const QUESTION = readFileSync(process.env.QUESTION_PCM);
const EVENTS_OUT = process.env.EVENTS_OUT;
const STEP_LIMIT_MS = 120_000;

// The hint realtalk's own page gives its recognizer: the format of an order number.
const TRANSCRIPTION_HINT = 'Order numbers are written as digits, like order 1001.';
const ORDERS = {
  1001: { status: 'shipped', arrives: 'Tuesday' },
  1002: { status: 'processing', ships: 'in two days' },
  1003: { status: 'delivered', delivered: 'last week' },
};

const started = Date.now();
const since = () => Date.now() - started;
const raw = []; // every server event, in order
const sent = []; // every client event the SDK sent (audio payloads left out)
const sessionEvents = []; // {name, at, ...} of the RealtimeSession's own events
const toolCalls = []; // the arguments the SDK handed the tool's execute()
const errors = [];
const schema = new SchemaCheck();
const waiters = new Set();

function notify() {
  for (const waiter of [...waiters]) {
    if (waiter.test()) {
      waiters.delete(waiter);
      waiter.resolve();
    }
  }
}

/** Resolves once `test()` holds (checked after every event), or rejects after limitMs. */
function until(what, test, limitMs = STEP_LIMIT_MS) {
  if (test()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const waiter = { test, resolve };
    waiters.add(waiter);
    setTimeout(() => {
      if (waiters.delete(waiter)) reject(new Error(`timed out waiting for ${what}`));
    }, limitMs);
  });
}

// The SDK's Node shim opens its socket with the `ws` package: spying on send() records what
// the SDK itself sends (response.cancel, conversation.item.truncate…) without changing it.
const originalSend = WebSocket.prototype.send;
WebSocket.prototype.send = function send(data, ...rest) {
  try {
    const event = JSON.parse(String(data));
    const { audio: _audio, ...shown } = event;
    sent.push({ ...shown, at: since() });
  } catch {
    sent.push({ type: '<not json>', at: since() });
  }
  return originalSend.call(this, data, ...rest);
};

const getOrderStatus = tool({
  name: 'get_order_status',
  description: "Look up the status of a customer's order by its order number.",
  parameters: z.object({ order_id: z.string().describe('The order number, e.g. 1001') }),
  async execute({ order_id }) {
    toolCalls.push({ order_id, at: since() });
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

const transport = new OpenAIRealtimeWebSocket({ url: URL });
const session = new RealtimeSession(agent, {
  transport,
  model: 'gpt-realtime',
  // A vocabulary hint for the speech recognizer, as an application would give OpenAI's.
  config: {
    audio: { input: { transcription: { model: 'gpt-4o-mini-transcribe', prompt: TRANSCRIPTION_HINT } } },
  },
});

transport.on('*', (event) => {
  raw.push(event);
  schema.check(event);
  notify();
});
for (const name of [
  'audio_start',
  'audio_stopped',
  'audio_interrupted',
  'agent_start',
  'agent_end',
  'agent_tool_start',
  'agent_tool_end',
]) {
  session.on(name, (...args) => {
    const entry = { name, at: since() };
    if (name === 'agent_end') entry.text = args[2];
    if (name === 'agent_tool_start' || name === 'agent_tool_end') entry.tool = args[2]?.name;
    sessionEvents.push(entry);
    notify();
  });
}
const audioBytes = new Map(); // response id → bytes of audio the SDK emitted
session.on('audio', (event) => {
  audioBytes.set(event.responseId, (audioBytes.get(event.responseId) ?? 0) + event.data.byteLength);
  notify();
});
session.on('error', (event) => {
  const error = event.error;
  errors.push(
    error instanceof Error ? { message: error.message } : JSON.parse(JSON.stringify(error ?? null)),
  );
  notify();
});

const count = (name) => sessionEvents.filter((e) => e.name === name).length;
const rawAfter = (index, type) => raw.slice(index).filter((e) => e.type === type);

/** The `response.done` of the first reply after `index` that is a message (not a tool call). */
function spokenReplyDone(index) {
  return rawAfter(index, 'response.done').find((e) =>
    (e.response.output ?? []).some((item) => item.type === 'message'),
  );
}

function transcriptOf(done) {
  const parts = (done?.response.output ?? []).flatMap((item) => item.content ?? []);
  return parts.map((part) => part.transcript ?? part.text ?? '').join(' ');
}

async function sendSpeech(pcm) {
  // 100 ms chunks at twice real time: server VAD sees an ordinary stream.
  const chunk = 4800;
  for (let offset = 0; offset < pcm.length; offset += chunk) {
    const slice = pcm.subarray(offset, offset + chunk);
    session.sendAudio(slice.buffer.slice(slice.byteOffset, slice.byteOffset + slice.byteLength));
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function orderTurn(index, ask) {
  const toolsBefore = toolCalls.length;
  await ask();
  await until('the tool call', () => toolCalls.length > toolsBefore);
  await until('the spoken reply after the tool', () => spokenReplyDone(index) !== undefined);
  const done = spokenReplyDone(index);
  // The SDK fires agent_end while it handles that response.done, before this line runs.
  const ends = sessionEvents.filter((e) => e.name === 'agent_end');
  return {
    agent_end_text: ends.at(-1)?.text ?? null,
    order_ids: toolCalls.slice(toolsBefore).map((c) => c.order_id),
    status: done.response.status,
    transcript: transcriptOf(done),
    audio_bytes: audioBytes.get(done.response.id) ?? 0,
    audio_done: rawAfter(index, 'response.output_audio.done').some(
      (e) => e.response_id === done.response.id,
    ),
    user_transcripts: rawAfter(index, 'conversation.item.input_audio_transcription.completed').map(
      (e) => e.transcript,
    ),
  };
}

async function textTurn(index, question) {
  session.sendMessage(question);
  await until('the spoken reply', () => spokenReplyDone(index) !== undefined);
  const done = spokenReplyDone(index);
  return {
    status: done.response.status,
    transcript: transcriptOf(done),
    audio_bytes: audioBytes.get(done.response.id) ?? 0,
    audio_done: rawAfter(index, 'response.output_audio.done').some(
      (e) => e.response_id === done.response.id,
    ),
    function_calls: rawAfter(index, 'response.function_call_arguments.done').length,
  };
}

async function interruptTurn(index) {
  const stoppedBefore = count('audio_stopped');
  const interruptedBefore = count('audio_interrupted');
  session.sendMessage('Please tell me a long story about a dragon and a knight.');
  await until('the story to start', () => rawAfter(index, 'response.created').length > 0);
  const response = rawAfter(index, 'response.created')[0].response;
  await until('1 s of the story', () => (audioBytes.get(response.id) ?? 0) >= 48_000);
  // "Played" for a while; the local model is still writing the story, so the SDK cancels it.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const sentBefore = sent.length;
  const rawBefore = raw.length;
  session.interrupt();
  const interruptSent = sent.slice(sentBefore).map((e) => ({ ...e }));
  const truncate = interruptSent.find((e) => e.type === 'conversation.item.truncate');
  const result = {
    response_id: response.id,
    audio_bytes_before: audioBytes.get(response.id) ?? 0,
    sent: interruptSent.map((e) => e.type),
    truncate: truncate ?? null,
  };
  await until('the response to end', () =>
    raw.some((e) => e.type === 'response.done' && e.response.id === response.id),
  );
  if (truncate) {
    await until(
      'conversation.item.truncated or an error',
      () =>
        rawAfter(rawBefore, 'conversation.item.truncated').length > 0 ||
        rawAfter(rawBefore, 'error').length > 0,
    );
    // The SDK retrieves the truncated item (conversation.item.retrieve): wait for the answer.
    await until('conversation.item.retrieved or an error', () =>
      rawAfter(rawBefore, 'conversation.item.retrieved').length > 0 ||
      rawAfter(rawBefore, 'error').length > 0,
      10_000,
    ).catch(() => {});
  }
  // The SDK fires audio_stopped on response.output_audio.done; give it a moment to arrive.
  await until('audio_stopped', () => count('audio_stopped') > stoppedBefore, 5_000).catch(() => {});
  const done = raw.find((e) => e.type === 'response.done' && e.response.id === response.id);
  const truncated = rawAfter(rawBefore, 'conversation.item.truncated')[0] ?? null;
  const retrieved = rawAfter(rawBefore, 'conversation.item.retrieved')[0] ?? null;
  return {
    ...result,
    status: done.response.status,
    status_details: done.response.status_details ?? null,
    truncated: truncated && {
      item_id: truncated.item_id,
      content_index: truncated.content_index,
      audio_end_ms: truncated.audio_end_ms,
    },
    retrieved_transcript: retrieved ? transcriptOf({ response: { output: [retrieved.item] } }) : null,
    full_transcript: transcriptOf(done),
    audio_interrupted: count('audio_interrupted') - interruptedBefore,
    audio_stopped: count('audio_stopped') - stoppedBefore,
    output_audio_done: raw.some(
      (e) => e.type === 'response.output_audio.done' && e.response_id === response.id,
    ),
    events_after_interrupt: raw.slice(rawBefore).map((e) => e.type).filter((t) => !t.endsWith('.delta')),
  };
}

const summary = { ok: false };
try {
  await session.connect({ apiKey: API_KEY });
  summary.connected = true;
  await until('session.updated', () => raw.some((e) => e.type === 'session.updated'));

  let index = raw.length;
  summary.audio_turn = await orderTurn(index, () => sendSpeech(QUESTION));
  index = raw.length;
  summary.interrupted_turn = await interruptTurn(index);
  index = raw.length;
  summary.text_turn = await textTurn(index, 'Which city is the capital of France?');
  summary.ok = true;
} catch (error) {
  summary.failure = String(error?.stack ?? error);
} finally {
  session.close();
}

summary.tool_calls = toolCalls.map((c) => c.order_id);
// The conversation as the SDK keeps it (built from the server's item events).
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
writeFileSync(EVENTS_OUT, raw.map((e) => JSON.stringify(e)).join('\n') + '\n');
process.stdout.write(JSON.stringify(summary) + '\n');
process.exit(0);

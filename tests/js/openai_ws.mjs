// The official `openai` npm package's realtime WebSocket clients against realtalk over TLS:
// the GA `OpenAIRealtimeWS` (openai/realtime/ws) or the beta one (openai/beta/realtime/ws).
// Both always dial wss://, so realtalk serves TLS with a `realtalk dev-cert` certificate.
// The code is what an application written for OpenAI runs: only the environment differs
// (OPENAI_BASE_URL, and NODE_EXTRA_CA_CERTS to trust the development CA).
//
//   node openai_ws.mjs   (run by tests/test_openai_npm.py)
//
// Environment: GENERATION (ga or beta), OPENAI_BASE_URL (https://127.0.0.1:PORT/v1),
// OPENAI_API_KEY (realtalk's standard key), QUESTION_PCM (raw pcm16 24 kHz mono: a spoken
// question with silence after it), EVENTS_OUT (a file: every server event, one JSON a line).
// Prints one JSON summary on stdout. Exits 0 even when a step fails: the test asserts.
//
// The conversation, on one connection opened with an ephemeral key minted by the same package:
//   1. text: an order question → a function call → function_call_output → the text reply
//   2. text: a plain question → a text reply
//   3. audio: the spoken question appended as pcm16, server VAD ends the turn → the input
//      transcript, and a spoken reply (audio deltas + its transcript)
import { readFileSync, writeFileSync } from 'node:fs';
import OpenAI from 'openai';
import { OpenAIRealtimeWS as BetaRealtimeWS } from 'openai/beta/realtime/ws';
import { OpenAIRealtimeWS as GaRealtimeWS } from 'openai/realtime/ws';

const STEP_LIMIT_MS = 180_000;
const GENERATION = process.env.GENERATION;
const QUESTION = readFileSync(process.env.QUESTION_PCM);
const EVENTS_OUT = process.env.EVENTS_OUT;
const GA = GENERATION === 'ga';
if (!GA && GENERATION !== 'beta') throw new Error(`GENERATION must be ga or beta, not ${GENERATION}`);

const INSTRUCTIONS =
  'You are a friendly assistant in a shop. Use the get_order_status tool for questions about ' +
  'orders. Answer other questions in one short sentence.';
const TOOLS = [
  {
    type: 'function',
    name: 'get_order_status',
    description: "Look up the status of a customer's order by its order number.",
    parameters: {
      type: 'object',
      properties: { order_id: { type: 'string', description: 'The order number, e.g. 1001' } },
      required: ['order_id'],
    },
  },
];
const ORDERS = { 1001: { status: 'shipped', arrives: 'Tuesday' } };

// The names that differ between the generations.
const NAMES = GA
  ? {
      itemAdded: 'conversation.item.added',
      textDelta: 'response.output_text.delta',
      textDone: 'response.output_text.done',
      audioDelta: 'response.output_audio.delta',
      audioDone: 'response.output_audio.done',
      transcriptDelta: 'response.output_audio_transcript.delta',
      transcriptDone: 'response.output_audio_transcript.done',
    }
  : {
      itemAdded: 'conversation.item.created',
      textDelta: 'response.text.delta',
      textDone: 'response.text.done',
      audioDelta: 'response.audio.delta',
      audioDone: 'response.audio.done',
      transcriptDelta: 'response.audio_transcript.delta',
      transcriptDone: 'response.audio_transcript.done',
    };

const session = GA
  ? {
      type: 'realtime',
      instructions: INSTRUCTIONS,
      output_modalities: ['audio'],
      audio: {
        input: {
          format: { type: 'audio/pcm', rate: 24000 },
          transcription: { model: 'whisper-1' },
          turn_detection: { type: 'server_vad', silence_duration_ms: 500 },
        },
        output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy' },
      },
      tools: TOOLS,
      tool_choice: 'auto',
    }
  : {
      instructions: INSTRUCTIONS,
      modalities: ['text', 'audio'],
      voice: 'alloy',
      input_audio_format: 'pcm16',
      output_audio_format: 'pcm16',
      input_audio_transcription: { model: 'whisper-1' },
      turn_detection: { type: 'server_vad', silence_duration_ms: 500 },
      tools: TOOLS,
      tool_choice: 'auto',
    };
// A text-only reply: how each generation asks for one in response.create.
const textOnly = GA ? { output_modalities: ['text'] } : { modalities: ['text'] };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const events = [];
const errors = [];
const waiters = new Set();
let fatal = null; // a connection error: every wait ends at once
const notify = () => {
  for (const waiter of [...waiters]) {
    if (fatal || waiter.test()) {
      waiters.delete(waiter);
      if (fatal) waiter.reject(fatal);
      else waiter.resolve();
    }
  }
};
const until = (what, test, limitMs = STEP_LIMIT_MS) => {
  if (fatal) return Promise.reject(fatal);
  if (test()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const waiter = { test, resolve, reject };
    waiters.add(waiter);
    setTimeout(() => {
      if (waiters.delete(waiter)) reject(new Error(`timed out waiting for ${what}`));
    }, limitMs);
  });
};
const after = (index, type) => events.slice(index).filter((e) => e.type === type);
const typesAfter = (index) =>
  events
    .slice(index)
    .map((e) => e.type)
    .filter((t) => !t.endsWith('.delta'));
const joined = (index, type, responseId) =>
  after(index, type)
    .filter((e) => e.response_id === responseId)
    .map((e) => e.delta)
    .join('');
const textOf = (output) =>
  (output ?? [])
    .flatMap((item) => item.content ?? [])
    .map((part) => part.text ?? part.transcript ?? '')
    .join(' ');

const summary = { ok: false, generation: GENERATION };

// 1. An ephemeral key, minted over HTTPS by the package's own client.
const client = new OpenAI();
let apiKey = client.apiKey;
try {
  if (GA) {
    const secret = await client.realtime.clientSecrets.create({
      session: { type: 'realtime', model: 'gpt-realtime' },
    });
    apiKey = secret.value;
  } else {
    const created = await client.beta.realtime.sessions.create({
      model: 'gpt-4o-realtime-preview',
    });
    apiKey = created.client_secret.value;
  }
  summary.minted = apiKey.startsWith('ek_');
} catch (error) {
  // Reported, then the WebSocket is tried with the standard key (the test without the CA).
  const causes = [];
  for (let e = error; e && causes.length < 5; e = e.cause) causes.push(e.message ?? String(e));
  summary.mint_error = causes.join(' <- ');
}

const Realtime = GA ? GaRealtimeWS : BetaRealtimeWS;
const rt = new Realtime(
  { model: GA ? 'gpt-realtime' : 'gpt-4o-realtime-preview' },
  new OpenAI({ apiKey }),
);
summary.url = String(rt.url).replace(/\?.*/, '');
rt.on('event', (event) => {
  events.push(event);
  notify();
});
rt.on('error', (error) => {
  errors.push({ message: error.message, event: error.error ?? null });
  if (!error.error) fatal = error; // a socket error, not an `error` event
  notify();
});
rt.socket.on('open', () => {
  const tls = rt.socket._socket; // ws's underlying TLSSocket
  summary.tls = { protocol: tls.getProtocol?.() ?? null, authorized: tls.authorized ?? null };
});
const closed = new Promise((resolve) => rt.socket.on('close', (code) => resolve(code)));

async function respond(index, response) {
  rt.send({ type: 'response.create', ...(response ? { response } : {}) });
  await until('response.done', () => after(index, 'response.done').length > 0);
  return after(index, 'response.done')[0].response;
}

async function toolTurn() {
  let index = events.length;
  rt.send({
    type: 'conversation.item.create',
    item: {
      type: 'message',
      role: 'user',
      content: [{ type: 'input_text', text: "What's the status of order 1001?" }],
    },
  });
  const called = await respond(index, textOnly);
  const call = (called.output ?? []).find((item) => item.type === 'function_call');
  const argsDone = after(index, 'response.function_call_arguments.done')[0] ?? null;
  const result = {
    status: called.status,
    call: call ? { name: call.name, arguments: call.arguments, call_id: call.call_id } : null,
    arguments_done: argsDone && { call_id: argsDone.call_id, arguments: argsDone.arguments },
    argument_deltas: joined(index, 'response.function_call_arguments.delta', called.id),
    events: typesAfter(index),
  };
  if (!call) return result;
  const orderId = String(JSON.parse(call.arguments).order_id ?? '').replace(/\D/g, '');
  const order = ORDERS[orderId];
  index = events.length;
  rt.send({
    type: 'conversation.item.create',
    item: {
      type: 'function_call_output',
      call_id: call.call_id,
      output: JSON.stringify(order ? { order_id: orderId, ...order } : { error: 'no such order' }),
    },
  });
  await until('the output item', () =>
    after(index, NAMES.itemAdded).some((e) => e.item.type === 'function_call_output'),
  );
  const reply = await respond(index, textOnly);
  return {
    ...result,
    reply: {
      status: reply.status,
      text_deltas: joined(index, NAMES.textDelta, reply.id),
      text_done: after(index, NAMES.textDone).at(-1)?.text ?? null,
      output_text: textOf(reply.output),
      output_types: (reply.output ?? []).map((item) => item.type),
      events: typesAfter(index),
    },
  };
}

async function textTurn() {
  const index = events.length;
  rt.send({
    type: 'conversation.item.create',
    item: {
      type: 'message',
      role: 'user',
      content: [{ type: 'input_text', text: 'Which city is the capital of France?' }],
    },
  });
  const reply = await respond(index, textOnly);
  return {
    status: reply.status,
    text_deltas: joined(index, NAMES.textDelta, reply.id),
    text_done: after(index, NAMES.textDone).at(-1)?.text ?? null,
    output_text: textOf(reply.output),
    audio_deltas: after(index, NAMES.audioDelta).length,
    events: typesAfter(index),
  };
}

async function spokenTurn() {
  const index = events.length;
  // 100 ms chunks at twice real time: server VAD sees an ordinary stream.
  const chunk = 4800;
  for (let offset = 0; offset < QUESTION.length; offset += chunk) {
    const audio = QUESTION.subarray(offset, offset + chunk).toString('base64');
    rt.send({ type: 'input_audio_buffer.append', audio });
    await sleep(50);
  }
  await until('the spoken reply', () => after(index, 'response.done').length > 0);
  const reply = after(index, 'response.done')[0].response;
  await until(
    'the input transcript',
    () => after(index, 'conversation.item.input_audio_transcription.completed').length > 0,
  );
  const audioBytes = after(index, NAMES.audioDelta)
    .filter((e) => e.response_id === reply.id)
    .reduce((sum, e) => sum + Buffer.from(e.delta, 'base64').length, 0);
  return {
    status: reply.status,
    user_transcript:
      after(index, 'conversation.item.input_audio_transcription.completed')[0].transcript,
    audio_bytes: audioBytes,
    audio_deltas: after(index, NAMES.audioDelta).length,
    transcript_deltas: joined(index, NAMES.transcriptDelta, reply.id),
    transcript_done: after(index, NAMES.transcriptDone).at(-1)?.transcript ?? null,
    output_transcript: textOf(reply.output),
    events: typesAfter(index),
  };
}

try {
  await until('session.created', () => after(0, 'session.created').length > 0);
  summary.connected = true;
  const index = events.length;
  rt.send({ type: 'session.update', session });
  await until('session.updated', () => after(index, 'session.updated').length > 0);
  summary.tool_turn = await toolTurn();
  summary.text_turn = await textTurn();
  summary.spoken_turn = await spokenTurn();
  summary.ok = true;
} catch (error) {
  summary.failure = String(error?.stack ?? error);
} finally {
  rt.close();
}
summary.close_code = await Promise.race([closed, sleep(10_000).then(() => null)]);
summary.errors = errors;
summary.server_error_events = events.filter((e) => e.type === 'error');
summary.event_count = events.length;
writeFileSync(EVENTS_OUT, events.map((e) => JSON.stringify(e)).join('\n') + '\n');
process.stdout.write(JSON.stringify(summary) + '\n');
process.exit(0);

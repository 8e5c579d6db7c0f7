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
import { OpenAIRealtimeWebSocket, RealtimeSession } from '@openai/agents-realtime';
import { WebSocket } from 'ws';
import { createRecorder, sessionOptions, shopAgent, sleep, transcriptOf } from './checks.mjs';

const URL = process.env.REALTALK_WS_URL;
const API_KEY = process.env.REALTALK_API_KEY;
const QUESTION = readFileSync(process.env.QUESTION_PCM);
const EVENTS_OUT = process.env.EVENTS_OUT;

const started = Date.now();
const since = () => Date.now() - started;
const recorder = createRecorder(since);
const { raw, sent, sessionEvents, toolCalls, notify, until } = recorder;
const { count, rawAfter, forResponse, spokenReplyDone } = recorder;

// The SDK's Node shim opens its socket with the `ws` package: spying on send() records what
// the SDK itself sends (response.cancel, conversation.item.truncate…) without changing it.
recorder.spyOnSend(WebSocket.prototype);

const agent = shopAgent((orderId) => toolCalls.push(orderId));
const transport = new OpenAIRealtimeWebSocket({ url: URL });
const session = new RealtimeSession(agent, sessionOptions(transport));
recorder.listen(transport, session);

const audioBytes = new Map(); // response id → bytes of audio the SDK emitted
session.on('audio', (event) => {
  audioBytes.set(event.responseId, (audioBytes.get(event.responseId) ?? 0) + event.data.byteLength);
  notify();
});

async function sendSpeech(pcm) {
  // 100 ms chunks at twice real time: server VAD sees an ordinary stream.
  const chunk = 4800;
  for (let offset = 0; offset < pcm.length; offset += chunk) {
    const slice = pcm.subarray(offset, offset + chunk);
    session.sendAudio(slice.buffer.slice(slice.byteOffset, slice.byteOffset + slice.byteLength));
    await sleep(50);
  }
}

/** What a spoken reply (its `response.done` after `index`) said, and the audio the SDK got. */
function spokenReply(index, done) {
  return {
    status: done.response.status,
    transcript: transcriptOf(done.response.output),
    audio_bytes: audioBytes.get(done.response.id) ?? 0,
    audio_done: forResponse(index, 'response.output_audio.done', done.response.id).length > 0,
  };
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
    order_ids: toolCalls.slice(toolsBefore),
    ...spokenReply(index, done),
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
    ...spokenReply(index, done),
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
  await sleep(500);
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
  await until('the response to end', () => recorder.responseDone(response.id) !== undefined);
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
  const done = recorder.responseDone(response.id);
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
    retrieved_transcript: retrieved ? transcriptOf([retrieved.item]) : null,
    full_transcript: transcriptOf(done.response.output),
    audio_interrupted: count('audio_interrupted') - interruptedBefore,
    audio_stopped: count('audio_stopped') - stoppedBefore,
    output_audio_done: forResponse(0, 'response.output_audio.done', response.id).length > 0,
    events_after_interrupt: recorder.typesAfter(rawBefore),
  };
}

const summary = { ok: false };
await recorder.run(session, API_KEY, summary, async () => {
  await until('session.updated', () => raw.some((e) => e.type === 'session.updated'));

  let index = raw.length;
  summary.audio_turn = await orderTurn(index, () => sendSpeech(QUESTION));
  index = raw.length;
  summary.interrupted_turn = await interruptTurn(index);
  index = raw.length;
  summary.text_turn = await textTurn(index, 'Which city is the capital of France?');
});
writeFileSync(EVENTS_OUT, raw.map((e) => JSON.stringify(e)).join('\n') + '\n');
process.stdout.write(JSON.stringify(summary) + '\n');
process.exit(0);

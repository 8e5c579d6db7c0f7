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
import { OpenAIRealtimeWebRTC, RealtimeSession } from '@openai/agents-realtime';
import { createRecorder, sessionOptions, shopAgent, sleep, transcriptOf } from './checks.mjs';

async function run({ baseUrl, ephemeralKey }) {
  const started = performance.now();
  const since = () => Math.round(performance.now() - started);
  const recorder = createRecorder(since);
  const { raw, sent, toolCalls, until, count, rawAfter, forResponse, spokenReplyDone } = recorder;

  // What the SDK sends on the data channel, recorded without changing it.
  const restoreSend = recorder.spyOnSend(RTCDataChannel.prototype);

  const agent = shopAgent((orderId) => toolCalls.push(orderId));
  const audioElement = document.createElement('audio');
  document.body.append(audioElement);
  const transport = new OpenAIRealtimeWebRTC({ baseUrl, audioElement });
  const session = new RealtimeSession(agent, sessionOptions(transport));
  recorder.listen(transport, session);

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
  await recorder.run(session, ephemeralKey, summary, async () => {
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
    await until('the story to end', () => recorder.responseDone(storyId) !== undefined);
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
    const storyDone = recorder.responseDone(storyId);
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
      events_after_interrupt: recorder.typesAfter(rawBefore),
    };

    // 3. The session goes on.
    index = raw.length;
    session.sendMessage('What is the capital of France?');
    summary.text_turn = await spokenTurn(index);
  });
  restoreSend();
  summary.events = raw;
  return summary;
}

window.runAgentsWebRTC = run;

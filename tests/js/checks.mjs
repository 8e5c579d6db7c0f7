// What the two Agents SDK drivers share: agents_websocket.mjs (Node) and agents_webrtc.mjs
// (bundled by esbuild for Chromium; this file, and what it imports, goes into the bundle).
//
//   - the shop agent both talk to (its order tool, the session's transcription hint);
//   - a recorder of everything seen: every raw server event (each checked by the SDK's own
//     schemas, sdk_schema.mjs), what the SDK sent, its session events, its errors, the tool calls;
//     waits on those; and the summary fields tests/test_agents_js.py asserts on for both transports.
import { RealtimeAgent, tool } from '@openai/agents-realtime';
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
// The RealtimeSession events recorded, and those the summary counts.
const SESSION_EVENTS = [
  'audio_start',
  'audio_stopped',
  'audio_interrupted',
  'agent_start',
  'agent_end',
  'agent_tool_start',
  'agent_tool_end',
];
const COUNTED_SESSION_EVENTS = [
  'audio_start',
  'audio_stopped',
  'audio_interrupted',
  'agent_end',
  'agent_tool_start',
  'agent_tool_end',
];

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The text of items' content parts (audio transcripts or text), joined by spaces. */
export function transcriptOf(items) {
  return (items ?? [])
    .flatMap((item) => item.content ?? [])
    .map((part) => part.transcript ?? part.text ?? '')
    .join(' ');
}

/** The shop assistant, with get_order_status; `onToolCall(order_id)` sees each call. */
export function shopAgent(onToolCall) {
  const getOrderStatus = tool({
    name: 'get_order_status',
    description: "Look up the status of a customer's order by its order number.",
    parameters: z.object({ order_id: z.string().describe('The order number, e.g. 1001') }),
    async execute({ order_id }) {
      onToolCall(order_id);
      const order = ORDERS[order_id.replace(/\D/g, '')];
      return JSON.stringify(order ? { order_id, ...order } : { order_id, error: 'no such order' });
    },
  });
  return new RealtimeAgent({
    name: 'Shop assistant',
    instructions:
      'You are a friendly assistant in a shop. Use the get_order_status tool for questions ' +
      'about orders. Answer other questions in one short sentence. When asked for a story, ' +
      'tell a long one of at least six sentences.',
    tools: [getOrderStatus],
  });
}

/** RealtimeSession options over `transport`. */
export function sessionOptions(transport) {
  return {
    transport,
    model: 'gpt-realtime',
    // A vocabulary hint for the speech recognizer, as an application would give OpenAI's.
    config: {
      audio: {
        input: { transcription: { model: 'gpt-4o-mini-transcribe', prompt: TRANSCRIPTION_HINT } },
      },
    },
  };
}

/** Records one session's traffic; `since()` gives the milliseconds since the driver started. */
export function createRecorder(since) {
  const raw = []; // every server event, in order
  const sent = []; // every client event the SDK sent (audio payloads left out)
  const sessionEvents = []; // {name, at, ...} of the RealtimeSession's own events
  const toolCalls = []; // the order_id the SDK handed the tool's execute(), per call
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

  /** Resolves once `test()` holds (checked after every event), or rejects after limitMs. */
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

  /** Spies on `prototype.send` (the socket or data channel the SDK sends its events on), so
   * what the SDK itself sends is recorded without changing it. Returns the undo. */
  const spyOnSend = (prototype) => {
    const originalSend = prototype.send;
    prototype.send = function send(data, ...rest) {
      try {
        const { audio: _audio, ...shown } = JSON.parse(String(data));
        sent.push({ ...shown, at: since() });
      } catch {
        sent.push({ type: '<not json>', at: since() });
      }
      return originalSend.call(this, data, ...rest);
    };
    return () => {
      prototype.send = originalSend;
    };
  };

  /** Records (and schema-checks) every server event, the session's events and its errors. */
  const listen = (transport, session) => {
    transport.on('*', (event) => {
      raw.push(event);
      schema.check(event);
      notify();
    });
    for (const name of SESSION_EVENTS) {
      session.on(name, (...args) => {
        const entry = { name, at: since() };
        if (name === 'agent_end') entry.text = args[2];
        if (name === 'agent_tool_start' || name === 'agent_tool_end') entry.tool = args[2]?.name;
        sessionEvents.push(entry);
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
  };

  const count = (name) => sessionEvents.filter((e) => e.name === name).length;
  const rawAfter = (index, type) => raw.slice(index).filter((e) => e.type === type);
  const forResponse = (index, type, id) =>
    rawAfter(index, type).filter((e) => e.response_id === id);
  /** The `response.done` of the first reply after `index` that is a message (not a tool call). */
  const spokenReplyDone = (index) =>
    rawAfter(index, 'response.done').find((e) =>
      (e.response.output ?? []).some((item) => item.type === 'message'),
    );
  const responseDone = (id) =>
    raw.find((e) => e.type === 'response.done' && e.response.id === id);
  /** The types of the server events after `index`, deltas left out. */
  const typesAfter = (index) =>
    raw
      .slice(index)
      .map((e) => e.type)
      .filter((t) => !t.endsWith('.delta'));

  /** Connects, runs `steps`, closes; then fills `summary` (ok or failure, and what was seen). */
  const run = async (session, apiKey, summary, steps) => {
    try {
      await session.connect({ apiKey });
      summary.connected = true;
      await steps();
      summary.ok = true;
    } catch (error) {
      summary.failure = String(error?.stack ?? error);
    } finally {
      session.close();
    }
    summary.tool_calls = [...toolCalls];
    // The conversation as the SDK keeps it (built from the server's item events).
    summary.history = session.history.map((item) => ({
      type: item.type,
      role: item.role ?? null,
      status: item.status ?? null,
      name: item.name ?? null,
      output: item.output ?? null,
      text: transcriptOf([item]),
    }));
    summary.session_events = Object.fromEntries(
      COUNTED_SESSION_EVENTS.map((name) => [name, count(name)]),
    );
    summary.sent_types = [...new Set(sent.map((e) => e.type))].sort();
    summary.errors = errors;
    summary.server_error_events = raw.filter((e) => e.type === 'error');
    summary.schema = schema.summary();
    summary.event_count = raw.length;
    return summary;
  };

  return {
    raw,
    sent,
    sessionEvents,
    toolCalls,
    notify,
    until,
    spyOnSend,
    listen,
    count,
    rawAfter,
    forResponse,
    spokenReplyDone,
    responseDone,
    typesAfter,
    run,
  };
}

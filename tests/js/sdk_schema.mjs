// Every server event checked against the Agents SDK's own zod schemas, the ones its transports
// parse incoming events with (parseRealtimeEvent in openaiRealtimeEvents). An event whose type
// the SDK knows but whose shape its schema refuses is silently demoted to a "generic" event and
// ignored by the SDK, so a realtalk event of that kind would be lost without any error.
//
// The schemas are not re-exported by the package, so they are imported by file path (this file
// is bundled by esbuild for the browser test as well).
import { realtimeServerEventSchema } from './node_modules/@openai/agents-realtime/dist/openaiRealtimeEvents.mjs';

/** The event types the SDK has a schema for. */
export const SDK_EVENT_TYPES = new Set(
  realtimeServerEventSchema.options.map((option) => option.shape.type.value),
);

/** Collects every raw server event and what the SDK's schema says about each. */
export class SchemaCheck {
  constructor() {
    this.checked = 0;
    this.invalid = [];
    this.unknownTypes = new Set();
  }

  /** @param {any} raw a server event as JSON (what the transport's '*' listener receives) */
  check(raw) {
    this.checked += 1;
    const type = raw && typeof raw === 'object' ? raw.type : undefined;
    if (typeof type !== 'string') {
      this.invalid.push({ type: String(type), issues: ['no string type'] });
      return;
    }
    if (!SDK_EVENT_TYPES.has(type)) {
      this.unknownTypes.add(type);
      return;
    }
    const parsed = realtimeServerEventSchema.safeParse(raw);
    if (!parsed.success) {
      this.invalid.push({
        type,
        issues: parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`),
      });
    }
  }

  summary() {
    return {
      checked: this.checked,
      invalid: this.invalid,
      unknown_types: [...this.unknownTypes].sort(),
    };
  }
}

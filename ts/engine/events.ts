/**
 * Engine events (Docker's `events`): every engine operation that changes an object appends one
 * line to `$runroot/events.jsonl`, whichever front end (CLI or API service) did it, so that a
 * service started later, or a second one, sees the same history. O_APPEND writes of one line are
 * atomic between processes on a local filesystem, which the run root always is.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { EngineContext } from './context';

export type EventType = 'container' | 'image' | 'volume' | 'network';

export interface EngineEvent {
  Type: EventType;
  /** Docker's action names: create, start, die, stop, kill, destroy, pull, tag, untag, delete… */
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
}

/** An event as recorded: Docker's fields plus the time in seconds and nanoseconds. */
export interface RecordedEvent extends EngineEvent {
  scope: 'local';
  time: number;
  timeNano: number;
}

export function eventsFile(ctx: Pick<EngineContext, 'runRoot'>): string {
  return path.join(ctx.runRoot, 'events.jsonl');
}

/** Records an event; never fails the operation that emitted it (events are a view, not state). */
export function emitEvent(ctx: Pick<EngineContext, 'runRoot'>, e: EngineEvent, now = Date.now()): void {
  const rec: RecordedEvent = { ...e, scope: 'local', time: Math.floor(now / 1000), timeNano: now * 1_000_000 };
  try {
    fs.mkdirSync(ctx.runRoot, { recursive: true, mode: 0o700 });
    fs.appendFileSync(eventsFile(ctx), `${JSON.stringify(rec)}\n`, { mode: 0o600 });
  } catch {
    /* a full or read-only run root loses the event, not the operation */
  }
}

/**
 * Engine events (Docker's `events`): every engine operation that changes an object appends one
 * line to `$runroot/events.jsonl`, whichever front end (CLI or API service) did it, so that a
 * service started later, or a second one, sees the same history. O_APPEND writes of one line are
 * atomic between processes on a local filesystem, which the run root always is. The process that
 * holds a container (burrow-runtime's monitor or foreground run: crates/burrow-core/src/runtime/
 * holder.rs) appends the container's `start`, `oom` and `die` (with `exitCode` and
 * `execDuration`) and the network `disconnect`s to the same file: it alone sees the program
 * start and exit, so they come in Docker's order even when the CLI is slow or killed.
 *
 * The log is bounded: once the file passes `EVENTS_MAX_BYTES` it becomes `events.jsonl.1`
 * (replacing the older one) and a new file starts, so at most two files' worth is kept, as
 * Docker keeps a bounded buffer of past events.
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

/** One file's size limit; with the rotated file, about 8000 events are kept. */
export const EVENTS_MAX_BYTES = 1 << 20;

export function eventsFile(ctx: Pick<EngineContext, 'runRoot'>): string {
  return path.join(ctx.runRoot, 'events.jsonl');
}

/** An event as emitEvent records it at `now` (ms): also what a run plan's event templates are made from (ts/container/run-plan.ts). */
export function recordEvent(e: EngineEvent, now: number): RecordedEvent {
  return { ...e, scope: 'local', time: Math.floor(now / 1000), timeNano: now * 1_000_000 };
}

/**
 * Where a `burrow run` that may write a run plan collects the events it logs before its runtime
 * starts (ts/container/run-plan.ts); undefined otherwise (every other command and the API).
 */
let tap: RecordedEvent[] | undefined;

/** Starts collecting every event this process records from now on; returns the list they go to. */
export function tapEvents(): RecordedEvent[] {
  tap = [];
  return tap;
}

/** Records an event; never fails the operation that emitted it (events are a view, not state). */
export function emitEvent(ctx: Pick<EngineContext, 'runRoot'>, e: EngineEvent, now = Date.now(), maxBytes = EVENTS_MAX_BYTES): void {
  const rec = recordEvent(e, now);
  tap?.push(rec);
  const file = eventsFile(ctx);
  try {
    fs.mkdirSync(ctx.runRoot, { recursive: true, mode: 0o700 });
    const fd = fs.openSync(file, 'a', 0o600);
    try {
      fs.writeSync(fd, `${JSON.stringify(rec)}\n`);
      const st = fs.fstatSync(fd);
      // Rotated only if the file is still the one written to: two writers crossing the limit at
      // once must not both rename, the second moving the first's fresh file over the history.
      if (st.size > maxBytes && fs.statSync(file).ino === st.ino) fs.renameSync(file, `${file}.1`);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* a full or read-only run root loses the event, not the operation */
  }
}

/**
 * The exit status in the last `die` event of a container, if the log still has one: what a
 * `wait?condition=removed` answers when the container ran, exited and was removed (`--rm`, by its
 * monitor) between two of its looks, so that no look saw it exited.
 */
export function lastDieExit(ctx: Pick<EngineContext, 'runRoot'>, id: string): number | undefined {
  const file = eventsFile(ctx);
  for (const f of [file, `${file}.1`]) {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    const lines = text.split('\n');
    for (let i = lines.length - 1; i >= 0; i--) {
      if (!lines[i]!.includes(id)) continue;
      const e = parseEventLine(lines[i]!);
      if (e?.Type === 'container' && e.Action === 'die' && e.Actor.ID === id) {
        const code = Number(e.Actor.Attributes.exitCode);
        if (Number.isInteger(code)) return code;
      }
    }
  }
  return undefined;
}

function isEvent(v: unknown): v is RecordedEvent {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Partial<RecordedEvent>;
  return typeof e.Type === 'string' && typeof e.Action === 'string' && typeof e.Actor === 'object' && e.Actor !== null && typeof e.Actor.ID === 'string';
}

/**
 * A line of the log as an event, with what a minimal writer (the monitor) may leave out filled
 * in: attributes, scope, and either time from the other.
 */
export function parseEventLine(line: string): RecordedEvent | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined; // a torn line (a writer killed mid-write) is skipped, not fatal
  }
  if (!isEvent(v)) return undefined;
  const attrs: Record<string, string> = {};
  for (const [k, x] of Object.entries(v.Actor.Attributes ?? {})) attrs[k] = String(x);
  const timeNano = typeof v.timeNano === 'number' ? v.timeNano : typeof v.time === 'number' ? v.time * 1e9 : 0;
  const time = typeof v.time === 'number' ? v.time : Math.floor(timeNano / 1e9);
  return { Type: v.Type, Action: v.Action, Actor: { ID: v.Actor.ID, Attributes: attrs }, scope: 'local', time, timeNano };
}

function parseLines(text: string): RecordedEvent[] {
  const out: RecordedEvent[] = [];
  for (const l of text.split('\n')) {
    if (!l) continue;
    const e = parseEventLine(l);
    if (e) out.push(e);
  }
  return out;
}

/**
 * Past events then new ones as they are appended, for `events`: the rotated file, then the
 * current one read to its end through one descriptor that is then followed (inotify on the run
 * root wakes it; a slow poll covers a missed notification). A rotation while following is seen
 * as a new inode at the path: the old descriptor is drained, then the rotated file if it is
 * one this reader never saw (a second rotation), then the new file from its start, so no event
 * is lost or read twice unless the reader falls three files behind.
 */
export class EventLog {
  private fd: number | undefined;
  private ino = 0;
  private offset = 0;
  private partial = '';
  private watcher: fs.FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly ctx: Pick<EngineContext, 'runRoot'>) {}

  /** Every event kept so far, oldest first; following starts where this ends. */
  history(): RecordedEvent[] {
    const file = eventsFile(this.ctx);
    let old: RecordedEvent[] = [];
    try {
      old = parseLines(fs.readFileSync(`${file}.1`, 'utf8'));
    } catch {
      /* never rotated */
    }
    this.open();
    return [...old, ...this.drain()];
  }

  /** Skips what the log holds (a stream of new events only): no reading or parsing of the past. */
  skipHistory(): void {
    this.open();
    if (this.fd !== undefined) this.offset = fs.fstatSync(this.fd).size;
  }

  /** Calls `onEvent` for each event appended after history() or skipHistory(), until `close()`. */
  follow(onEvent: (e: RecordedEvent) => void): void {
    // Without a file yet, the first wake after it appears reads it from its start.
    const wake = () => {
      if (this.closed) return;
      for (const e of this.readNew()) onEvent(e);
    };
    try {
      fs.mkdirSync(this.ctx.runRoot, { recursive: true, mode: 0o700 });
      this.watcher = fs.watch(this.ctx.runRoot, { persistent: false }, (_t, name) => {
        if (!name || String(name).startsWith('events.jsonl')) wake();
      });
      this.watcher.on('error', () => undefined);
    } catch {
      /* no inotify left: the poll below still follows */
    }
    this.poll = setInterval(wake, 1000);
    wake(); // what was appended between history() and the watch
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    if (this.poll) clearInterval(this.poll);
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }

  private open(): void {
    try {
      this.fd = fs.openSync(eventsFile(this.ctx), 'r');
      this.ino = fs.fstatSync(this.fd).ino;
      this.offset = 0;
      this.partial = '';
    } catch {
      this.fd = undefined; // no event yet: the file is opened when it appears
    }
  }

  /** What the descriptor has past the offset, as whole lines (a half-written line waits). */
  private drain(): RecordedEvent[] {
    if (this.fd === undefined) return [];
    const chunks: Buffer[] = [];
    const buf = Buffer.allocUnsafe(64 << 10);
    for (;;) {
      const n = fs.readSync(this.fd, buf, 0, buf.length, this.offset);
      if (n <= 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
      this.offset += n;
    }
    const text = this.partial + Buffer.concat(chunks).toString('utf8');
    const cut = text.lastIndexOf('\n');
    this.partial = text.slice(cut + 1);
    return parseLines(text.slice(0, cut + 1));
  }

  private readNew(): RecordedEvent[] {
    const out = this.drain();
    let ino: number;
    try {
      ino = fs.statSync(eventsFile(this.ctx)).ino;
    } catch {
      return out; // rotated away and nothing written since: the next event creates the file
    }
    if (ino !== this.ino || this.fd === undefined) {
      const old = this.fd === undefined ? undefined : this.ino;
      if (this.fd !== undefined) fs.closeSync(this.fd);
      // Two rotations since the last read: the rotated file is one this reader never saw.
      if (old !== undefined) {
        try {
          const rotated = `${eventsFile(this.ctx)}.1`;
          const r = fs.statSync(rotated).ino;
          if (r !== old && r !== ino) out.push(...parseLines(fs.readFileSync(rotated, 'utf8')));
        } catch {
          /* none */
        }
      }
      this.open();
      out.push(...this.drain());
    }
    return out;
  }
}

/** A time as Docker's clients send `since`/`until`: unix seconds (with a fraction), or RFC 3339. In nanoseconds. */
export function parseEventTime(v: string): number | undefined {
  if (/^\d+(\.\d{1,9})?$/.test(v)) {
    const [s, frac = ''] = v.split('.');
    return Number(s) * 1e9 + Number(frac.padEnd(9, '0'));
  }
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? undefined : ms * 1e6;
}

export const EVENT_FILTERS = ['type', 'event', 'container', 'image', 'label', 'volume', 'network', 'scope', 'daemon', 'plugin', 'node', 'service', 'secret', 'config'] as const;

const prefixOf = (vals: string[] | undefined, s: string | undefined) => !vals?.length || (s !== undefined && vals.some((v) => s.startsWith(v)));
const exact = (vals: string[] | undefined, ...s: (string | undefined)[]) => !vals?.length || vals.some((v) => s.includes(v));
const stripTag = (ref: string | undefined) => ref?.replace(/:[^:/@]+$/, '');

/**
 * Docker's event filters (daemon/events/filter.go): `type`, `event` (the action; `exec_start:
 * sh` counts as `exec_start`), `container`/`volume`/`network` (the actor's id or name, by prefix),
 * `image` (an image event's id or name, a container event's image, with or without the tag),
 * `label` (`KEY` or `KEY=VALUE` among the attributes, all of them). Every given filter must match.
 */
export function eventMatches(f: Record<string, string[]>, e: RecordedEvent): boolean {
  const a = e.Actor.Attributes;
  const byName = (key: string) => !f[key]?.length || prefixOf(f[key], e.Actor.ID) || prefixOf(f[key], a.name);
  const imageName = e.Type === 'image' ? a.name : a.image;
  const labels = (f.label ?? []).every((l) => {
    const i = l.indexOf('=');
    return i < 0 ? l in a : a[l.slice(0, i)] === l.slice(i + 1);
  });
  return (
    exact(f.type, e.Type) &&
    exact(f.event, e.Action.replace(/:.*$/, ''), e.Action) &&
    exact(f.scope, 'local') &&
    byName('container') &&
    byName('volume') &&
    byName('network') &&
    exact(f.image, e.Actor.ID, imageName, stripTag(e.Actor.ID), stripTag(imageName)) &&
    labels &&
    !f.plugin?.length &&
    !f.node?.length &&
    !f.service?.length &&
    !f.secret?.length &&
    !f.config?.length
  );
}

/** Docker's message, with the fields 1.41 clients still read beside Type/Action/Actor (status, id, from). */
export function dockerMessage(e: RecordedEvent): Record<string, unknown> {
  const legacy = e.Type === 'container' || e.Type === 'image' ? { status: e.Action, id: e.Actor.ID, ...(e.Actor.Attributes.image ? { from: e.Actor.Attributes.image } : {}) } : {};
  return { ...legacy, Type: e.Type, Action: e.Action, Actor: e.Actor, scope: e.scope, time: e.time, timeNano: e.timeNano };
}

/**
 * `events` (also `system events`): the engine's events as `docker events` prints them, from the
 * log every front end writes (ts/engine/events.ts), through the API's own stream
 * (engine/system.ts streamEvents). Flags and output only.
 */
import type { Command } from 'commander';
import { BurrowError } from '../../errors';
import type { RecordedEvent } from '../../engine/events';
import { collect, context } from '../context';

const GO_DURATION = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/**
 * A time as `docker events` takes it, in nanoseconds: unix seconds, an RFC 3339 date, or a Go
 * duration (`10m`, `1h30m`) back from now, as Docker's client turns it into a time.
 */
export function eventTime(v: string, parse: (v: string) => number | undefined, nowNs = Date.now() * 1e6): number {
  if (GO_DURATION.test(v)) {
    let ns = 0;
    for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ns += Number(m[1]) * UNIT_NS[m[2]!]!;
    return nowNs - ns;
  }
  const t = parse(v);
  if (t === undefined) throw new BurrowError('EUSAGE', `invalid time ${JSON.stringify(v)}`, 'give unix seconds (1700000000.5), an RFC 3339 date (2026-12-07T12:00:00Z) or a duration back from now (10m, 1h30m)');
  return t;
}

/** Docker's RFC3339NanoFixed in the local time zone: 2026-12-07T12:00:00.123456789+01:00. */
export function eventTimestamp(timeNano: number): string {
  const ms = Math.floor(timeNano / 1e6);
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const local = new Date(ms + off * 60_000).toISOString().slice(0, 19);
  const nanos = String(Math.round(timeNano % 1e9)).padStart(9, '0');
  const zone = off === 0 ? 'Z' : `${off > 0 ? '+' : '-'}${String(Math.floor(Math.abs(off) / 60)).padStart(2, '0')}:${String(Math.abs(off) % 60).padStart(2, '0')}`;
  return `${local}.${nanos}${zone}`;
}

/** The default line: time, type, action, actor id, then the attributes sorted by key. */
export function eventLine(e: RecordedEvent): string {
  const a = e.Actor.Attributes;
  const keys = Object.keys(a).sort();
  return `${eventTimestamp(e.timeNano)} ${e.Type} ${e.Action} ${e.Actor.ID}${keys.length ? ` (${keys.map((k) => `${k}=${a[k]}`).join(', ')})` : ''}\n`;
}

/** The event as a --format template sees it: Docker's events.Message fields by their Go names. */
function templateObject(e: RecordedEvent, m: Record<string, unknown>): Record<string, unknown> {
  return { Status: m.status ?? '', ID: m.id ?? '', From: m.from ?? '', Type: e.Type, Action: e.Action, Actor: e.Actor, Scope: e.scope, Time: e.time, TimeNano: e.timeNano };
}

export function registerEventsCommand(parent: Command): void {
  parent
    .command('events')
    .description("show the engine's events (containers, images, volumes, networks): new ones as they happen, or those between --since and --until")
    .option('--since <time>', 'events since then: unix seconds, an RFC 3339 date, or a duration back from now (10m)')
    .option('--until <time>', 'stop at this time (the same forms); without it, follow until interrupted')
    .option('-f, --filter <key=value>', 'type=, event=, container=, image=, label=, volume=, network= (repeatable)', collect, [])
    .option('--format <template>', "json, or a Go-template-like format such as '{{.Type}} {{.Action}} {{.Actor.Attributes.name}}'")
    .action(async (opts: { since?: string; until?: string; filter: string[]; format?: string }, cmd: Command) => {
      const ctx = context(cmd);
      const [{ parseEventTime, EVENT_FILTERS, dockerMessage }, { streamEvents }, { render }] = await Promise.all([import('../../engine/events'), import('../../engine/system'), import('../format/table')]);
      const now = Date.now() * 1e6;
      const since = opts.since !== undefined ? eventTime(opts.since, parseEventTime, now) : undefined;
      const until = opts.until !== undefined ? eventTime(opts.until, parseEventTime, now) : undefined;
      const filters: Record<string, string[]> = {};
      for (const f of opts.filter) {
        const i = f.indexOf('=');
        const k = i < 0 ? f : f.slice(0, i);
        if (i < 0 || !(EVENT_FILTERS as readonly string[]).includes(k)) throw new BurrowError('EUSAGE', `invalid filter '${f}'`, `use KEY=VALUE with a key of ${EVENT_FILTERS.join(', ')}`);
        (filters[k] ??= []).push(f.slice(i + 1));
      }
      const stop = new AbortController();
      const end = () => stop.abort();
      process.once('SIGINT', end);
      process.once('SIGTERM', end);
      const write = (e: RecordedEvent) => {
        const m = dockerMessage(e);
        if (opts.format === 'json') process.stdout.write(`${JSON.stringify(m)}\n`);
        else if (opts.format) process.stdout.write(`${render(opts.format, templateObject(e, m))}\n`);
        else process.stdout.write(eventLine(e));
      };
      try {
        await streamEvents(ctx, { since, until, filters }, write, stop.signal);
      } finally {
        process.off('SIGINT', end);
        process.off('SIGTERM', end);
      }
    });
}

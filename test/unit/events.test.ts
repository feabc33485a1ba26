/**
 * The events log (ts/engine/events.ts): bounded by rotation, followed across a rotation without
 * losing or repeating an event, a minimal writer's line (the monitor's `die`) completed, Docker's
 * filters and time forms.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { emitEvent, EventLog, lastDieExit, eventMatches, eventsFile, parseEventLine, parseEventTime, type RecordedEvent } from '../../ts/engine/events';

const dirs: string[] = [];
function ctx() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-events-'));
  dirs.push(d);
  return { runRoot: d };
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const vol = (id: string) => ({ Type: 'volume' as const, Action: 'create', Actor: { ID: id, Attributes: { driver: 'local' } } });

describe('the events log', () => {
  it('rotates past its limit, keeping the older file once, and reads both in order', () => {
    const c = ctx();
    for (let i = 0; i < 30; i++) emitEvent(c, vol(`v${i}`), 1_000 + i, 1000);
    const size = fs.statSync(eventsFile(c)).size;
    expect(size).toBeLessThanOrEqual(1000 + 200);
    expect(fs.statSync(`${eventsFile(c)}.1`).size).toBeLessThanOrEqual(1000 + 200);
    const ids = new EventLog(c).history().map((e) => e.Actor.ID);
    // The newest events are all there, in order, and nothing older than the rotated file.
    expect(ids.at(-1)).toBe('v29');
    expect(ids).toEqual(ids.slice().sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))));
    expect(ids.length).toBeLessThan(30);
  });

  it('follows new events across a rotation, none lost or repeated', async () => {
    const c = ctx();
    emitEvent(c, vol('before'), 1000, 600);
    const log = new EventLog(c);
    expect(log.history().map((e) => e.Actor.ID)).toEqual(['before']);
    const seen: string[] = [];
    log.follow((e) => seen.push(e.Actor.ID));
    // About five events fill a file: twelve at once rotate it twice before the reader wakes.
    for (let i = 0; i < 12; i++) emitEvent(c, vol(`n${i}`), 2000 + i, 600);
    for (let i = 0; i < 200 && seen.length < 12; i++) await new Promise((r) => setTimeout(r, 20));
    // Then one at a time.
    for (let i = 12; i < 20; i++) {
      emitEvent(c, vol(`n${i}`), 2000 + i, 600);
      for (let j = 0; j < 200 && seen.length <= i; j++) await new Promise((r) => setTimeout(r, 10));
    }
    log.close();
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => `n${i}`));
  });

  it("completes a minimal writer's line and skips a torn one", () => {
    const e = parseEventLine('{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":1}},"timeNano":1700000000500000000}');
    expect(e).toEqual({ Type: 'container', Action: 'die', Actor: { ID: 'abc', Attributes: { exitCode: '1' } }, scope: 'local', time: 1700000000, timeNano: 1700000000500000000 });
    expect(parseEventLine('{"Type":"container","Act')).toBeUndefined();
    expect(parseEventLine('{"hello":1}')).toBeUndefined();
  });

  it("reads Docker's time forms", () => {
    expect(parseEventTime('1700000000')).toBe(1700000000e9);
    expect(parseEventTime('1700000000.5')).toBe(1700000000e9 + 5e8);
    expect(parseEventTime('2023-11-14T22:13:20Z')).toBe(1700000000e9);
    expect(parseEventTime('yesterday')).toBeUndefined();
  });

  it("matches Docker's filters", () => {
    const e: RecordedEvent = { Type: 'container', Action: 'exec_start: sh -c true', Actor: { ID: 'abcdef0123', Attributes: { name: 'web', image: 'nginx:1.25', team: 'a' } }, scope: 'local', time: 1, timeNano: 1e9 };
    expect(eventMatches({}, e)).toBe(true);
    expect(eventMatches({ type: ['container'], event: ['exec_start'] }, e)).toBe(true);
    expect(eventMatches({ event: ['die'] }, e)).toBe(false);
    expect(eventMatches({ container: ['abc'] }, e)).toBe(true);
    expect(eventMatches({ container: ['web'] }, e)).toBe(true);
    expect(eventMatches({ container: ['db'] }, e)).toBe(false);
    expect(eventMatches({ image: ['nginx'] }, e)).toBe(true);
    expect(eventMatches({ image: ['nginx:1.25'] }, e)).toBe(true);
    expect(eventMatches({ image: ['redis'] }, e)).toBe(false);
    expect(eventMatches({ label: ['team'] }, e)).toBe(true);
    expect(eventMatches({ label: ['team=a'] }, e)).toBe(true);
    expect(eventMatches({ label: ['team=b'] }, e)).toBe(false);
    expect(eventMatches({ volume: ['x'] }, e)).toBe(false);
  });
});

describe('lastDieExit', () => {
  it("reads a removed container's exit status from its last die event, also in the rotated file", () => {
    const runRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-die-'));
    try {
      const ctx = { runRoot };
      const id = 'a'.repeat(64);
      expect(lastDieExit(ctx, id)).toBeUndefined();
      // The monitor's minimal line, then a later run of the same container.
      fs.writeFileSync(`${eventsFile(ctx)}.1`, `{"Type":"container","Action":"die","Actor":{"ID":"${id}","Attributes":{"exitCode":"3"}}}\n`);
      expect(lastDieExit(ctx, id)).toBe(3);
      emitEvent(ctx, { Type: 'container', Action: 'die', Actor: { ID: id, Attributes: { exitCode: '2' } } });
      emitEvent(ctx, { Type: 'container', Action: 'destroy', Actor: { ID: id, Attributes: {} } });
      emitEvent(ctx, { Type: 'container', Action: 'die', Actor: { ID: 'b'.repeat(64), Attributes: { exitCode: '9' } } });
      expect(lastDieExit(ctx, id)).toBe(2);
    } finally {
      fs.rmSync(runRoot, { recursive: true, force: true });
    }
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkHealthcheck, healthcheckFromFlags, mergeHealthcheck, parseGoDuration, readHealth } from '../../ts/container/health';
import { statusText } from '../../ts/engine/list';
import type { ContainerState } from '../../ts/container/state';

describe('healthcheck flags, merge and state (ts/container/health.ts)', () => {
  it('Go durations as the docker CLI takes them', () => {
    expect(parseGoDuration('30s', 'x')).toBe(30e9);
    expect(parseGoDuration('1m30s', 'x')).toBe(90e9);
    expect(parseGoDuration('500ms', 'x')).toBe(5e8);
    expect(parseGoDuration('1.5h', 'x')).toBe(5400e9);
    expect(parseGoDuration('0', 'x')).toBe(0);
    expect(() => parseGoDuration('10', '--health-timeout')).toThrow(/invalid --health-timeout 10/);
    expect(() => parseGoDuration('-1s', '--health-interval')).toThrow(/--health-interval cannot be negative/);
  });

  it('--health-* and --no-healthcheck as the docker CLI builds Config.Healthcheck', () => {
    expect(healthcheckFromFlags({})).toBeUndefined();
    expect(healthcheckFromFlags({ healthcheck: true })).toBeUndefined();
    expect(healthcheckFromFlags({ healthcheck: false })).toEqual({ Test: ['NONE'] });
    expect(() => healthcheckFromFlags({ healthcheck: false, healthRetries: '2' })).toThrow(/conflicts with --health-\* options/);
    expect(healthcheckFromFlags({ healthCmd: 'curl -f localhost', healthInterval: '5s', healthTimeout: '1s', healthRetries: '2', healthStartPeriod: '1m', healthStartInterval: '100ms' })).toEqual({
      Test: ['CMD-SHELL', 'curl -f localhost'],
      Interval: 5e9,
      Timeout: 1e9,
      Retries: 2,
      StartPeriod: 60e9,
      StartInterval: 1e8,
    });
    // Without a command: the image's test is kept (the merge fills it in).
    expect(healthcheckFromFlags({ healthRetries: '5' })).toEqual({ Test: [], Retries: 5 });
    expect(() => healthcheckFromFlags({ healthRetries: '-1' })).toThrow(/--health-retries cannot be negative/);
  });

  it("the user's fields over the image's, as moby's merge", () => {
    const image = { Test: ['CMD', 'check'], Interval: 1e9, Retries: 4 };
    expect(mergeHealthcheck(undefined, image)).toEqual(image);
    expect(mergeHealthcheck(undefined, undefined)).toBeUndefined();
    expect(mergeHealthcheck({ Test: [], Retries: 7 }, image)).toEqual({ Test: ['CMD', 'check'], Interval: 1e9, Retries: 7 });
    expect(mergeHealthcheck({ Test: ['NONE'] }, image)).toEqual({ Test: ['NONE'], Interval: 1e9, Retries: 4 });
    expect(mergeHealthcheck({ Test: ['CMD-SHELL', 'x'] }, undefined)).toEqual({ Test: ['CMD-SHELL', 'x'] });
  });

  it("Docker's checks of a healthcheck", () => {
    expect(() => checkHealthcheck({ Test: ['CMD'] })).toThrow(/invalid healthcheck test/);
    expect(() => checkHealthcheck({ Test: ['CMD-SHELL'] })).toThrow(/invalid healthcheck test/);
    expect(() => checkHealthcheck({ Test: ['SHELL', 'x'] })).toThrow(/invalid healthcheck test/);
    expect(() => checkHealthcheck({ Test: ['CMD', 'x'], Interval: 500 })).toThrow(/Interval cannot be less than 1ms/);
    expect(() => checkHealthcheck({ Test: ['CMD', 'x'], Retries: -1 })).toThrow(/Retries cannot be negative/);
    expect(() => checkHealthcheck({ Test: [], Interval: 0, Retries: 0 })).not.toThrow();
  });

  it('State.Health from health.json: starting before the first write, unhealthy once stopped, none when created', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-health-unit-'));
    try {
      const hc = { Test: ['CMD', 'true'] };
      expect(readHealth(undefined, dir, 'running')).toBeUndefined();
      expect(readHealth({ Test: ['NONE'] }, dir, 'running')).toBeUndefined();
      expect(readHealth(hc, dir, 'created')).toBeUndefined();
      expect(readHealth(hc, dir, 'running')).toEqual({ Status: 'starting', FailingStreak: 0, Log: [] });
      const st = { Status: 'healthy', FailingStreak: 0, Log: [{ Start: 'a', End: 'b', ExitCode: 0, Output: '' }] };
      fs.writeFileSync(path.join(dir, 'health.json'), JSON.stringify(st));
      expect(readHealth(hc, dir, 'running')).toEqual(st);
      expect(readHealth(hc, dir, 'exited')).toEqual({ ...st, Status: 'unhealthy' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("ps's status text with the health, as Docker's", () => {
    const now = Date.parse('2026-01-01T00:00:10Z');
    const state = { status: 'running', startedAt: '2026-01-01T00:00:07Z' } as ContainerState;
    expect(statusText({ state, status: 'running', health: 'healthy' }, now)).toBe('Up 3 seconds (healthy)');
    expect(statusText({ state, status: 'running', health: 'starting' }, now)).toBe('Up 3 seconds (health: starting)');
    expect(statusText({ state, status: 'running', health: 'unhealthy' }, now)).toBe('Up 3 seconds (unhealthy)');
    expect(statusText({ state, status: 'paused', health: 'healthy' }, now)).toBe('Up 3 seconds (Paused)');
    expect(statusText({ state, status: 'running' }, now)).toBe('Up 3 seconds');
  });
});

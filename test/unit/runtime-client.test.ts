import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BurrowError } from '../../ts/errors';
import { PassThrough } from 'node:stream';
import {
  exitForRuntimeError,
  exitStatusOf,
  globalFlags,
  outcomeOf,
  parseReport,
  parseReports,
  readReports,
  runtimeError,
  runtimeSync,
  statusFlags,
  syncError,
  type RuntimeReport,
} from '../../ts/runtime/client';

describe('runtime client: global flags', () => {
  const rec = { runtimeRoot: '/run/x/runtime' };
  const sd = { runtimeRoot: '/run/x/runtime', cgroupManager: 'systemd' as const };

  it('always gives --root, first', () => {
    expect(globalFlags(rec)).toEqual(['--root', '/run/x/runtime']);
    expect(globalFlags(sd)).toEqual(['--root', '/run/x/runtime']);
  });

  it('gives --systemd-cgroup only when asked and the container uses systemd, --share-userns whenever asked', () => {
    expect(globalFlags(rec, { cgroup: true })).toEqual(['--root', '/run/x/runtime', '--share-userns']);
    expect(globalFlags(sd, { cgroup: true })).toEqual(['--root', '/run/x/runtime', '--systemd-cgroup', '--share-userns']);
  });

  it('gives --log FILE --log-format json after the cgroup flag', () => {
    expect(globalFlags(sd, { cgroup: true, log: '/tmp/r.log' })).toEqual(['--root', '/run/x/runtime', '--systemd-cgroup', '--share-userns', '--log', '/tmp/r.log', '--log-format', 'json']);
    expect(globalFlags(rec, { log: '/tmp/r.log' })).toEqual(['--root', '/run/x/runtime', '--log', '/tmp/r.log', '--log-format', 'json']);
  });
});

describe('runtime client: errors', () => {
  const tmp: string[] = [];
  afterEach(() => {
    for (const d of tmp.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('reads the status channel: pid, error with its code, exit with its signal, restart; anything else skipped', () => {
    expect(statusFlags()).toEqual(['--status-fd', '3']);
    expect(parseReport('{"pid":42}')).toEqual({ kind: 'pid', pid: 42 });
    expect(parseReport('{"error":"exec: \\"nope\\": not found","code":"ECMD_NOT_FOUND"}')).toEqual({ kind: 'error', error: 'exec: "nope": not found', code: 'ECMD_NOT_FOUND' });
    expect(parseReport('{"error":"x"}')).toEqual({ kind: 'error', error: 'x', code: 'ERUNTIME' });
    expect(parseReport('{"exit":137,"signal":"KILL"}')).toEqual({ kind: 'exit', exit: 137, signal: 'KILL' });
    expect(parseReport('{"exit":0}')).toEqual({ kind: 'exit', exit: 0 });
    expect(parseReport('{"restart":2}')).toEqual({ kind: 'restart', restart: 2 });
    for (const bad of ['', 'not json', '[]', 'null', '{"pid":"1"}', '{"exit":null}', '{}']) expect(parseReport(bad)).toBeUndefined();
    // a partial last line is not a report yet
    const all = parseReports('{"pid":7}\nnoise\n{"error":"bad","code":"ESECCOMP"}\n{"exit":125}\n{"exi');
    expect(all.map((r) => r.kind)).toEqual(['pid', 'error', 'exit']);
    expect(outcomeOf(all)).toEqual({ pid: 7, failure: { code: 'ESECCOMP', msg: 'bad' }, exit: 125 });
  });

  it('gives Docker\'s status: the reported exit, else the error code\'s (the generated table), else the fallback', () => {
    expect(exitStatusOf({ exit: 3 }, 1)).toBe(3);
    expect(exitStatusOf({ failure: { code: 'ECMD_NOT_FOUND', msg: 'x' } }, 1)).toBe(127);
    expect(exitStatusOf({ failure: { code: 'ECMD_CANNOT_INVOKE', msg: 'x' } }, 1)).toBe(126);
    expect(exitStatusOf({ failure: { code: 'ESECCOMP', msg: 'x' } }, 1)).toBe(125);
    expect(exitStatusOf({ failure: { code: 'ENOT_A_CODE', msg: 'x' } }, 1)).toBe(125);
    expect(exitStatusOf({}, 9)).toBe(9);
    expect(exitForRuntimeError(undefined)).toBe(125);
  });

  it('reads a live channel line by line, across chunks', async () => {
    const s = new PassThrough();
    const got: RuntimeReport[] = [];
    readReports(s, (r) => got.push(r));
    s.write('{"pi');
    s.write('d":5}\n{"exit"');
    s.end(':2}\n');
    await new Promise((r) => s.on('end', r));
    expect(got).toEqual([
      { kind: 'pid', pid: 5 },
      { kind: 'exit', exit: 2 },
    ]);
  });

  it('keeps the code of a JSON log line that has its own exit status, else ERUNTIME', () => {
    const e = runtimeError(undefined, { level: 'error', code: 'ECMD_NOT_FOUND', msg: 'exec: "nope": executable file not found in $PATH' } as { level: string; code: string; msg: string });
    expect(e).toBeInstanceOf(BurrowError);
    expect(e.code).toBe('ECMD_NOT_FOUND');
    expect(e.exitCode).toBe(127);
    expect(e.message).toBe('exec: "nope": executable file not found in $PATH');
    expect(runtimeError(undefined, { code: 'ECMD_CANNOT_INVOKE', msg: 'x' }).exitCode).toBe(126);
    // a runtime code TypeScript does not know (or not here): the caller's fallback, ERUNTIME by default
    expect(runtimeError('cannot start c1', { code: 'ESECCOMP', msg: 'bad filter' })).toMatchObject({ code: 'ERUNTIME', message: 'cannot start c1: bad filter' });
    expect(runtimeError(undefined, { code: 'ELAYER_UNSAFE', msg: 'x' }, { fallback: 'ELAYER_UNPACK', keep: ['ELAYER_UNSAFE'] }).code).toBe('ELAYER_UNSAFE');
    expect(runtimeError(undefined, { code: 'ECMD_NOT_FOUND', msg: 'x' }, { fallback: 'ELAYER_UNPACK', keep: [] }).code).toBe('ELAYER_UNPACK');
  });

  it('reads stderr through runtimeText: logrus lines, the runtime-prefixed lines, with the caller\'s context', () => {
    const logrus = 'time="2026-01-01T00:00:00Z" level=error msg="container \\"c1\\" does not exist"\n';
    const e = runtimeError('cannot signal container c1', { stderr: logrus }, { fallback: 'ECONTAINER_STATE' });
    expect(e.code).toBe('ECONTAINER_STATE');
    expect(e.message).toBe('cannot signal container c1: container "c1" does not exist');
    expect(runtimeError('cannot update c1', { stderr: 'burrow-runtime: error: no such cgroup\n' }).message).toBe('cannot update c1: no such cgroup');
    // no code on stderr: never a kept code
    expect(runtimeError(undefined, { stderr: 'burrow-runtime: x' }).code).toBe('ERUNTIME');
    // a message already in plain text is used as is
    expect(runtimeError(undefined, { msg: ' burrow-runtime: as is ' }).message).toBe(' burrow-runtime: as is ');
  });
});

describe('runtime client: runtimeSync', () => {
  const saved = process.env.BURROW_RUNTIME;
  afterEach(() => {
    if (saved === undefined) delete process.env.BURROW_RUNTIME;
    else process.env.BURROW_RUNTIME = saved;
  });

  it('runs BURROW_RUNTIME with the arguments, stdin input, and returns status, stdout, stderr and its text', () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-rtclient-'));
    try {
      const bin = path.join(d, 'fake-runtime');
      fs.writeFileSync(bin, '#!/bin/sh\necho "args: $*"\ncat\necho \'time="t" level=error msg="it \\"failed\\""\' >&2\nexit 3\n', { mode: 0o755 });
      process.env.BURROW_RUNTIME = bin;
      const r = runtimeSync(['--root', '/r', 'update', '-r', '-', 'c1'], { input: '{"pids":{}}' });
      expect(r).toMatchObject({ code: 3, status: 3, stdout: 'args: --status-fd 3 --root /r update -r - c1\n{"pids":{}}', text: 'it "failed"', reports: [] });
      expect(r.stderr).toBe('time="t" level=error msg="it \\"failed\\""\n');
      expect(r.error).toBeUndefined();
      // what it reports on fd 3 wins over its stderr
      fs.writeFileSync(bin, '#!/bin/sh\necho \'{"error":"no such container c1","code":"ECONTAINER_NOT_FOUND"}\' >&3\necho noise >&2\nexit 1\n', { mode: 0o755 });
      const f = runtimeSync(['kill', 'c1', 'TERM']);
      expect(f.failure).toEqual({ code: 'ECONTAINER_NOT_FOUND', msg: 'no such container c1' });
      expect(f.text).toBe('no such container c1');
      expect(syncError('cannot signal c1', f, { fallback: 'ECONTAINER_STATE' })).toMatchObject({ code: 'ECONTAINER_STATE', message: 'cannot signal c1: no such container c1' });
      process.env.BURROW_RUNTIME = path.join(d, 'missing');
      const m = runtimeSync(['--version']);
      expect(m.code).toBe(1);
      expect(m.status).toBeNull();
      expect((m.error as NodeJS.ErrnoException | undefined)?.code).toBe('ENOENT');
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});

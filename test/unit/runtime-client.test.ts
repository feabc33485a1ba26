import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BurrowError } from '../../ts/errors';
import { exitForRuntimeError, globalFlags, loggedError, parseLog, runtimeError, runtimeSync } from '../../ts/runtime/client';

describe('runtime client: global flags', () => {
  const rec = { runtimeRoot: '/run/x/runtime' };
  const sd = { runtimeRoot: '/run/x/runtime', cgroupManager: 'systemd' as const };

  it('always gives --root, first', () => {
    expect(globalFlags(rec)).toEqual(['--root', '/run/x/runtime']);
    expect(globalFlags(sd)).toEqual(['--root', '/run/x/runtime']);
  });

  it('gives --systemd-cgroup only when asked and the container uses systemd', () => {
    expect(globalFlags(rec, { cgroup: true })).toEqual(['--root', '/run/x/runtime']);
    expect(globalFlags(sd, { cgroup: true })).toEqual(['--root', '/run/x/runtime', '--systemd-cgroup']);
  });

  it('gives --log FILE --log-format json after the cgroup flag', () => {
    expect(globalFlags(sd, { cgroup: true, log: '/tmp/r.log' })).toEqual(['--root', '/run/x/runtime', '--systemd-cgroup', '--log', '/tmp/r.log', '--log-format', 'json']);
    expect(globalFlags(rec, { log: '/tmp/r.log' })).toEqual(['--root', '/run/x/runtime', '--log', '/tmp/r.log', '--log-format', 'json']);
  });
});

describe('runtime client: errors', () => {
  const tmp: string[] = [];
  afterEach(() => {
    for (const d of tmp.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('reads the JSON log: the last error line, lines that are not JSON skipped, no file no error', () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-rtclient-'));
    tmp.push(d);
    const log = path.join(d, 'runtime.log');
    expect(loggedError(log)).toBeUndefined();
    fs.writeFileSync(
      log,
      [
        '{"level":"info","msg":"starting","time":"2026-01-01T00:00:00Z"}',
        '{"level":"error","msg":"first","time":"2026-01-01T00:00:00Z","code":"ESECCOMP"}',
        'not json',
        '{"level":"error","msg":"exec: \\"nope\\": executable file not found in $PATH","time":"2026-01-01T00:00:01Z","code":"ECMD_NOT_FOUND"}',
        '{"level":"warning","msg":"late","time":"2026-01-01T00:00:02Z"}',
        '',
      ].join('\n'),
    );
    expect(parseLog(fs.readFileSync(log, 'utf8'))).toHaveLength(5);
    const line = loggedError(log);
    expect(line).toMatchObject({ code: 'ECMD_NOT_FOUND', msg: 'exec: "nope": executable file not found in $PATH' });
    expect(exitForRuntimeError(line?.code)).toBe(127);
    expect(exitForRuntimeError('ECMD_CANNOT_INVOKE')).toBe(126);
    expect(exitForRuntimeError('ESECCOMP')).toBe(125);
    expect(exitForRuntimeError(undefined)).toBe(125);
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
      expect(r).toMatchObject({ code: 3, status: 3, stdout: 'args: --root /r update -r - c1\n{"pids":{}}', text: 'it "failed"' });
      expect(r.stderr).toBe('time="t" level=error msg="it \\"failed\\""\n');
      expect(r.error).toBeUndefined();
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

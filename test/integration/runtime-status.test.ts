/**
 * burrow-runtime's status channel (`--status-fd FD`, crates/burrow-core/src/runtime/status.rs):
 * newline-delimited JSON on a descriptor the caller passes, `{pid}` once the process exists,
 * `{error, code}` when the command fails, `{exit}` when the process ends. Driven directly with
 * bundles, and through the burrow CLI, whose runtime client reads it (ts/runtime/client.ts).
 * Without the flag the runtime writes nothing there (runc's users never pass it).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { IMAGE, setup } from './lifecycle.helpers';
import { runtimeEnv, type Out } from './runtime.helpers';

const env = runtimeEnv('rtst');
const cli = setup('rtst-cli');
afterAll(() => {
  env.dispose();
  cli.dispose();
});

type Report = { pid?: number; error?: string; code?: string; exit?: number; signal?: string };

let n = 0;
/** Runs the runtime with a file as fd 3 and `--status-fd 3` first when `flag`; the reports it wrote. */
function withStatus(args: string[], flag = true): Out & { reports: Report[]; raw: string } {
  const file = path.join(env.work, `status-${++n}`);
  const fd = fs.openSync(file, 'w+');
  try {
    const r = env.rt([...(flag ? ['--status-fd', '3'] : []), ...args], { fds: [fd] });
    const raw = fs.readFileSync(file, 'utf8');
    const reports = raw
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Report);
    return { ...r, reports, raw };
  } finally {
    fs.closeSync(fd);
  }
}

describe(`the runtime's status channel, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('a run reports the pid of the container\'s process, then its exit', () => {
    const b = env.bundle(['sh', '-c', 'echo out; exit 3']);
    const r = withStatus(['run', '--bundle', b.dir, b.id]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('out\n');
    expect(r.reports).toHaveLength(2);
    expect(r.reports[0]!.pid).toBeGreaterThan(0);
    expect(r.reports[1]).toEqual({ exit: 3 });
  });

  it('without --status-fd nothing is written on the descriptor (runc\'s behaviour)', () => {
    const b = env.bundle(['true']);
    const r = withStatus(['run', '--bundle', b.dir, b.id], false);
    expect(r.code).toBe(0);
    expect(r.raw).toBe('');
  });

  it('a create whose command does not exist reports the error with its code, and no pid', () => {
    const b = env.bundle(['/no/such/command']);
    const r = withStatus(['create', '--bundle', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.reports).toEqual([{ error: expect.stringContaining('/no/such/command'), code: 'ECMD_NOT_FOUND' }]);
    // the same on stderr for runc's users, as before
    expect(r.stderr).toContain('/no/such/command');
  });

  it('create, start and exec report their pids; exec its exit, or its failure with the code and 127', () => {
    const b = env.bundle(['sleep', '100']);
    const c = withStatus(['create', '--bundle', b.dir, b.id]);
    expect(c.code).toBe(0);
    const pid = c.reports[0]!.pid!;
    expect(pid).toBeGreaterThan(0);
    const s = withStatus(['start', b.id]);
    expect(s.code).toBe(0);
    expect(s.reports).toEqual([{ pid }]);
    const e = withStatus(['exec', b.id, 'sh', '-c', 'exit 4']);
    expect(e.code).toBe(4);
    expect(e.reports).toHaveLength(2);
    expect(e.reports[0]!.pid).toBeGreaterThan(0);
    expect(e.reports[0]!.pid).not.toBe(pid);
    expect(e.reports[1]).toEqual({ exit: 4 });
    const m = withStatus(['exec', b.id, 'nope']);
    expect(m.code).toBe(127);
    expect(m.reports).toEqual([{ error: expect.stringContaining('nope'), code: 'ECMD_NOT_FOUND' }, { exit: 127 }]);
    const k = withStatus(['kill', `${b.id}-missing`, 'KILL']);
    expect(k.code).toBe(1);
    expect(k.reports).toEqual([{ error: expect.any(String), code: 'ECONTAINER_NOT_FOUND' }]);
    expect(env.rt(['delete', '--force', b.id]).code).toBe(0);
  });

  it('cp reports a path that does not exist with its code (EPATH_NOT_FOUND), in the container or on the host, and other mistakes as EUSAGE', () => {
    const b = env.bundle(['sleep', '100']);
    const c = withStatus(['create', '--bundle', b.dir, b.id]);
    expect(c.code).toBe(0);
    const pid = String(c.reports[0]!.pid!);
    const missing = { error: expect.stringContaining('No such file or directory'), code: 'EPATH_NOT_FOUND' };
    expect(withStatus(['cp', '--pid', pid, '--stat', '/no/such']).reports).toEqual([missing]);
    expect(withStatus(['cp', '--pid', pid, '--out', '/no/such', env.work]).reports).toEqual([missing]);
    expect(withStatus(['cp', '--pid', pid, '--out', '--tar', '/no/such', '-']).reports).toEqual([missing]);
    expect(withStatus(['cp', '--pid', pid, '--in', path.join(env.work, 'no-such-file'), '/tmp/']).reports).toEqual([missing]);
    const host = path.join(env.work, 'cp-src');
    fs.writeFileSync(host, 'x');
    expect(withStatus(['cp', '--pid', pid, '--in', host, '/no/such/dir/']).reports).toEqual([{ error: expect.stringContaining('must exist'), code: 'EPATH_NOT_FOUND' }]);
    expect(withStatus(['cp', '--pid', pid, '--in', '--out', host, '/tmp/']).reports).toEqual([{ error: expect.any(String), code: 'EUSAGE' }]);
    expect(env.rt(['delete', '--force', b.id]).code).toBe(0);
  });

  it('a descriptor that is not open is refused before anything is done', () => {
    const b = env.bundle(['true']);
    const r = env.rt(['--status-fd', '9', 'run', '--bundle', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--status-fd 9');
    expect(fs.existsSync(path.join(env.stateRoot, b.id))).toBe(false);
  });

  it('the CLI takes its statuses from the channel: 127 for a missing command, the container\'s own, exec\'s', () => {
    const nf = cli.b(['run', '--rm', IMAGE, 'no-such-command']);
    expect(nf.code).toBe(127);
    expect(nf.stderr).toContain('no-such-command');
    expect(cli.b(['run', '--rm', IMAGE, 'sh', '-c', 'exit 5']).code).toBe(5);
    const d = cli.b(['run', '-d', '--name', 'st1', IMAGE, 'sleep', '100']);
    expect(d.code).toBe(0);
    expect(cli.b(['exec', 'st1', 'sh', '-c', 'exit 6']).code).toBe(6);
    const x = cli.b(['exec', 'st1', 'no-such-command']);
    expect(x.code).toBe(127);
    expect(x.stderr).toContain('no-such-command');
    expect(cli.b(['exec', '-d', 'st1', 'no-such-command']).code).toBe(127);
    expect(cli.b(['exec', '-d', 'st1', 'sleep', '1']).code).toBe(0);
    // the monitor's first report: why it could not start the container
    const bad = cli.b(['run', '-d', IMAGE, 'no-such-command']);
    expect(bad.code).toBe(127);
    expect(bad.stderr).toContain('no-such-command');
    expect(cli.b(['rm', '-f', 'st1']).code).toBe(0);
  });
});

/**
 * `--rm` and the exit status hold when the CLI dies (issue 12, item 5): the process that
 * outlives the CLI (the runtime's foreground `run`, or the monitor for -d and -t) owns the exit
 * record and the removal. Each test kills the CLI with SIGKILL while its container runs, then
 * lets the container end (it waits for a gate file in a bind mount: no timing involved) and
 * checks what a user sees: `ps -a`, `wait`, the store's directory, the mount table. Runs as root
 * and as the unprivileged test user.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT } from './helpers';
import { alive, IMAGE, setup, waitFor, type Env } from './lifecycle.helpers';

let env: Env;
beforeAll(() => {
  env = setup('cli-killed');
});
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

const b = (args: string[]) => env.b(args);
const global = () => ['--root', env.store, '--runroot', env.runroot];

/** A gate directory for one test, and the container command that waits for it, then exits 3. */
function gate(name: string): { dir: string; open(): void; args: string[] } {
  const dir = path.join(env.work, `gate-${name}`);
  fs.mkdirSync(dir, { mode: 0o777 });
  return {
    dir,
    open: () => fs.writeFileSync(path.join(dir, 'open'), ''),
    args: ['-v', `${dir}:/gate`, IMAGE, 'sh', '-c', 'echo up; while [ ! -e /gate/open ]; do sleep 0.05; done; exit 3'],
  };
}

/** Resolves when `text` has appeared on the child's stdout (read on until the child ends). */
function seen(child: ChildProcess, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      if (out.includes(text)) resolve();
    });
    child.on('exit', () => reject(new Error(`exited before printing ${text}: ${out}`)));
  });
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.on('exit', () => resolve())));
}

const names = () => b(['ps', '-a', '--format', '{{.Names}} {{.Status}}']).stdout;

/** Nothing of the container is left: no record, no directory (nor one renamed aside), no mount. */
function gone(name: string, id: string): void {
  // Its directory is renamed aside (ps stops listing it), then deleted: wait for both.
  const left = () => fs.readdirSync(path.join(env.store, 'containers')).filter((n) => n.includes(id.slice(0, 12)));
  waitFor(() => !names().includes(`${name} `) && left().length === 0, 30_000, `${name} to be removed`);
  expect(fs.existsSync(path.join(env.store, 'containers', '.names', name))).toBe(false);
  expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(id);
}

function idOf(name: string): string {
  const r = b(['inspect', '-f', '{{.Id}}', name]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe(`the CLI killed with SIGKILL, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('run --rm in the foreground: the container is removed when it exits', async () => {
    const g = gate('fg-rm');
    const cli = spawn(process.execPath, [BIN, ...global(), 'run', '--rm', '--name', 'fgrm', ...g.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    await seen(cli, 'up\n');
    const id = idOf('fgrm');
    cli.kill('SIGKILL');
    await exited(cli);
    expect(names()).toMatch(/^fgrm Up /m);
    g.open();
    gone('fgrm', id);
  });

  it('run without --rm in the foreground: wait and ps -a give the real exit status', async () => {
    const g = gate('fg-keep');
    const cli = spawn(process.execPath, [BIN, ...global(), 'run', '--name', 'fgkeep', ...g.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    await seen(cli, 'up\n');
    cli.kill('SIGKILL');
    await exited(cli);
    g.open();
    const w = b(['wait', 'fgkeep']);
    expect(w).toMatchObject({ code: 0, stdout: '3\n' });
    expect(names()).toMatch(/^fgkeep Exited \(3\) /m);
    const st = JSON.parse(b(['inspect', '-f', '{{json .State}}', 'fgkeep']).stdout) as { ExitCode: number; Error?: string };
    expect(st.ExitCode).toBe(3);
    expect(st.Error ?? '').toBe('');
  });

  it('run -d --rm: the monitor removes it; -d without --rm: wait gives 3', async () => {
    const g = gate('d-rm');
    const cli = spawn(process.execPath, [BIN, ...global(), 'run', '-d', '--rm', '--name', 'drm', ...g.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve) => cli.stdout!.once('data', () => resolve()));
    const id = idOf('drm');
    cli.kill('SIGKILL');
    await exited(cli);
    const k = gate('d-keep');
    expect(b(['run', '-d', '--name', 'dkeep', ...k.args]).code).toBe(0);
    g.open();
    k.open();
    gone('drm', id);
    expect(b(['wait', 'dkeep'])).toMatchObject({ code: 0, stdout: '3\n' });
    expect(names()).toMatch(/^dkeep Exited \(3\) /m);
  });

  it('run -it --rm at a terminal: the container is removed when it exits', async () => {
    const g = gate('it-rm');
    // A real terminal: python's pty.spawn gives the CLI a pty as its controlling terminal.
    const py = spawn('python3', ['-c', 'import pty, sys; pty.spawn(sys.argv[1:])', process.execPath, BIN, ...global(), 'run', '-it', '--rm', '--name', 'itrm', ...g.args], { stdio: ['pipe', 'pipe', 'pipe'] });
    await seen(py, 'up');
    const id = idOf('itrm');
    const children = fs.readFileSync(`/proc/${py.pid}/task/${py.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    expect(children).toHaveLength(1);
    const cli = children[0]!;
    expect(fs.readFileSync(`/proc/${cli}/cmdline`, 'utf8')).toContain('itrm');
    process.kill(cli, 'SIGKILL');
    waitFor(() => !alive(cli), 10_000, 'the CLI to die');
    py.stdin!.end();
    g.open();
    gone('itrm', id);
    await exited(py);
  });
});

/**
 * `burrow run` and the container lifecycle as a user drives them: exit statuses, detached
 * containers and their logs, exec, stop, a monitor killed under a running container, mounts,
 * names under concurrency, a terminal, inspect and ps. Runs as root and as the unprivileged
 * test user; every test removes its containers and checks /proc for anything left behind.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { alive, cmdline, IMAGE, leftovers, pidNs, setup, waitFor, type Env } from './lifecycle.helpers';

let env: Env;
beforeAll(() => {
  env = setup('lifecycle');
});
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

const b = (args: string[], opts?: { input?: string; timeout?: number }) => env.b(args, opts);
const inspect = (ref: string) => {
  const r = b(['inspect', ref]);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as Record<string, any>[])[0]!; // eslint-disable-line @typescript-eslint/no-explicit-any
};
const runD = (...args: string[]) => {
  const r = b(['run', '-d', ...args]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/^[0-9a-f]{64}\n$/);
  return r.stdout.trim();
};

describe(`burrow run and the container lifecycle as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('run --rm prints the output and leaves no container', () => {
    const r = b(['run', '--rm', IMAGE, 'echo', 'hi']);
    expect(r).toMatchObject({ code: 0, stdout: 'hi\n', stderr: '' });
    expect(b(['ps', '-aq']).stdout).toBe('');
  });

  it("exit statuses are the container's, or Docker's 125/126/127", () => {
    expect(b(['run', '--rm', IMAGE, 'sh', '-c', 'exit 3']).code).toBe(3);
    const badFlag = b(['run', '--rm', '--no-such-flag', IMAGE, 'true']);
    expect(badFlag.code).toBe(125);
    expect(badFlag.stderr).toMatch(/unknown option '--no-such-flag'/);
    const missing = b(['run', '--rm', '--pull', 'never', 'no-such-image:latest', 'true']);
    expect(missing.code).toBe(125);
    expect(missing.stderr).toMatch(/no such image/);
    // A registry that cannot exist (.invalid never resolves): the pull fails, still 125.
    expect(b(['run', '--rm', 'registry.invalid/none/such:1', 'true']).code).toBe(125);
    const dir = b(['run', '--rm', IMAGE, '/etc']);
    expect(dir.code).toBe(126);
    expect(dir.stderr).toMatch(/is a directory/);
    const nf = b(['run', '--rm', IMAGE, 'nosuchcmd']);
    expect(nf.code).toBe(127);
    expect(nf.stderr).toMatch(/nosuchcmd.*not found/);
    expect(b(['ps', '-aq']).stdout).toBe('');
  });

  it('a killed detached container reports 137 to wait and inspect', () => {
    const id = runD(IMAGE, 'sleep', '30');
    const pid = inspect(id).State.Pid as number;
    expect(alive(pid)).toBe(true);
    expect(b(['kill', id]).code).toBe(0);
    const w = b(['wait', id]);
    expect(w).toMatchObject({ code: 0, stdout: '137\n' });
    const st = inspect(id).State;
    expect(st).toMatchObject({ Status: 'exited', Running: false, ExitCode: 137, Pid: 0 });
    expect(alive(pid)).toBe(false);
  });

  it('run -d --rm removes the container when it exits', () => {
    const id = runD('--rm', IMAGE, 'sh', '-c', 'exit 0');
    waitFor(() => !b(['ps', '-aq', '--no-trunc']).stdout.includes(id), 10_000, 'the container to be removed');
    expect(fs.existsSync(path.join(env.store, 'containers', id))).toBe(false);
  });

  it('logs -f follows a running container live and ends when it exits; --tail and -t', async () => {
    // The container prints line1, then waits for the test to open a gate (a file in a bind
    // mount) that it opens only once the follower has shown line1: what comes after can only
    // reach the follower live, whatever the machine's load.
    const gate = fs.mkdtempSync(path.join(env.work, 'gate-'));
    const id = runD('-v', `${gate}:/gate`, IMAGE, 'sh', '-c', 'echo line1; while [ ! -e /gate/open ]; do sleep 0.05; done; for i in 2 3 4 5 6; do echo line$i; sleep 0.1; done; echo done >&2');
    const seen: { line: string; ms: number }[] = [];
    let statusAtLine1 = '';
    const f = await env.bg(['logs', '-f', id], {
      onLine: (line, ms) => {
        seen.push({ line, ms });
        if (line === 'line1') {
          statusAtLine1 = b(['inspect', '-f', '{{.State.Status}}', id]).stdout.trim();
          fs.writeFileSync(path.join(gate, 'open'), '');
        }
      },
    });
    expect(statusAtLine1).toBe('running');
    expect(f.code).toBe(0);
    expect(f.stdout).toBe('line1\nline2\nline3\nline4\nline5\nline6\n');
    expect(f.stderr).toBe('done\n');
    expect(seen.map((x) => x.line)).toEqual(['line1', 'line2', 'line3', 'line4', 'line5', 'line6']);
    expect(inspect(id).State.Running).toBe(false);

    const tail = b(['logs', '--tail', '2', id]);
    expect(tail.stdout).toBe('line6\n');
    expect(tail.stderr).toBe('done\n');
    expect(b(['logs', '--tail', '3', id]).stdout).toBe('line5\nline6\n');
    const ts = b(['logs', '-t', id]).stdout.trim().split('\n');
    expect(ts).toHaveLength(6);
    for (const l of ts) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z line\d$/);
    const times = ts.map((l) => Date.parse(l.split(' ')[0]!));
    expect(times[5]! - times[1]!).toBeGreaterThanOrEqual(350); // four sleeps of 0.1 s
    expect(b(['logs', '--since', '1h', id]).stdout.split('\n')).toHaveLength(7);
  });

  it('exec runs in a running container with -e, -u, -w, -i, -d and returns its status', () => {
    runD('--name', 'ex1', IMAGE, 'sleep', '30');
    expect(b(['exec', '-e', 'FOO=bar', 'ex1', 'sh', '-c', 'echo $FOO; echo $$']).stdout).toMatch(/^bar\n\d+\n$/);
    expect(b(['exec', '-u', '1000:1001', 'ex1', 'sh', '-c', 'id -u; id -g']).stdout).toBe('1000\n1001\n');
    expect(b(['exec', '-w', '/tmp', 'ex1', 'pwd']).stdout).toBe('/tmp\n');
    expect(b(['exec', '-i', 'ex1', 'cat'], { input: 'through stdin\n' }).stdout).toBe('through stdin\n');
    expect(b(['exec', 'ex1', 'sh', '-c', 'exit 7']).code).toBe(7);
    expect(b(['exec', 'ex1', 'nosuchcmd']).code).toBe(127);
    // The same process tree: exec sees the container's pid 1.
    expect(b(['exec', 'ex1', 'cat', '/proc/1/cmdline']).stdout).toBe('sleep\x0030\x00');
    const d = b(['exec', '-d', 'ex1', 'sh', '-c', 'echo detached > /tmp/marker; exec sleep 31']);
    expect(d).toMatchObject({ code: 0, stdout: '' });
    waitFor(() => b(['exec', 'ex1', 'cat', '/tmp/marker']).stdout === 'detached\n', 5000, 'the detached exec');
    // The detached process has a parent that reaps it (not whatever adopts orphans), so a
    // container with a detached exec still stops at once.
    const ns = pidNs(inspect('ex1').State.Pid)!;
    const execd = leftovers(env.runroot, [ns]).filter((p) => cmdline(p) === 'sleep 31');
    expect(execd).toHaveLength(1);
    const ppid = Number(fs.readFileSync(`/proc/${execd[0]}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
    expect(cmdline(ppid)).toMatch(/burrow-runtime .* exec /);
    const t0 = Date.now();
    expect(b(['stop', '-t', '0', 'ex1']).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8000); // not the 10 s default: -t 0 kills at once
    const stopped = b(['exec', 'ex1', 'true']);
    expect(stopped.code).not.toBe(0);
    expect(stopped.stderr).toMatch(/is not running/);
  });

  it('stop -t 1 kills a process that ignores SIGTERM after about a second: 137', () => {
    const id = runD(IMAGE, 'sh', '-c', 'trap "" TERM; echo ready; while :; do sleep 0.1; done');
    waitFor(() => b(['logs', id]).stdout === 'ready\n', 5000, 'the trap');
    const t0 = Date.now();
    expect(b(['stop', '-t', '1', id])).toMatchObject({ code: 0, stdout: `${id}\n` });
    const ms = Date.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(8000); // the default timeout (10 s) would be longer
    expect(inspect(id).State).toMatchObject({ Status: 'exited', ExitCode: 137 });
  });

  it('--stop-signal: stop sends it and the trap exits 0', () => {
    const id = runD('--stop-signal', 'USR1', IMAGE, 'sh', '-c', 'trap "echo bye; exit 0" USR1; echo ready; while :; do sleep 0.1; done');
    waitFor(() => b(['logs', id]).stdout === 'ready\n', 5000, 'the trap');
    expect(inspect(id).Config.StopSignal).toBe('USR1');
    const t0 = Date.now();
    expect(b(['stop', '-t', '10', id]).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8000); // it did not take the timeout and SIGKILL
    expect(b(['wait', id]).stdout).toBe('0\n');
    expect(b(['logs', id]).stdout).toBe('ready\nbye\n');
  });

  it('a monitor killed with SIGKILL: the container is shown as it is, never stuck at running', () => {
    const id = runD('--name', 'orphan', IMAGE, 'sh', '-c', 'sleep 30 & sleep 31; wait');
    const dir = path.join(env.store, 'containers', id);
    const monitor = (JSON.parse(fs.readFileSync(path.join(dir, 'monitor.json'), 'utf8')) as { pid: number }).pid;
    expect(fs.readFileSync(`/proc/${monitor}/comm`, 'utf8').trim()).toBe('burrow:monitor');
    const init = inspect(id).State.Pid as number;
    const ns = pidNs(init)!;
    waitFor(() => leftovers(env.runroot, [ns]).length >= 4, 5000, 'the container processes'); // monitor, sh, 2 sleeps
    process.kill(monitor, 'SIGKILL');
    waitFor(() => !alive(monitor), 5000, 'the monitor to die');
    // The container runs on without its monitor, and says so.
    expect(inspect(id).State).toMatchObject({ Status: 'running', Running: true, Pid: init });
    expect(b(['ps', '--format', '{{.Names}} {{.Status}}']).stdout).toMatch(/^orphan Up /m);
    // Its process goes away behind burrow's back: no longer running, with an exit status.
    process.kill(init, 'SIGKILL');
    waitFor(() => !alive(init), 5000, 'the init to die');
    const st = inspect(id).State;
    expect(st).toMatchObject({ Status: 'exited', Running: false, Pid: 0, ExitCode: 255 });
    expect(st.Error).toMatch(/monitor/);
    expect(Date.parse(st.FinishedAt)).toBeGreaterThan(Date.parse(st.StartedAt));
    expect(b(['ps', '-a', '--format', '{{.Names}} {{.Status}}']).stdout).toMatch(/^orphan Exited \(255\) /m);
    expect(b(['ps', '-q']).stdout).toBe('');
    expect(b(['wait', id]).stdout).toBe('255\n');
    waitFor(() => leftovers(env.runroot, [ns]).length === 0, 5000, 'the other processes to go');
    // It can be started again, with a monitor.
    expect(b(['start', 'orphan']).code).toBe(0);
    expect(inspect(id).State.Running).toBe(true);
  });

  it('rm -f of a running container whose monitor is dead leaves no process', () => {
    const id = runD(IMAGE, 'sh', '-c', 'sleep 30 & sleep 31 & sleep 32; wait');
    const dir = path.join(env.store, 'containers', id);
    const monitor = (JSON.parse(fs.readFileSync(path.join(dir, 'monitor.json'), 'utf8')) as { pid: number }).pid;
    const init = inspect(id).State.Pid as number;
    const ns = pidNs(init)!;
    waitFor(() => leftovers(env.runroot, [ns]).length >= 5, 5000, 'the container processes');
    process.kill(monitor, 'SIGKILL');
    waitFor(() => !alive(monitor), 5000, 'the monitor to die');
    expect(b(['rm', '-f', id])).toMatchObject({ code: 0, stdout: `${id}\n` });
    expect(alive(init)).toBe(false);
    expect(leftovers(env.runroot, [ns])).toEqual([]);
    expect(fs.existsSync(dir)).toBe(false);
    expect(b(['ps', '-aq']).stdout).toBe('');
  });

  it('rm -f of a running container leaves no process; rm without -f refuses', () => {
    const id = runD(IMAGE, 'sh', '-c', 'sleep 30 & sleep 31; wait');
    const init = inspect(id).State.Pid as number;
    const ns = pidNs(init)!;
    const r = b(['rm', id]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/container is running/);
    expect(b(['rm', '-f', id]).code).toBe(0);
    expect(alive(init)).toBe(false);
    expect(leftovers(env.runroot, [ns])).toEqual([]);
  });

  it('-v HOSTDIR:/data binds with the user as root inside; named volumes persist', () => {
    const host = fs.mkdtempSync(path.join(env.work, 'bind-'));
    fs.writeFileSync(path.join(host, 'from-host'), 'hello\n');
    const r = b(['run', '--rm', '-v', `${host}:/data`, IMAGE, 'sh', '-c', 'stat -c "%u:%g %n" /data/from-host; cat /data/from-host; echo made > /data/from-container']);
    expect(r).toMatchObject({ code: 0, stdout: '0:0 /data/from-host\nhello\n' });
    const st = fs.statSync(path.join(host, 'from-container'));
    expect([st.uid, st.gid]).toEqual([process.getuid!(), process.getgid!()]);
    expect(fs.readFileSync(path.join(host, 'from-container'), 'utf8')).toBe('made\n');
    const ro = b(['run', '--rm', '-v', `${host}:/data:ro`, IMAGE, 'sh', '-c', 'echo x > /data/nope']);
    expect(ro.code).not.toBe(0);
    expect(ro.stderr).toMatch(/Read-only file system/);
    expect(b(['run', '--rm', '-v', 'lc-vol:/vol', IMAGE, 'sh', '-c', 'echo persisted > /vol/x']).code).toBe(0);
    expect(b(['run', '--rm', '-v', 'lc-vol:/other', IMAGE, 'cat', '/other/x']).stdout).toBe('persisted\n');
    const missing = b(['run', '--rm', '-v', `${host}/nonexistent:/data`, IMAGE, 'true']);
    expect(missing.code).toBe(125);
  });

  it('--read-only refuses writes to the root; --tmpfs gives a writable scratch', () => {
    const r = b(['run', '--rm', '--read-only', '--tmpfs', '/scratch', IMAGE, 'sh', '-c', 'touch /nope || echo refused; echo ok > /scratch/f && cat /scratch/f; grep " /scratch " /proc/mounts | cut -d" " -f3']);
    expect(r.stdout).toBe('refused\nok\ntmpfs\n');
    expect(r.stderr).toMatch(/Read-only file system/);
    expect(b(['run', '--rm', IMAGE, 'sh', '-c', 'touch /yes && echo wrote']).stdout).toBe('wrote\n');
  });

  it('--name conflicts: 125 with Docker\'s message; of concurrent runs exactly one wins', async () => {
    const id = runD('--name', 'taken', IMAGE, 'sleep', '30');
    const r = b(['run', '--name', 'taken', IMAGE, 'true']);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain(`Conflict. The container name "/taken" is already in use by container "${id}". You have to remove (or rename) that container to be able to reuse that name.`);
    const runs = await Promise.all([1, 2, 3, 4, 5].map(() => env.bg(['run', '-d', '--name', 'race', IMAGE, 'sleep', '30'])));
    expect(runs.filter((x) => x.code === 0)).toHaveLength(1);
    for (const x of runs.filter((x) => x.code !== 0)) {
      expect(x.code).toBe(125);
      expect(x.stderr).toMatch(/Conflict\. The container name "\/race" is already in use/);
    }
    const winner = runs.find((x) => x.code === 0)!.stdout.trim();
    expect(b(['ps', '-aq', '--no-trunc', '--filter', 'name=race']).stdout).toBe(`${winner}\n`);
    // No half-made container of a loser remains on disk.
    expect(fs.readdirSync(path.join(env.store, 'containers')).filter((d) => !d.startsWith('.')).sort()).toEqual([id, winner].sort());
  });

  it('20 containers started at once all complete with intact records', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `many${i}`);
    const started = await Promise.all(names.map((n) => env.bg(['run', '-d', '--name', n, IMAGE, 'sh', '-c', `echo ${n}; exit ${names.indexOf(n) % 5}`])));
    for (const s of started) expect(s.code, s.stderr).toBe(0);
    // One wait for all of them prints their statuses in order.
    expect(b(['wait', ...names]).stdout).toBe(names.map((_, i) => `${i % 5}\n`).join(''));
    const logs = await Promise.all(names.map((n) => env.bg(['logs', n])));
    names.forEach((n, i) => expect(logs[i]!.stdout).toBe(`${n}\n`));
    const j = JSON.parse(b(['inspect', ...names]).stdout) as { Id: string; Name: string; State: { ExitCode: number } }[];
    expect(j.map((x) => [x.Name, x.Id, x.State.ExitCode])).toEqual(names.map((n, i) => [`/${n}`, started[i]!.stdout.trim(), i % 5]));
    const ps = b(['ps', '-a', '--format', '{{.Names}} {{.Status}}']).stdout.split('\n').filter(Boolean).sort();
    expect(ps.map((l) => l.replace(/\) .*/, ')'))).toEqual(names.map((n, i) => `${n} Exited (${i % 5})`).sort());
    const rm = await Promise.all(names.map(() => env.bg(['run', '--rm', IMAGE, 'true'])));
    for (const r of rm) expect(r.code, r.stderr).toBe(0);
    expect(b(['ps', '-aq']).stdout.split('\n').filter(Boolean)).toHaveLength(20);
  });

  it('-it through a real terminal: stty size follows a resize', () => {
    const script = path.join(env.work, 'drive_pty.py');
    fs.writeFileSync(
      script,
      String.raw`
import fcntl, os, pty, select, signal, struct, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
def size(r, c):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', r, c, 0, 0))
out = b''
def until(pat, t=10):
    global out
    end = time.time() + t
    while time.time() < end:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                d = os.read(fd, 4096)
            except OSError:
                return False
            if not d:
                return False
            out += d
            if pat in out:
                return True
    return False
size(30, 100)
until(b'# ')
os.write(fd, b'stty size; tty\r')
until(b'30 100')
size(40, 120)
os.kill(pid, signal.SIGWINCH)
time.sleep(0.3)
os.write(fd, b'stty size\r')
until(b'40 120')
os.write(fd, b'exit 5\r')
until(b'\0', 3)
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors='replace'))
print('\nSTATUS', os.waitstatus_to_exitcode(st))
`,
    );
    const r = spawnSync('python3', [script, process.execPath, path.join(__dirname, '..', '..', 'bin', 'burrow.js'), '--root', env.store, '--runroot', env.runroot, 'run', '-it', '--rm', IMAGE, 'sh'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stdout).toMatch(/\r\n30 100\r\n\/dev\/pts\/\d+\r\n/);
    expect(r.stdout).toMatch(/\r\n40 120\r\n/);
    expect(r.stdout).toMatch(/STATUS 5\n$/);
  });

  it("inspect is Docker's JSON; ps --format and --filter", () => {
    const host = fs.mkdtempSync(path.join(env.work, 'insp-'));
    const id = runD('--name', 'insp', '-l', 'tier=test', '-e', 'X=1', '-w', '/tmp', '-v', 'lc-vol2:/vol', '-v', `${host}:/host:ro`, IMAGE, 'sleep', '30');
    const j = inspect('insp');
    for (const k of ['Id', 'Created', 'Path', 'Args', 'State', 'Image', 'Name', 'HostConfig', 'Mounts', 'Config', 'LogPath', 'RestartCount']) expect(j).toHaveProperty(k);
    expect(j.Id).toBe(id);
    expect(Number.isNaN(Date.parse(j.Created))).toBe(false);
    expect(j.Path).toBe('sleep');
    expect(j.Args).toEqual(['30']);
    expect(j.Name).toBe('/insp');
    expect(j.Image).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(j.State).toMatchObject({ Status: 'running', Running: true, ExitCode: 0, OOMKilled: false, FinishedAt: '0001-01-01T00:00:00Z' });
    expect(alive(j.State.Pid)).toBe(true);
    expect(Date.parse(j.State.StartedAt)).toBeGreaterThanOrEqual(Date.parse(j.Created));
    expect(j.Config).toMatchObject({ Cmd: ['sleep', '30'], Image: IMAGE, WorkingDir: '/tmp', Labels: { tier: 'test' } });
    expect(j.Config.Env).toContain('X=1');
    expect(j.HostConfig).toMatchObject({ AutoRemove: false, ReadonlyRootfs: false });
    expect(j.HostConfig.Binds).toEqual(['lc-vol2:/vol', `${host}:/host:ro`]);
    const mounts = Object.fromEntries((j.Mounts as { Destination: string }[]).map((m) => [m.Destination, m]));
    expect(mounts['/vol']).toMatchObject({ Type: 'volume', Name: 'lc-vol2', RW: true });
    expect(mounts['/host']).toMatchObject({ Type: 'bind', Source: host, RW: false, Mode: 'ro' });
    expect(b(['inspect', '-f', '{{.State.Status}} {{.Name}}', 'insp']).stdout).toBe('running /insp\n');
    const gone = b(['inspect', 'no-such-container']);
    expect(gone.code).not.toBe(0);
    expect(gone.stdout.trim()).toBe('[]');

    runD('--name', 'other', IMAGE, 'sh', '-c', 'exit 2');
    expect(b(['wait', 'other']).stdout).toBe('2\n');
    expect(b(['ps', '--format', '{{.Names}} {{.Status}}']).stdout).toMatch(/^insp Up (Less than a second|\d+ seconds?)\n$/);
    const all = b(['ps', '-a', '--format', '{{.Names}} {{.Status}}']).stdout;
    expect(all).toMatch(/^other Exited \(2\) (Less than a second|\d+ seconds?) ago$/m);
    expect(b(['ps', '-a', '--filter', 'name=insp', '--format', '{{.ID}}']).stdout).toBe(`${id.slice(0, 12)}\n`);
    expect(b(['ps', '-a', '--filter', 'status=exited', '--format', '{{.Names}}']).stdout).toBe('other\n');
    expect(b(['ps', '-a', '--filter', 'label=tier=test', '-q', '--no-trunc']).stdout).toBe(`${id}\n`);
    expect(JSON.parse(b(['ps', '--format', 'json']).stdout.trim().split('\n')[0]!)).toMatchObject({ Names: 'insp', State: 'running' });
  });
});

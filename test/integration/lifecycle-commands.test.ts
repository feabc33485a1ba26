/**
 * The container commands around the lifecycle: cp (both directions; running, exited and
 * never-started containers; files of the container's other users), rename, top, restart,
 * attach, and `container prune` / `container ls`. As root and as the unprivileged test user.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { alive, IMAGE, leftovers, pidNs, setup, waitFor, type Env } from './lifecycle.helpers';

let env: Env;
beforeAll(() => {
  env = setup('lifecycle-cmds');
});
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

const b = (args: string[], opts?: { input?: string; timeout?: number }) => env.b(args, opts);
const ok = (args: string[], opts?: { input?: string }) => env.ok(args, opts);
const state = (ref: string) => JSON.parse(ok(['inspect', '-f', '{{json .State}}', ref])) as { Status: string; Pid: number; ExitCode: number; Running: boolean };
const waitLog = (ref: string, text: string) => waitFor(() => b(['logs', ref]).stdout.includes(text), 10_000, `"${text.trim()}" in the logs of ${ref}`);

/** The host id of a container uid under this store's mapping. */
function hostUid(uid: number): number {
  const s = JSON.parse(fs.readFileSync(path.join(env.store, 'storage.json'), 'utf8')) as { uidMap: [number, number, number][] };
  for (const [c, h, n] of s.uidMap) if (uid >= c && uid < c + n) return h + uid - c;
  throw new Error(`uid ${uid} is not mapped`);
}

function hostDir(name: string): string {
  const d = path.join(env.work, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

describe(`container commands as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('cp out of and into a running container, through files of other container users', () => {
    ok(['run', '-d', '--name', 'cpr', IMAGE, 'sh', '-c', [
      'mkdir -p /home/u/sub && echo secret > /home/u/sub/f && ln -s /etc/passwd /home/u/link',
      'chown -R 1000:1000 /home/u && chmod 700 /home/u && chmod 600 /home/u/sub/f',
      'ln -s / /tmp/rootlink && echo ready && sleep 30',
    ].join('; ')]);
    waitLog('cpr', 'ready');
    if (!IS_ROOT) {
      // What makes cp need the container's user namespace: on the host these are files of a
      // subordinate id, closed to the user.
      const upper = ok(['inspect', '-f', '{{.GraphDriver.Data.UpperDir}}', 'cpr']).trim();
      expect(() => fs.readdirSync(path.join(upper, 'home', 'u'))).toThrow(/EACCES/);
    }
    const out = hostDir('cp-out');
    ok(['cp', 'cpr:/home/u', `${out}/`]);
    const f = path.join(out, 'u', 'sub', 'f');
    expect(fs.readFileSync(f, 'utf8')).toBe('secret\n');
    // Copied out: the user's files, with the modes they had.
    const st = fs.statSync(f);
    expect([st.uid, st.mode & 0o777]).toEqual([process.getuid!(), 0o600]);
    expect(fs.statSync(path.join(out, 'u')).mode & 0o777).toBe(0o700);
    // A symlink is copied as a symlink; -L copies what it points to, inside the container.
    expect(fs.readlinkSync(path.join(out, 'u', 'link'))).toBe('/etc/passwd');
    ok(['cp', '-L', 'cpr:/home/u/link', path.join(out, 'passwd')]);
    expect(fs.readFileSync(path.join(out, 'passwd'), 'utf8')).toMatch(/^root:x:0:0:root:\/root:\/bin\/sh\nnobody:/);
    // -a keeps the owner: uid 1000 of the container is the store's mapping of it on the host.
    ok(['cp', '-a', 'cpr:/home/u/sub/f', path.join(out, 'kept')]);
    expect(fs.statSync(path.join(out, 'kept')).uid).toBe(hostUid(1000));

    const src = hostDir('cp-in');
    fs.writeFileSync(path.join(src, 'hello.txt'), 'from the host\n');
    fs.chmodSync(path.join(src, 'hello.txt'), 0o640);
    fs.mkdirSync(path.join(src, 'tree', 'deep'), { recursive: true });
    fs.writeFileSync(path.join(src, 'tree', 'deep', 'x'), 'x\n');
    fs.symlinkSync('deep/x', path.join(src, 'tree', 'lnk'));
    // Into a directory only uid 1000 may enter: copied in, the file belongs to the container's root.
    ok(['cp', path.join(src, 'hello.txt'), 'cpr:/home/u/sub/']);
    expect(ok(['exec', 'cpr', 'stat', '-c', '%u:%g %a %s', '/home/u/sub/hello.txt'])).toBe('0:0 640 14\n');
    // A missing destination directory is created with the source's contents; "/." merges.
    ok(['cp', path.join(src, 'tree'), 'cpr:/tmp/newdir']);
    ok(['cp', `${path.join(src, 'tree')}/.`, 'cpr:/tmp/']);
    expect(ok(['exec', 'cpr', 'sh', '-c', 'cat /tmp/newdir/deep/x /tmp/deep/x; readlink /tmp/newdir/lnk; readlink /tmp/lnk'])).toBe('x\nx\ndeep/x\ndeep/x\n');
    // A symlink in the container resolves inside it, never on the host.
    ok(['cp', path.join(src, 'hello.txt'), 'cpr:/tmp/rootlink/planted']);
    expect(ok(['exec', 'cpr', 'cat', '/planted'])).toBe('from the host\n');
    expect(fs.existsSync('/planted')).toBe(false);

    const missing = b(['cp', 'cpr:/no/such/file', out]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/\/no\/such\/file.*No such file or directory/);
    const noDir = b(['cp', path.join(src, 'hello.txt'), 'cpr:/no/such/dir/']);
    expect(noDir.code).not.toBe(0);
    expect(noDir.stderr).toMatch(/must exist/);
    const local = b(['cp', src, out]);
    expect(local.code).toBe(125);
    expect(local.stderr).toMatch(/must specify at least one container source/);
  });

  it('cp into a created container and out of an exited one leaves nothing running', () => {
    const src = hostDir('cp-created');
    fs.writeFileSync(path.join(src, 'greeting'), 'hi from cp\n');
    const id = ok(['create', '--name', 'cpc', IMAGE, 'sh', '-c', 'cat /etc/greeting; echo more >> /etc/greeting']).trim();
    ok(['cp', path.join(src, 'greeting'), 'cpc:/etc/greeting']);
    expect(state('cpc').Status).toBe('created');
    expect(ok(['start', '-a', 'cpc'])).toBe('hi from cp\n');
    expect(state('cpc')).toMatchObject({ Status: 'exited', ExitCode: 0 });
    ok(['cp', 'cpc:/etc/greeting', path.join(src, 'back')]);
    expect(fs.readFileSync(path.join(src, 'back'), 'utf8')).toBe('hi from cp\nmore\n');
    expect(state('cpc').Status).toBe('exited');
    // The transient container used for the copy is gone, with its processes.
    expect(fs.readdirSync(path.join(env.runroot, 'runtime')).filter((n) => n.startsWith(id))).toEqual([]);
    expect(leftovers(env.runroot, [])).toEqual([]);
  });

  it('rename frees the old name and refuses a taken one', () => {
    const id = ok(['run', '-d', '--name', 'old', IMAGE, 'sleep', '30']).trim();
    ok(['run', '-d', '--name', 'busy', IMAGE, 'sleep', '30']);
    expect(ok(['rename', 'old', 'new'])).toBe('');
    expect(ok(['inspect', '-f', '{{.Name}} {{.Id}}', 'new'])).toBe(`/new ${id}\n`);
    expect(b(['inspect', 'old']).code).not.toBe(0);
    const taken = b(['rename', 'new', 'busy']);
    expect(taken.code).toBe(125);
    expect(taken.stderr).toContain('The container name "/busy" is already in use');
    expect(ok(['ps', '--format', '{{.Names}}']).split('\n').sort()).toEqual(['', 'busy', 'new']);
    // The old name is free again.
    ok(['run', '--rm', '--name', 'old', IMAGE, 'true']);
  });

  it("top lists the container's processes with ps options", () => {
    ok(['run', '-d', '--name', 'topc', IMAGE, 'sh', '-c', 'sleep 30 & sleep 31 & echo ready; wait']);
    waitLog('topc', 'ready');
    const t = ok(['top', 'topc']).trim().split('\n');
    expect(t[0]).toMatch(/^UID\s+PID\s+PPID\s+C\s+STIME\s+TTY\s+TIME\s+CMD$/);
    expect(t.slice(1).map((l) => l.replace(/^(\S+\s+){7}/, '')).sort()).toEqual(['sh -c sleep 30 & sleep 31 & echo ready; wait', 'sleep 30', 'sleep 31']);
    const o = ok(['top', 'topc', '-o', 'pid,comm']).trim().split('\n');
    expect(o[0]).toMatch(/^\s*PID\s+COMMAND$/);
    expect(o.slice(1).map((l) => l.trim().split(/\s+/)[1]).sort()).toEqual(['sh', 'sleep', 'sleep']);
    expect(o.slice(1).map((l) => Number(l.trim().split(/\s+/)[0]))).toContain(state('topc').Pid);
    ok(['stop', '-t', '0', 'topc']);
    expect(b(['top', 'topc']).stderr).toMatch(/is not running/);
  });

  it('restart stops (honouring -t) and starts again; a stopped container is just started', () => {
    ok(['run', '-d', '--name', 'rs', IMAGE, 'sh', '-c', 'echo started; trap "" TERM; while :; do sleep 0.1; done']);
    waitLog('rs', 'started');
    const before = state('rs').Pid;
    const t0 = Date.now();
    expect(ok(['restart', '-t', '1', 'rs'])).toBe('rs\n');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(alive(before)).toBe(false);
    const after = state('rs');
    expect(after.Running).toBe(true);
    expect(after.Pid).not.toBe(before);
    waitFor(() => ok(['logs', 'rs']) === 'started\nstarted\n', 5000, 'the second start');
    ok(['kill', 'rs']);
    expect(ok(['wait', 'rs'])).toBe('137\n');
    ok(['restart', 'rs']);
    expect(state('rs').Running).toBe(true);
  });

  it("attach follows new output and returns the container's status; signals are passed on", async () => {
    // Ticks until the test opens the gate, which it does once attach has shown a tick.
    const gate = hostDir('attach-gate');
    const tick = 'while [ ! -e /gate/open ]; do echo tick; sleep 0.1; done';
    ok(['run', '-d', '--name', 'att', '-v', `${gate}:/gate`, IMAGE, 'sh', '-c', `echo before; ${tick}; echo after; echo oops >&2; exit 4`]);
    waitLog('att', 'before');
    const a = await env.bg(['attach', 'att'], { onLine: (l) => l === 'tick' && fs.writeFileSync(path.join(gate, 'open'), '') });
    expect(a.code).toBe(4);
    expect(a.stdout).toMatch(/^(tick\n)+after\n$/); // not "before": it came before attach
    expect(a.stderr).toBe('oops\n');

    ok(['run', '-d', '--name', 'att2', IMAGE, 'sh', '-c', 'trap "echo got INT; exit 9" INT; while :; do echo tick; sleep 0.1; done']);
    const { spawn } = await import('node:child_process');
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [path.join(__dirname, '..', '..', 'bin', 'burrow.js'), '--root', env.store, '--runroot', env.runroot, 'attach', 'att2'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        // Output shows that attach follows, so its signal handlers are in place.
        if (!out) child.kill('SIGINT');
        out += d;
      });
      child.on('close', (code) => resolve({ code, out }));
    });
    expect(r.code).toBe(9);
    expect(r.out).toMatch(/^(tick\n)*got INT\n$/);
    expect(b(['attach', 'att2']).stderr).toMatch(/cannot attach to a stopped container/);
  });

  it('container prune without -f refuses on a stdin that is not a terminal, even with "y" on it, as the other prunes do; at a terminal it asks', () => {
    const exited = ok(['run', '-d', IMAGE, 'true']).trim();
    expect(ok(['wait', exited])).toBe('0\n');
    const all = () => ok(['ps', '-aq', '--no-trunc']).split('\n').filter(Boolean);
    // The same refusal, word for word but for the command's name, and the same exit status as
    // image, system and volume prune: a "y" waiting in a pipe was not typed in answer.
    const refusal = (what: string) => {
      const r = b([...what.split(' '), 'prune'], { input: 'y\n' });
      return { code: r.code, stdout: r.stdout, stderr: r.stderr.replace(`${what} prune:`, 'PRUNE:') };
    };
    const theirs = refusal('image');
    expect(theirs.code).toBe(125);
    expect(theirs.stderr).toMatch(/stdin is not a terminal/);
    expect(refusal('system')).toEqual(theirs);
    expect(refusal('volume')).toEqual(theirs);
    expect(refusal('container')).toEqual(theirs);
    expect(all()).toEqual([exited]);

    // At a terminal it asks; "n" keeps, "y" removes.
    const prompt = 'WARNING! This will remove all stopped containers.\r\nAre you sure you want to continue? [y/N] ';
    const no = env.tty([['expect', prompt], ['send', 'n\r'], ['wait']], ['container', 'prune']);
    expect(no.status).toBe(0);
    expect(no.out).toBe(`${prompt}n\r\n`);
    expect(all()).toEqual([exited]);
    const yes = env.tty([['expect', prompt], ['send', 'y\r'], ['wait']], ['container', 'prune']);
    expect(yes.status).toBe(0);
    expect(yes.out).toContain(`Deleted Containers:\r\n${exited}\r\n`);
    expect(all()).toEqual([]);
  });

  it('container prune removes every container that is not running; container ls lists', () => {
    const running = ok(['run', '-d', '--name', 'keep', IMAGE, 'sleep', '30']).trim();
    const exited = ok(['run', '-d', IMAGE, 'sh', '-c', 'echo data > /file; exit 1']).trim();
    const created = ok(['create', IMAGE, 'true']).trim();
    expect(ok(['wait', exited])).toBe('1\n');
    // Without -f, and stdin a pipe (with "n" on it), there is nobody to ask: refused, as image,
    // system and volume prune refuse, and everything kept.
    const asked = b(['container', 'prune'], { input: 'n\n' });
    expect(asked.code).toBe(125);
    expect(asked.stdout).toBe('');
    expect(asked.stderr).toMatch(/^Error: container prune: not removing anything without confirmation, and stdin is not a terminal to ask on\n/);
    expect(ok(['ps', '-aq', '--no-trunc']).split('\n').filter(Boolean).sort()).toEqual([running, exited, created].sort());
    const p = ok(['container', 'prune', '-f']);
    const [head, ...rest] = p.trim().split('\n');
    expect(head).toBe('Deleted Containers:');
    expect(rest.slice(0, 2).sort()).toEqual([exited, created].sort());
    expect(rest[3]).toMatch(/^Total reclaimed space: \d+(\.\d+)?k?B$/);
    expect(ok(['container', 'ls', '-q', '--no-trunc'])).toBe(`${running}\n`);
    expect(ok(['container', 'ls', '-aq', '--no-trunc'])).toBe(`${running}\n`);
    expect(fs.existsSync(path.join(env.store, 'containers', exited))).toBe(false);
    // Other commands under `container` as well.
    expect(ok(['container', 'inspect', '-f', '{{.State.Running}}', 'keep'])).toBe('true\n');
    const ns = pidNs(state('keep').Pid)!;
    ok(['container', 'rm', '-f', 'keep']);
    expect(leftovers(env.runroot, [ns])).toEqual([]);
  });
});

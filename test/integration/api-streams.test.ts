/**
 * The Engine API's streaming container endpoints against containers the CLI made on the same
 * store: logs (Docker's framing, raw with a terminal, follow, tail, since, timestamps), attach
 * (hijacked, stdin both ways, half-close, before the start), resize, exec (create, start,
 * inspect, terminal and its size), stats, archive (HEAD, GET, PUT, hostile tars refused) and
 * export. Run as root and as the unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import { startService, type Service } from './api.helpers';
import { demux, hijack, parseFrames } from './api-stream.helpers';

let env: Env;
let svc: Service;

beforeAll(async () => {
  env = setup('api-streams');
  svc = await startService(env);
}, 120_000);

afterAll(async () => {
  await svc?.stop();
  env?.dispose();
});

/** `run -d` through the CLI; the container's id. */
function runD(args: string[]): string {
  const r = env.b(['run', '-d', ...args]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

function status(id: string): string {
  return env.b(['inspect', '-f', '{{.State.Status}}', id]).stdout.trim();
}

async function waitExited(id: string): Promise<void> {
  const r = env.b(['wait', id]);
  expect(r.code, r.stderr).toBe(0);
}

/** A tar made by Python's tarfile from [name, content | {symlink}] entries (names as given, `..` included). */
function makeTar(file: string, entries: [string, string | { symlink: string } | { dir: true }][]): void {
  const py = `
import io, json, sys, tarfile
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:
    for name, c in json.loads(sys.argv[2]):
        i = tarfile.TarInfo(name)
        i.mtime = 1700000000
        if isinstance(c, dict) and 'symlink' in c:
            i.type = tarfile.SYMTYPE; i.linkname = c['symlink']; t.addfile(i)
        elif isinstance(c, dict):
            i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
        else:
            b = c.encode(); i.size = len(b); i.mode = 0o640; t.addfile(i, io.BytesIO(b))
`;
  const r = spawnSync('python3', ['-c', py, file, JSON.stringify(entries)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
}

function tarList(buf: Buffer): string[] {
  const r = spawnSync('tar', ['-tvf', '-'], { input: buf, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout.split('\n').filter(Boolean);
}

/** Each entry's name and owners as its header says: `name uid:gid`. */
function tarOwners(buf: Buffer): string[] {
  const py = 'import sys, tarfile\nwith tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as t:\n    for i in t: print(i.name, f"{i.uid}:{i.gid}")';
  const r = spawnSync('python3', ['-c', py], { input: buf, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout.split('\n').filter(Boolean);
}

/** A tar of [name, content or null for a directory, uid, gid] entries. */
function makeOwnedTar(file: string, entries: [string, string | null, number, number][]): void {
  const py = `
import io, json, sys, tarfile
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:
    for name, c, uid, gid in json.loads(sys.argv[2]):
        i = tarfile.TarInfo(name)
        i.uid, i.gid, i.mtime = uid, gid, 1700000000
        if c is None:
            i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
        else:
            b = c.encode(); i.size = len(b); i.mode = 0o644; t.addfile(i, io.BytesIO(b))
`;
  const r = spawnSync('python3', ['-c', py, file, JSON.stringify(entries)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
}

function tarFile(buf: Buffer, name: string): string {
  const r = spawnSync('tar', ['-xOf', '-', name], { input: buf, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

describe('logs', () => {
  it("frames stdout and stderr as Docker does without a terminal, and gives only the streams asked for", async () => {
    const id = runD([IMAGE, 'sh', '-c', 'echo out1; echo err1 >&2; echo out2']);
    await waitExited(id);
    const r = await svc.request('GET', `/v1.41/containers/${id}/logs?stdout=1&stderr=1`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/vnd.docker.raw-stream');
    // stdout and stderr are two pipes: their order relative to each other is not kept, within each it is.
    const { frames } = parseFrames(r.body);
    expect(frames.map((f) => f.stream).sort()).toEqual([1, 1, 2]);
    expect(demux(r.body)).toEqual({ 1: 'out1\nout2\n', 2: 'err1\n' });
    expect(demux((await svc.request('GET', `/containers/${id}/logs?stdout=1`)).body)).toEqual({ 1: 'out1\nout2\n' });
    expect(demux((await svc.request('GET', `/containers/${id}/logs?stderr=true`)).body)).toEqual({ 2: 'err1\n' });
    const none = await svc.request('GET', `/containers/${id}/logs`);
    expect(none.status).toBe(400);
    expect((await svc.request('GET', '/containers/nosuchthing/logs?stdout=1')).status).toBe(404);
  });

  it('gives the raw bytes of a container with a terminal', async () => {
    const id = runD(['-t', IMAGE, 'sh', '-c', 'echo hi; echo there >&2']);
    await waitExited(id);
    const r = await svc.request('GET', `/containers/${id}/logs?stdout=1&stderr=1`);
    expect(r.status).toBe(200);
    expect(r.text).toBe('hi\r\nthere\r\n');
  });

  it('follows until the container exits', async () => {
    const id = runD([IMAGE, 'sh', '-c', 'echo first; read x < /dev/null; sleep 1; echo second']);
    const r = await svc.request('GET', `/containers/${id}/logs?stdout=1&stderr=1&follow=1`);
    expect(demux(r.body)).toEqual({ 1: 'first\nsecond\n' });
    expect(status(id)).toBe('exited');
  });

  it('honours tail, since, until and timestamps', async () => {
    const id = runD([IMAGE, 'sh', '-c', 'for i in 1 2 3 4 5; do echo line$i; done']);
    await waitExited(id);
    expect(demux((await svc.request('GET', `/containers/${id}/logs?stdout=1&tail=2`)).body)).toEqual({ 1: 'line4\nline5\n' });
    expect((await svc.request('GET', `/containers/${id}/logs?stdout=1&tail=0`)).body.length).toBe(0);
    const ts = demux((await svc.request('GET', `/containers/${id}/logs?stdout=1&timestamps=1&tail=1`)).body)[1]!;
    expect(ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) line5\n$/);
    const future = Math.floor(Date.now() / 1000) + 3600;
    expect((await svc.request('GET', `/containers/${id}/logs?stdout=1&since=${future}`)).body.length).toBe(0);
    expect((await svc.request('GET', `/containers/${id}/logs?stdout=1&until=1000000000`)).body.length).toBe(0);
    expect(demux((await svc.request('GET', `/containers/${id}/logs?stdout=1&since=1000000000&tail=1`)).body)).toEqual({ 1: 'line5\n' });
  });

  it('stops following when the client goes away, and the service goes on', async () => {
    const id = runD([IMAGE, 'sh', '-c', 'while true; do echo tick; sleep 0.2; done']);
    const h = await hijack(svc.sock, 'GET', `/containers/${id}/logs?stdout=1&follow=1`, undefined, false);
    expect(h.status).toBe(200);
    await h.until((b) => b.includes('tick'));
    h.sock.destroy();
    expect((await svc.request('GET', '/_ping')).text).toBe('OK');
    expect(status(id)).toBe('running');
    env.b(['rm', '-f', id]);
  });
});

describe('attach', () => {
  it('relays stdin to the container and its output back, framed; leaving does not stop it', async () => {
    const id = runD(['-i', IMAGE, 'sh', '-c', 'while read l; do echo "got $l"; echo "err $l" >&2; done']);
    const h = await hijack(svc.sock, 'POST', `/v1.41/containers/${id}/attach?stream=1&stdin=1&stdout=1&stderr=1`);
    expect(h.status).toBe(101);
    expect(h.head).toMatch(/Content-Type: application\/vnd.docker.raw-stream/);
    expect(h.head).toMatch(/Upgrade: tcp/);
    h.sock.write('ping\n');
    const b = await h.until((x) => {
      const d = demux(x.subarray(0, x.length - parseFrames(x).rest.length));
      return d[1] === 'got ping\n' && d[2] === 'err ping\n';
    });
    expect(parseFrames(b).frames.map((f) => f.stream).sort()).toEqual([1, 2]);
    // A hijack that goes away leaves the container running (Docker's behaviour).
    h.sock.destroy();
    await new Promise((r) => setTimeout(r, 300));
    expect(status(id)).toBe('running');
    // And a second client gets through.
    const h2 = await hijack(svc.sock, 'POST', `/containers/${id}/attach?stream=1&stdin=1&stdout=1`);
    h2.sock.write('again\n');
    await h2.until((x) => x.includes('got again\n'));
    expect(h2.received().includes('err again')).toBe(false);
    h2.sock.destroy();
    env.b(['rm', '-f', id]);
  });

  it('attached before the start (docker run): all of the output, stdin closed by the half-close, the stream ends at the exit', async () => {
    const c = env.b(['create', '-i', IMAGE, 'sh', '-c', 'echo early; cat; echo late >&2']);
    expect(c.code, c.stderr).toBe(0);
    const id = c.stdout.trim();
    const h = await hijack(svc.sock, 'POST', `/containers/${id}/attach?stream=1&stdin=1&stdout=1&stderr=1`);
    expect(h.status).toBe(101);
    const s = env.b(['start', id]);
    expect(s.code, s.stderr).toBe(0);
    h.sock.write('round trip\n');
    // CloseWrite, as the docker CLI does after its stdin's end: the container's stdin ends.
    h.sock.end();
    const all = await h.ended();
    expect(demux(all)).toEqual({ 1: 'early\nround trip\n', 2: 'late\n' });
    await waitExited(id);
    expect(env.b(['inspect', '-f', '{{.State.ExitCode}}', id]).stdout.trim()).toBe('0');
  });

  it('gives raw bytes with a terminal, follows resize, and detaches with the detach keys', async () => {
    const id = runD(['-i', '-t', IMAGE, 'sh', '-c', 'while read l; do stty size; done']);
    const r = await svc.request('POST', `/containers/${id}/resize?h=33&w=111`);
    expect(r.status).toBe(200);
    const h = await hijack(svc.sock, 'POST', `/containers/${id}/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys=ctrl-x`);
    h.sock.write('\n');
    await h.until((b) => b.toString().includes('33 111'));
    // Raw: no frame header before the text.
    expect(h.received()[0]).not.toBe(1);
    h.sock.write(Buffer.from([0x18]));
    await h.ended();
    expect(status(id)).toBe('running');
    expect((await svc.request('POST', `/containers/${id}/resize?h=x&w=1`)).status).toBe(400);
    env.b(['rm', '-f', id]);
  });

  it('logs=1&stream=1 on a running container: the log, then the live stream from exactly where the log ends (a counter: nothing repeated or lost)', async () => {
    // Each number in two writes, so that the seam also falls inside a line.
    const id = runD([IMAGE, 'sh', '-c', 'i=0; while :; do printf "$i"; printf "\\n"; i=$((i+1)); [ $((i % 20)) = 0 ] && sleep 0.01; done']);
    const logged = () => Number(/(\d+)\n$/.exec(env.b(['logs', '--tail', '1', id]).stdout)?.[1] ?? 0);
    for (let i = 0; logged() < 1000; i++) {
      expect(i, 'a log of 1000 lines').toBeLessThan(600);
      await new Promise((r) => setTimeout(r, 50));
    }
    for (let round = 0; round < 5; round++) {
      // Read until well past what the log held when we attached: past the seam.
      const past = logged() + 2000;
      const h = await hijack(svc.sock, 'POST', `/containers/${id}/attach?logs=1&stream=1&stdout=1&stderr=1`);
      expect(h.status).toBe(101);
      const textOf = (b: Buffer) => parseFrames(b).frames.map((f) => f.data.toString('latin1')).join('');
      const got = await h.until((b) => {
        const t = textOf(b);
        const last = t.lastIndexOf('\n', t.length - 2);
        return last > 0 && Number(t.slice(last + 1).split('\n')[0]) > past;
      }, 'the counter past the log');
      h.sock.destroy();
      const lines = textOf(got).split('\n');
      lines.pop(); // the line being written when we stopped reading
      expect(lines.length).toBeGreaterThan(1000);
      const bad = lines.findIndex((l, k) => l !== String(k));
      expect(bad === -1 ? 'consecutive' : `line ${bad}: ${JSON.stringify(lines.slice(Math.max(0, bad - 2), bad + 3))}`).toBe('consecutive');
    }
    env.b(['rm', '-f', id]);
  }, 180_000);

  it('attaches to a container of a foreground CLI run (no -d): its log from the start, then live, and the exit status', async () => {
    let seen = -1;
    const fg = env.bg(['run', '--name', 'api-fg', IMAGE, 'sh', '-c', 'i=0; while [ $i -lt 400 ]; do echo $i; i=$((i+1)); [ $((i % 20)) = 0 ] && sleep 0.05; done; exit 3'], {
      onLine: (l) => (seen = Number(l)),
    });
    for (let i = 0; seen < 50; i++) {
      expect(i, 'the foreground run to print 50').toBeLessThan(600);
      await new Promise((r) => setTimeout(r, 20));
    }
    const h = await hijack(svc.sock, 'POST', '/containers/api-fg/attach?logs=1&stream=1&stdout=1&stderr=1');
    expect(h.status).toBe(101);
    const all = await h.ended();
    const f = await fg;
    expect(f.code).toBe(3);
    const want = Array.from({ length: 400 }, (_, k) => `${k}\n`).join('');
    expect(f.stdout).toBe(want);
    expect(demux(all)).toEqual({ 1: want });
    expect((await svc.request('POST', '/containers/api-fg/wait')).json()).toMatchObject({ StatusCode: 3 });
    env.b(['rm', '-f', 'api-fg']);
  });

  it("a stopped container's attach gets its next run's streams, as Docker's daemon (`docker start -a` attaches first); a missing one is a 404", async () => {
    const id = runD([IMAGE, 'sh', '-c', 'echo ran']);
    await waitExited(id);
    const h = await hijack(svc.sock, 'POST', `/containers/${id}/attach?stream=1&stdout=1`);
    expect(h.status).toBe(101);
    expect((await svc.request('POST', `/containers/${id}/start`)).status).toBe(204);
    // The second run's output only: the first's is in the log, which stream=1 does not replay.
    expect(demux(await h.ended())).toEqual({ 1: 'ran\n' });
    const m = await hijack(svc.sock, 'POST', '/containers/nosuch/attach?stream=1&stdout=1');
    expect(m.status).toBe(404);
  });
});

describe('exec', () => {
  it('creates, starts (hijacked, framed) and inspects an exec with its exit code', async () => {
    const id = runD([IMAGE, 'sleep', '300']);
    const c = await svc.request('POST', `/v1.41/containers/${id}/exec`, { AttachStdout: true, AttachStderr: true, Cmd: ['sh', '-c', 'echo o; echo e >&2; exit 7'], Env: ['X=1'] });
    expect(c.status, c.text).toBe(201);
    const execId = c.json<{ Id: string }>().Id;
    expect(execId).toMatch(/^[0-9a-f]{64}$/);
    const before = (await svc.request('GET', `/exec/${execId}/json`)).json<Record<string, unknown>>();
    expect(before).toMatchObject({ ID: execId, ContainerID: id, Running: false, ExitCode: null, OpenStdin: false, OpenStdout: true, ProcessConfig: { entrypoint: 'sh', arguments: ['-c', 'echo o; echo e >&2; exit 7'], tty: false } });
    const h = await hijack(svc.sock, 'POST', `/v1.41/exec/${execId}/start`, { Detach: false, Tty: false });
    expect(h.status).toBe(101);
    expect(demux(await h.ended())).toEqual({ 1: 'o\n', 2: 'e\n' });
    const after = (await svc.request('GET', `/exec/${execId}/json`)).json<{ Running: boolean; ExitCode: number; Pid: number }>();
    expect(after.Running).toBe(false);
    expect(after.ExitCode).toBe(7);
    expect(after.Pid).toBeGreaterThan(0);
    // Started once only; unknown ids and fields are refused.
    expect((await svc.request('POST', `/exec/${execId}/start`, { Detach: false })).status).toBe(409);
    expect((await svc.request('GET', '/exec/0123abc/json')).status).toBe(404);
    expect((await svc.request('POST', `/containers/${id}/exec`, { Cmd: ['true'], Bogus: 1 })).status).toBe(400);
    expect((await svc.request('POST', `/containers/${id}/exec`, { Cmd: 'true' })).status).toBe(400);
  });

  it('relays stdin to an exec and ends its stdin with the half-close; a detached exec records its status', async () => {
    const id = runD([IMAGE, 'sleep', '300']);
    const c = (await svc.request('POST', `/containers/${id}/exec`, { AttachStdin: true, AttachStdout: true, Cmd: ['sh', '-c', 'cat; exit 3'] })).json<{ Id: string }>();
    const h = await hijack(svc.sock, 'POST', `/exec/${c.Id}/start`, {});
    h.sock.end('through exec\n');
    expect(demux(await h.ended())).toEqual({ 1: 'through exec\n' });
    expect((await svc.request('GET', `/exec/${c.Id}/json`)).json<{ ExitCode: number }>().ExitCode).toBe(3);
    const d = (await svc.request('POST', `/containers/${id}/exec`, { Cmd: ['sh', '-c', 'exit 4'] })).json<{ Id: string }>();
    const s = await svc.request('POST', `/exec/${d.Id}/start`, { Detach: true });
    expect(s.status).toBe(200);
    let ins = { Running: true, ExitCode: null as number | null };
    for (let i = 0; i < 100 && ins.ExitCode === null; i++) {
      ins = (await svc.request('GET', `/exec/${d.Id}/json`)).json();
      if (ins.ExitCode === null) await new Promise((r) => setTimeout(r, 50));
    }
    expect(ins).toMatchObject({ Running: false, ExitCode: 4 });
  });

  it('gives an exec a terminal of the size asked for, and resizes it', async () => {
    const id = runD([IMAGE, 'sleep', '300']);
    const c = (await svc.request('POST', `/containers/${id}/exec`, { AttachStdin: true, AttachStdout: true, AttachStderr: true, Tty: true, ConsoleSize: [30, 100], Cmd: ['sh', '-c', 'tty; stty size; read x; stty size'] })).json<{ Id: string }>();
    const h = await hijack(svc.sock, 'POST', `/exec/${c.Id}/start`, { Detach: false, Tty: true });
    expect(h.status).toBe(101);
    await h.until((b) => b.toString().includes('30 100'));
    expect(h.received().toString()).toMatch(/\/dev\/pts\/\d+/);
    const r = await svc.request('POST', `/exec/${c.Id}/resize?h=40&w=120`);
    expect(r.status).toBe(201);
    h.sock.write('\n');
    const all = await h.ended();
    expect(all.toString()).toMatch(/40 120/);
    expect((await svc.request('GET', `/exec/${c.Id}/json`)).json<{ ExitCode: number; ProcessConfig: { tty: boolean } }>()).toMatchObject({ ExitCode: 0, ProcessConfig: { tty: true } });
  });

  it('refuses an exec in a stopped container with 409', async () => {
    const id = runD([IMAGE, 'true']);
    await waitExited(id);
    expect((await svc.request('POST', `/containers/${id}/exec`, { Cmd: ['true'] })).status).toBe(409);
  });
});

describe('stats', () => {
  it("gives Docker's shape one-shot and streaming, and a client leaving mid-stream is harmless", async () => {
    const id = runD([IMAGE, 'sleep', '300']);
    const one = await svc.request('GET', `/containers/${id}/stats?stream=0&one-shot=1`);
    expect(one.status).toBe(200);
    const j = one.json<Record<string, any>>(); // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(j.id).toBe(id);
    expect(j.name).toMatch(/^\//);
    expect(j.memory_stats.usage).toBeGreaterThan(0);
    expect(j.memory_stats.limit).toBeGreaterThan(0);
    expect(j.pids_stats.current).toBeGreaterThanOrEqual(1);
    expect(j.cpu_stats.system_cpu_usage).toBeGreaterThan(0);
    expect(j.cpu_stats.online_cpus).toBeGreaterThan(0);
    expect(typeof j.cpu_stats.cpu_usage.total_usage).toBe('number');
    expect(j.networks.eth0).toHaveProperty('rx_bytes');
    expect(j.blkio_stats.io_service_bytes_recursive).toBeInstanceOf(Array);
    expect(j.preread).toBe('0001-01-01T00:00:00Z');
    const two = (await svc.request('GET', `/containers/${id}/stats?stream=false`)).json<Record<string, any>>(); // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(two.precpu_stats.system_cpu_usage).toBeGreaterThan(0);
    expect(two.cpu_stats.system_cpu_usage).toBeGreaterThan(two.precpu_stats.system_cpu_usage);
    const h = await hijack(svc.sock, 'GET', `/containers/${id}/stats`, undefined, false);
    expect(h.status).toBe(200);
    const got = await h.until((b) => b.toString().split('\n').filter((l) => l.startsWith('{')).length >= 2);
    const objs = got
      .toString()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { read: string; preread: string });
    expect(objs[1]!.preread).toBe(objs[0]!.read);
    h.sock.destroy();
    expect((await svc.request('GET', '/_ping')).text).toBe('OK');
    expect(status(id)).toBe('running');
    env.b(['rm', '-f', id]);
  });
});

describe('archive and export', () => {
  it('HEADs and GETs a path with its stat header; 404 for a missing one', async () => {
    const id = runD([IMAGE, 'sh', '-c', 'mkdir -p /data/sub && echo hello > /data/sub/f.txt && ln -s sub/f.txt /data/link && sleep 300']);
    for (let i = 0; i < 50 && env.b(['exec', id, 'test', '-e', '/data/link']).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    const head = await svc.request('HEAD', `/containers/${id}/archive?path=/data/sub/f.txt`);
    expect(head.status).toBe(200);
    const st = JSON.parse(Buffer.from(head.headers['x-docker-container-path-stat'] as string, 'base64').toString()) as { name: string; size: number; mode: number; mtime: string; linkTarget: string };
    expect(st).toMatchObject({ name: 'f.txt', size: 6, linkTarget: '' });
    expect(st.mode & 0o777).toBe(0o644);
    expect(st.mode).toBeLessThan(2 ** 31);
    const dir = JSON.parse(Buffer.from((await svc.request('HEAD', `/containers/${id}/archive?path=/data`)).headers['x-docker-container-path-stat'] as string, 'base64').toString()) as { mode: number };
    expect(dir.mode).toBeGreaterThanOrEqual(2 ** 31); // Go's ModeDir
    const link = JSON.parse(Buffer.from((await svc.request('HEAD', `/containers/${id}/archive?path=/data/link`)).headers['x-docker-container-path-stat'] as string, 'base64').toString()) as { linkTarget: string };
    expect(link.linkTarget).toBe('/data/sub/f.txt');
    expect((await svc.request('HEAD', `/containers/${id}/archive?path=/no/such`)).status).toBe(404);
    expect((await svc.request('GET', `/containers/${id}/archive?path=/no/such`)).status).toBe(404);
    const get = await svc.request('GET', `/containers/${id}/archive?path=/data`);
    expect(get.status).toBe(200);
    expect(get.headers['content-type']).toBe('application/x-tar');
    expect(get.headers['x-docker-container-path-stat']).toBeTruthy();
    const names = tarList(get.body).map((l) => l.split(/\s+/).slice(5).join(' '));
    expect(names).toEqual(expect.arrayContaining(['data/', 'data/sub/', 'data/sub/f.txt', 'data/link -> sub/f.txt']));
    expect(tarFile(get.body, 'data/sub/f.txt')).toBe('hello\n');
    env.b(['rm', '-f', id]);
  });

  it('PUTs a tar into a directory, and refuses one that would escape with nothing written', async () => {
    const id = runD([IMAGE, 'sleep', '300']);
    const good = path.join(env.work, 'good.tar');
    makeTar(good, [['in', { dir: true }], ['in/a.txt', 'from the host\n'], ['in/l', { symlink: 'a.txt' }]]);
    const r = await svc.request('PUT', `/containers/${id}/archive?path=/tmp`, fs.readFileSync(good), { 'Content-Type': 'application/x-tar' });
    expect(r.status, r.text).toBe(200);
    expect(env.b(['exec', id, 'cat', '/tmp/in/a.txt']).stdout).toBe('from the host\n');
    expect(env.b(['exec', id, 'readlink', '/tmp/in/l']).stdout.trim()).toBe('a.txt');
    for (const [name, entries] of [
      ['dotdot', [['../escape.txt', 'no\n']]],
      ['abs', [['/escape-abs.txt', 'no\n']]],
      ['through-link', [['lnk', { symlink: '/' }], ['lnk/escape-link.txt', 'no\n']]],
    ] as const) {
      const f = path.join(env.work, `${name}.tar`);
      makeTar(f, [['first.txt', 'x'], ...entries] as [string, string | { symlink: string }][]);
      const bad = await svc.request('PUT', `/containers/${id}/archive?path=/tmp`, fs.readFileSync(f), { 'Content-Type': 'application/x-tar' });
      expect(bad.status, `${name}: ${bad.text}`).toBe(400);
      expect(bad.json<{ message: string }>().message).toMatch(/refusing/);
    }
    // Nothing of the refused tars reached the container (not even their harmless first entry).
    const ls = env.b(['exec', id, 'sh', '-c', 'ls /tmp; ls / | grep -c escape || true']);
    expect(ls.stdout).not.toMatch(/first\.txt/);
    expect(ls.stdout.trim().split('\n').pop()).toBe('0');
    // Not a directory, and a missing one.
    expect((await svc.request('PUT', `/containers/${id}/archive?path=/tmp/in/a.txt`, fs.readFileSync(good))).status).toBe(400);
    expect((await svc.request('PUT', `/containers/${id}/archive?path=/nowhere`, fs.readFileSync(good))).status).toBe(404);
    env.b(['rm', '-f', id]);
  });

  it('archives from and into a stopped container too', async () => {
    const c = env.b(['create', IMAGE, 'true']);
    const id = c.stdout.trim();
    const good = path.join(env.work, 'stopped.tar');
    makeTar(good, [['note.txt', 'kept\n']]);
    expect((await svc.request('PUT', `/containers/${id}/archive?path=/`, fs.readFileSync(good))).status).toBe(200);
    const get = await svc.request('GET', `/containers/${id}/archive?path=/note.txt`);
    expect(get.status).toBe(200);
    expect(tarFile(get.body, 'note.txt')).toBe('kept\n');
  });

  it("GET writes the owners as they are in the container (1000:1000 and 0:0), running or stopped; PUT with copyUIDGID=1 keeps the tar's owners, without it they are root's", async () => {
    const id = runD([IMAGE, 'sh', '-c', 'mkdir -p /own/sub /plain && echo a > /own/sub/mine && echo b > /own/theirs && chown -R 1000:1000 /own/sub && chown 0:0 /own/theirs && touch /ready && sleep 300']);
    for (let i = 0; i < 50 && env.b(['exec', id, 'test', '-e', '/ready']).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    const want = ['own 0:0', 'own/sub 1000:1000', 'own/sub/mine 1000:1000', 'own/theirs 0:0'];
    const get = await svc.request('GET', `/containers/${id}/archive?path=/own`);
    expect(get.status, get.text).toBe(200);
    expect(tarOwners(get.body).sort()).toEqual(want);
    expect(tarFile(get.body, 'own/sub/mine')).toBe('a\n');
    // A single file, named by its last component.
    expect(tarOwners((await svc.request('GET', `/containers/${id}/archive?path=/own/sub/mine`)).body)).toEqual(['mine 1000:1000']);

    const tar = path.join(env.work, 'owned.tar');
    makeOwnedTar(tar, [['put', null, 1000, 1000], ['put/f', 'kept\n', 1000, 1000], ['put/r', 'root\n', 0, 0], ['put/g', 'other\n', 1234, 4321]]);
    const put = await svc.request('PUT', `/containers/${id}/archive?path=/tmp&copyUIDGID=1`, fs.readFileSync(tar), { 'Content-Type': 'application/x-tar' });
    expect(put.status, put.text).toBe(200);
    const owners = (p: string) => env.b(['exec', id, 'sh', '-c', `cd ${p} && stat -c '%n %u:%g' . * | sort`]).stdout.trim().split('\n');
    expect(owners('/tmp/put')).toEqual(['. 1000:1000', 'f 1000:1000', 'g 1234:4321', 'r 0:0']);
    expect(env.b(['exec', id, 'cat', '/tmp/put/f']).stdout).toBe('kept\n');
    const plain = await svc.request('PUT', `/containers/${id}/archive?path=/plain`, fs.readFileSync(tar), { 'Content-Type': 'application/x-tar' });
    expect(plain.status, plain.text).toBe(200);
    expect(owners('/plain/put')).toEqual(['. 0:0', 'f 0:0', 'g 0:0', 'r 0:0']);

    // Stopped: the same owners through a transient container over its root.
    expect(env.b(['stop', '-t', '0', id]).code).toBe(0);
    const stopped = await svc.request('GET', `/containers/${id}/archive?path=/own`);
    expect(stopped.status, stopped.text).toBe(200);
    expect(tarOwners(stopped.body).sort()).toEqual(want);
    env.b(['rm', '-f', id]);
  });

  it('exports the container filesystem as a tar', async () => {
    const id = runD([IMAGE, 'sh', '-c', 'echo mark > /exported.txt; sleep 300']);
    for (let i = 0; i < 50 && env.b(['exec', id, 'test', '-e', '/exported.txt']).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    const r = await svc.request('GET', `/containers/${id}/export`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/x-tar');
    expect(tarFile(r.body, 'exported.txt')).toBe('mark\n');
    expect(tarList(r.body).some((l) => / bin\/?$/.test(l))).toBe(true);
    env.b(['rm', '-f', id]);
  });
});

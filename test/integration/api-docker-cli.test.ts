/**
 * The real docker CLI (Debian's docker.io 20.10, API 1.41) against the Engine API service the
 * test starts: DOCKER_HOST=unix://SOCK, the client's own empty config. Containers (run --rm with
 * its exit status, run -d, logs -f, exec and exec -it through a pty, ps --format, inspect, cp
 * both ways, stats --no-stream, events while a container runs), images (push, rmi, pull, images,
 * save | load through a loopback registry), version and info, and the service's lifecycle under a
 * client: restarted between two commands, killed with SIGKILL while a container runs.
 * BURROW_API_PEER=podman runs the same against `podman system service` (api-clients.helpers.ts).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { checks, nowSeconds, PEER, PODMAN_DEVIATIONS as DEV, show, startApi, until, type ApiPeer, type Result } from './api-clients.helpers';
import { startRegistry, type Registry } from '../harness/registry.mjs';
import { buildBusyboxImage, pushImage } from '../harness/images.mjs';
import { dockerCli, shq } from '../harness/docker-clients.mjs';

let api: ApiPeer;
let reg: Registry;
/** An image skopeo pushed to the registry (not made by the service under test). */
let pushedRef: string;
let pushedDigest: string;

beforeAll(async () => {
  reg = await startRegistry({ mode: 'anonymous' });
  api = await startApi('api-docker-cli', { insecure: [reg.host] });
  const layout = path.join(api.work, 'layout');
  const img = buildBusyboxImage(layout, { tag: 'v1', config: { Cmd: ['/bin/sh', '-c', 'echo from-the-registry'] } });
  pushedRef = await pushImage(reg, img, 'api/pushed', 'v1');
  pushedDigest = img.manifest.digest;
}, 180_000);

afterAll(async () => {
  await api?.dispose();
  await reg?.stop();
}, 120_000);

const d = (args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<Result> => api.docker(args, opts);

async function ok(args: string[]): Promise<string> {
  const r = await d(args);
  expect(r.code, `docker ${args.join(' ')}\n${show(r)}\nservice: ${api.log().slice(-2000)}`).toBe(0);
  return r.stdout;
}

/** A detached container that runs until stopped (sh as pid 1 exits on TERM when trapped). */
async function runDetached(name: string): Promise<string> {
  return (await ok(['run', '-d', '--name', name, api.image, 'sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done'])).trim();
}

describe(`docker 20.10 CLI against ${PEER}'s Engine API as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('version answers with the server side: API 1.41', async () => {
    const v = await ok(['version', '--format', '{{.Server.APIVersion}} {{.Server.Os}}']);
    expect(v.trim()).toBe('1.41 linux');
  });

  it('info answers with the server side', async () => {
    const info = JSON.parse(await ok(['info', '--format', '{{json .}}'])) as Record<string, unknown>;
    expect(info).toMatchObject({ OSType: 'linux' });
    expect(typeof info.Containers).toBe('number');
    expect(typeof info.Images).toBe('number');
    expect(String(info.ServerVersion)).not.toBe('');
    const plain = await d(['info']);
    expect(plain.code, show(plain)).toBe(0);
    expect(plain.stdout).toMatch(/Server:/);
  });

  it("run --rm: the container's output and exit status, and the container is gone", async () => {
    const r = await d(['run', '--rm', '--name', 'cli-rm', api.image, 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    if (checks(DEV.runRmExitStatus)) expect(r.code, show(r)).toBe(3);
    expect(r.stdout).toBe('out\n');
    expect(r.stderr).toContain('err\n');
    const t = await d(['run', '--rm', api.image, 'true']);
    expect(t.code, show(t)).toBe(0);
    const ps = await ok(['ps', '-a', '--format', '{{.Names}}']);
    expect(ps.split('\n')).not.toContain('cli-rm');
  });

  it("run without --rm: the exit status is the container's, and Docker's 125/127 for what cannot run", async () => {
    const r = await d(['run', '--name', 'cli-exit', api.image, 'sh', '-c', 'exit 7']);
    expect(r.code, show(r)).toBe(7);
    expect((await ok(['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', 'cli-exit'])).trim()).toBe('exited 7');
    const nf = await d(['run', '--rm', api.image, '/no/such/command']);
    if (checks(DEV.startFailureStatus)) expect(nf.code, show(nf)).toBe(127);
    const noimg = await d(['run', '--rm', '--pull', 'never', 'no-such-image-here:v0', 'true']);
    expect(noimg.code, show(noimg)).toBe(125);
    await ok(['rm', 'cli-exit']);
  });

  it('run -d, ps --format, inspect, logs -f until the container exits', async () => {
    const id = (await ok(['run', '-d', '--name', 'cli-logs', api.image, 'sh', '-c', 'for i in 1 2 3; do echo line$i; sleep 1; done; echo bye >&2'])).trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const ps = await ok(['ps', '-a', '--no-trunc', '--filter', 'name=cli-logs', '--format', '{{.ID}}|{{.Names}}|{{.Image}}']);
    if (checks(DEV.imageAsGiven)) expect(ps.trim()).toBe(`${id}|cli-logs|${api.image}`);
    else expect(ps.trim()).toMatch(new RegExp(`^${id}\\|cli-logs\\|`));
    const ins = JSON.parse(await ok(['inspect', 'cli-logs'])) as { Id: string; Name: string; Config: { Image: string; Cmd: string[] } }[];
    expect(ins).toHaveLength(1);
    const [c] = ins as [(typeof ins)[number]];
    expect(c).toMatchObject({ Id: id, Name: '/cli-logs' });
    if (checks(DEV.imageAsGiven)) expect(c.Config.Image).toBe(api.image);
    expect(c.Config.Cmd[0]).toBe('sh');
    // logs -f follows until the container exits: all lines, stdout and stderr apart.
    const f = await d(['logs', '-f', 'cli-logs']);
    expect(f.code, show(f)).toBe(0);
    expect(f.stdout).toBe('line1\nline2\nline3\n');
    expect(f.stderr).toBe('bye\n');
    expect((await ok(['inspect', '--format', '{{.State.Running}} {{.State.ExitCode}}', 'cli-logs'])).trim()).toBe('false 0');
    // The last two lines of both streams: line3 on stdout, bye on stderr.
    const tail = await d(['logs', '--tail', '2', 'cli-logs']);
    expect(tail.code, show(tail)).toBe(0);
    expect([tail.stdout, tail.stderr]).toEqual(['line3\n', 'bye\n']);
    await ok(['rm', 'cli-logs']);
  });

  it("exec: output and exit status; exec -it through a pty: a terminal, the shell's exit status", async () => {
    await runDetached('cli-exec');
    const e = await d(['exec', 'cli-exec', 'sh', '-c', 'echo exec-ok; exit 4']);
    expect(e.code, show(e)).toBe(4);
    expect(e.stdout).toBe('exec-ok\n');
    const i = await d(['exec', '-i', 'cli-exec', 'sh', '-c', 'cat; echo done'], { input: 'from stdin\n' });
    expect(i.code, show(i)).toBe(0);
    expect(i.stdout).toBe('from stdin\ndone\n');
    const t = await api.dockerTty(
      [
        ['expect', '# '],
        ['send', 'tty; echo pty-$((6*7))\r'],
        ['expect', 'pty-42'],
        ['send', 'exit 3\r'],
        ['wait'],
      ],
      ['exec', '-it', 'cli-exec', 'sh'],
    );
    expect(t.failed, JSON.stringify(t)).toBeNull();
    expect(t.out).toMatch(/\/dev\/pts\/\d+/);
    expect(t.status, JSON.stringify(t)).toBe(3);
    await ok(['rm', '-f', 'cli-exec']);
  });

  it('cp into a container and out of it: contents and directory trees', async () => {
    await runDetached('cli-cp');
    const src = path.join(api.work, 'cp-in');
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
    fs.writeFileSync(path.join(src, 'sub', 'b.txt'), 'beta\n');
    await ok(['cp', path.join(src, 'a.txt'), 'cli-cp:/tmp/a.txt']);
    await ok(['cp', src, 'cli-cp:/tmp/tree']);
    expect(await ok(['exec', 'cli-cp', 'cat', '/tmp/a.txt', '/tmp/tree/a.txt', '/tmp/tree/sub/b.txt'])).toBe('alpha\nalpha\nbeta\n');
    await ok(['exec', 'cli-cp', 'sh', '-c', 'mkdir -p /out/deep && echo gamma > /out/deep/c.txt && echo delta > /out/d.txt']);
    const dst = path.join(api.work, 'cp-out');
    fs.mkdirSync(dst);
    await ok(['cp', 'cli-cp:/out/d.txt', path.join(dst, 'd.txt')]);
    await ok(['cp', 'cli-cp:/out', path.join(dst, 'tree')]);
    expect(fs.readFileSync(path.join(dst, 'd.txt'), 'utf8')).toBe('delta\n');
    expect(fs.readFileSync(path.join(dst, 'tree', 'deep', 'c.txt'), 'utf8')).toBe('gamma\n');
    const missing = await d(['cp', 'cli-cp:/no/such/file', dst]);
    expect(missing.code, show(missing)).not.toBe(0);
    expect(missing.stderr).toMatch(/No such container:path: cli-cp:\/no\/such\/file/);
    await ok(['rm', '-f', 'cli-cp']);
  });

  it('stats --no-stream: one line for the running container', async () => {
    await runDetached('cli-stats');
    const s = await ok(['stats', '--no-stream', '--format', '{{.Name}}|{{.MemUsage}}|{{.PIDs}}', 'cli-stats']);
    const [name, mem, pids] = s.trim().split('|');
    if (checks(DEV.statsName)) expect(name).toBe('cli-stats');
    expect(mem).toMatch(/\d.*B \/ /);
    // Rootless on a host without a delegated cgroup there is nothing to count: a number still.
    expect(pids).toMatch(/^\d+$/);
    await ok(['rm', '-f', 'cli-stats']);
  });

  // podman runs healthchecks from systemd timers, which the test's podman service has no user manager for.
  it.skipIf(PEER === 'podman')('run --health-*: the monitor runs the check; inspect State.Health, ps (healthy) and --filter health=', async () => {
    await ok(['run', '-d', '--name', 'cli-health', '--health-cmd', 'echo ok', '--health-interval', '200ms', '--health-retries', '2', api.image, 'sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done']);
    await until(async () => (await ok(['inspect', '--format', '{{.State.Health.Status}}', 'cli-health'])).trim() === 'healthy', 60_000, 'cli-health to be healthy');
    const h = JSON.parse(await ok(['inspect', '--format', '{{json .State.Health}}', 'cli-health'])) as { Status: string; FailingStreak: number; Log: { ExitCode: number; Output: string }[] };
    expect(h.FailingStreak).toBe(0);
    expect(h.Log[0]).toMatchObject({ ExitCode: 0, Output: 'ok\n' });
    const cfg = JSON.parse(await ok(['inspect', '--format', '{{json .Config.Healthcheck}}', 'cli-health'])) as Record<string, unknown>;
    expect(cfg).toMatchObject({ Test: ['CMD-SHELL', 'echo ok'], Interval: 200_000_000, Retries: 2 });
    const ps = await ok(['ps', '--filter', 'health=healthy', '--format', '{{.Names}}|{{.Status}}']);
    expect(ps.trim()).toMatch(/^cli-health\|Up .* \(healthy\)$/);
    expect((await ok(['ps', '-q', '--filter', 'health=unhealthy'])).trim()).toBe('');
    await ok(['rm', '-f', 'cli-health']);
  });

  it('events while a container runs: create, start and die with its exit code, streamed', async () => {
    const since = nowSeconds();
    const events = spawn(dockerCli() as string, ['events', '--since', since, '--filter', 'container=cli-events', '--format', '{{.Type}} {{.Action}} {{index .Actor.Attributes "name"}} {{index .Actor.Attributes "exitCode"}}'], {
      env: api.clientEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    events.stdout.on('data', (b: Buffer) => (out += b));
    events.stderr.on('data', (b: Buffer) => (err += b));
    try {
      await ok(['run', '-d', '--name', 'cli-events', api.image, 'sh', '-c', 'sleep 1; exit 5']);
      await until(() => /die/.test(out) || events.exitCode !== null, 60_000, `the die event (events so far: ${out}${err})`);
      const lines = out.trim().split('\n');
      expect(lines, out + err).toContain('container create cli-events ');
      expect(lines).toContain('container start cli-events ');
      expect(lines).toContain('container die cli-events 5');
      expect(events.exitCode, 'events keeps streaming').toBeNull();
    } finally {
      events.kill('SIGTERM');
    }
    await ok(['rm', 'cli-events']);
  });

  it('push, rmi, pull, images: through a loopback registry', async () => {
    const ref = `${reg.host}/api/cli:v1`;
    await ok(['tag', api.image, ref]);
    const push = await ok(['push', ref]);
    expect(push).toMatch(/digest: sha256:[0-9a-f]{64}/);
    const rmi = await ok(['rmi', ref]);
    expect(rmi).toMatch(/Untagged: .*api\/cli:v1/);
    const listed = async (): Promise<string[]> => (await ok(['images', '--format', '{{.Repository}}:{{.Tag}}'])).split('\n');
    expect(await listed()).not.toContain(ref);
    // The image pushed by the service comes back, and runs.
    await ok(['pull', ref]);
    expect(await listed()).toContain(ref);
    expect(await ok(['run', '--rm', ref, 'echo', 'pulled-and-ran'])).toBe('pulled-and-ran\n');
    // An image pushed by another client (skopeo) is pulled with its digest.
    const p = await ok(['pull', pushedRef]);
    if (checks(DEV.pullDigestLine)) expect(p).toContain(`Digest: ${pushedDigest}`);
    const digests = await ok(['image', 'inspect', '--format', '{{join .RepoDigests " "}}', pushedRef]);
    expect(digests).toContain(`${reg.host}/api/pushed@${pushedDigest}`);
    expect(await ok(['run', '--rm', pushedRef])).toBe('from-the-registry\n');
    // rmi of what is not there: Docker's error.
    const none = await d(['rmi', `${reg.host}/api/none:v0`]);
    expect(none.code, show(none)).toBe(1);
    expect(none.stderr).toMatch(/No such image/i);
    await ok(['rmi', ref, pushedRef]);
    expect(await listed()).not.toContain(pushedRef);
  });

  it('save | load: the image comes back under its name and runs', async () => {
    await ok(['tag', api.image, 'api-save:v1']);
    const tar = path.join(api.work, 'saved.tar');
    const [cmd = 'env', ...argv] = api.dockerArgv(['save', 'api-save:v1']);
    const out = fs.openSync(tar, 'w');
    const save = await new Promise<number | null>((resolve) => {
      const c = spawn(cmd, argv, { stdio: ['ignore', out, 'inherit'] });
      c.on('close', resolve);
    });
    fs.closeSync(out);
    expect(save).toBe(0);
    expect(fs.statSync(tar).size).toBeGreaterThan(100_000);
    await ok(['rmi', 'api-save:v1']);
    // A pipe into load, as `docker save | docker load` does.
    const load = await new Promise<Result>((resolve) => {
      const c = spawn('sh', ['-c', `cat ${shq(tar)} | ${api.dockerArgv(['load']).map(shq).join(' ')}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout.on('data', (b: Buffer) => (stdout += b));
      c.stderr.on('data', (b: Buffer) => (stderr += b));
      c.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
    expect(load.code, show(load)).toBe(0);
    expect(load.stdout).toMatch(/Loaded image: (docker\.io\/library\/)?api-save:v1/);
    expect(await ok(['run', '--rm', 'api-save:v1', 'echo', 'loaded'])).toBe('loaded\n');
    await ok(['rmi', 'api-save:v1']);
  });

  it('import URL: the service fetches the tarball (fromSrc=URL); a URL that fails is an error naming it', async () => {
    // A root filesystem tarball, as `docker export` gives it, served over HTTP on loopback.
    const ctr = (await ok(['create', api.image, 'true'])).trim();
    const tar = path.join(api.work, 'exported.tar');
    const [cmd = 'env', ...argv] = api.dockerArgv(['export', '-o', tar, ctr]);
    const exported = await new Promise<number | null>((resolve) => spawn(cmd, argv, { stdio: 'inherit' }).on('close', resolve));
    expect(exported).toBe(0);
    await ok(['rm', ctr]);
    const server = http.createServer((req, res) => {
      if (req.url !== '/rootfs.tar') return res.writeHead(404).end('not here');
      res.writeHead(200, { 'Content-Type': 'application/x-tar' });
      fs.createReadStream(tar).pipe(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      await ok(['import', `http://127.0.0.1:${port}/rootfs.tar`, 'api-url:v1']);
      expect(await ok(['run', '--rm', 'api-url:v1', '/bin/echo', 'imported'])).toBe('imported\n');
      const bad = await d(['import', `http://127.0.0.1:${port}/missing.tar`, 'api-url:bad']);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain(`http://127.0.0.1:${port}/missing.tar`);
      expect((await d(['image', 'inspect', 'api-url:bad'])).code).not.toBe(0);
      await ok(['rmi', 'api-url:v1']);
    } finally {
      server.close();
    }
  });
});

describe(`the ${PEER} service's lifecycle under the docker CLI`, () => {
  it('restarted between two commands: the next command sees the same containers', async () => {
    const id = await runDetached('cli-restart');
    await api.restart();
    expect((await ok(['ps', '--no-trunc', '--format', '{{.ID}} {{.Names}}'])).split('\n')).toContain(`${id} cli-restart`);
    expect(await ok(['exec', 'cli-restart', 'echo', 'still-here'])).toBe('still-here\n');
    await ok(['rm', '-f', 'cli-restart']);
  });

  it('killed with SIGKILL while a container runs: the container keeps running and the next service shows it', async () => {
    const id = await runDetached('cli-sigkill');
    const pid = Number((await ok(['inspect', '--format', '{{.State.Pid}}', 'cli-sigkill'])).trim());
    expect(pid).toBeGreaterThan(0);
    await api.kill();
    const down = await d(['ps']);
    expect(down.code, 'nothing answers while the service is down').not.toBe(0);
    // The container's process is alive without the service (signal 0 only checks).
    expect(() => process.kill(pid, 0)).not.toThrow();
    await api.start();
    const ps = await ok(['ps', '--no-trunc', '--format', '{{.ID}} {{.Names}} {{.State}}']);
    expect(ps.split('\n'), ps).toContain(`${id} cli-sigkill running`);
    expect((await ok(['inspect', '--format', '{{.State.Pid}}', 'cli-sigkill'])).trim()).toBe(String(pid));
    await ok(['rm', '-f', 'cli-sigkill']);
    const gone = await ok(['ps', '-a', '--format', '{{.Names}}']);
    expect(gone.split('\n')).not.toContain('cli-sigkill');
  });
});

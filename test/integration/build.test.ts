/**
 * `burrow build`: real builds from the busybox image of the test harness, run through the CLI
 * as a user would, as root and as the unprivileged test user: RUN/COPY/ENV/WORKDIR/USER/CMD and
 * the result run; multi-stage builds with COPY --from and a skipped stage; ARG before FROM and
 * --build-arg; .dockerignore with `!` exceptions; heredocs; COPY --chown with names; ONBUILD;
 * RUN --mount=type=cache; the cache (no change, touch, one edit, --no-cache); a failing RUN
 * leaves nothing behind; a hostile context cannot make COPY read outside it; push and skopeo.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE, leftovers, setup, type Env } from './lifecycle.helpers';
import { disposeStore, exec } from './image-helpers';
import { BIN } from './helpers';
import { startRegistry } from '../harness/registry.mjs';

let env: Env;
beforeAll(() => {
  env = setup('build');
});
afterEach(() => env.cleanup());
afterAll(() => disposeStore(env));

const T = { timeout: 180_000 };
const b = (args: string[], opts?: { input?: string; timeout?: number }) => env.b(args, { timeout: 170_000, ...opts });
const ok = (args: string[], opts?: { input?: string }) => {
  const r = b(args, opts);
  expect(r.code, `burrow ${args.join(' ')}:\n${r.stderr}`).toBe(0);
  return r;
};

let n = 0;
/** A fresh context directory with these files (a Dockerfile among them). */
function context(files: Record<string, string>): string {
  const dir = path.join(env.work, `ctx-${++n}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

const build = (dir: string, ...args: string[]) => ok(['build', '--progress', 'plain', ...args, dir]);
const run = (image: string, ...cmd: string[]) => ok(['run', '--rm', image, ...cmd]).stdout;
const config = (image: string) => JSON.parse(ok(['image', 'inspect', '-f', '{{json .Config}}', image]).stdout) as Record<string, unknown>;
const cachedSteps = (stderr: string) => stderr.split('\n').filter((l) => l === '--> Using cache').length;
const HD = 'EOF';

describe('burrow build', () => {
  it('builds RUN, COPY, ENV, WORKDIR, USER and CMD, and the image runs', T, () => {
    const dir = context({
      Dockerfile: [
        `FROM ${IMAGE}`,
        'ENV GREETING=hello',
        'WORKDIR /app',
        'COPY hello.txt sub/ ./',
        'RUN echo "$GREETING from run" > made.txt && mkdir -p /data && chown 65534 /data',
        'USER nobody',
        'CMD ["sh", "-c", "cat /app/hello.txt /app/made.txt /app/inner.txt; id -u; pwd"]',
        '',
      ].join('\n'),
      'hello.txt': 'hello from the context\n',
      'sub/inner.txt': 'inner file\n',
    });
    const r = build(dir, '-t', 'b-basic');
    expect(r.stderr).toContain('STEP 1/7: FROM');
    expect(r.stderr).toContain('STEP 5/7: RUN echo');
    expect(r.stdout.trim()).toMatch(/^[a-f0-9]{64}$/);
    expect(run('b-basic')).toBe('hello from the context\nhello from run\ninner file\n65534\n/app\n');
    const c = config('b-basic');
    expect(c.Env).toContain('GREETING=hello');
    expect(c.WorkingDir).toBe('/app');
    expect(c.User).toBe('nobody');
    expect(c.Cmd).toEqual(['sh', '-c', 'cat /app/hello.txt /app/made.txt /app/inner.txt; id -u; pwd']);
    const layers = JSON.parse(ok(['image', 'inspect', '-f', '{{json .RootFS.Layers}}', 'b-basic']).stdout) as string[];
    // busybox's one layer, WORKDIR's directory, COPY's and RUN's.
    expect(layers.length).toBe(4);
    expect(run('b-basic', 'stat', '-c', '%u', '/data')).toBe('65534\n');
  });

  it('writes the config instructions as Docker does (ENTRYPOINT resets an inherited CMD, HEALTHCHECK, SHELL, ...)', T, () => {
    const dir = context({
      Dockerfile: [
        `FROM ${IMAGE}`,
        'SHELL ["/bin/sh", "-ec"]',
        'ENTRYPOINT ["echo"]',
        'HEALTHCHECK --interval=5s --timeout=1m30s --retries=2 CMD true',
        'STOPSIGNAL SIGUSR1',
        'VOLUME /data',
        'EXPOSE 80 53/udp',
        'LABEL a=b',
        'RUN echo "$0 $-" > /shell',
        '',
      ].join('\n'),
    });
    build(dir, '-t', 'b-config');
    const c = config('b-config');
    expect(c.Cmd ?? null).toBeNull(); // busybox's CMD ["sh"] went with the ENTRYPOINT
    expect(c.Entrypoint).toEqual(['echo']);
    expect(c.Shell).toEqual(['/bin/sh', '-ec']);
    expect(c.Healthcheck).toEqual({ Test: ['CMD-SHELL', 'true'], Interval: 5e9, Timeout: 90e9, Retries: 2 });
    expect(c.StopSignal).toBe('SIGUSR1');
    expect(c.Volumes).toEqual({ '/data': {} });
    expect(Object.keys(c.ExposedPorts as object).sort()).toEqual(['53/udp', '80/tcp']);
    expect(c.Labels).toEqual({ a: 'b' });
    expect(ok(['run', '--rm', '--entrypoint', 'cat', 'b-config', '/shell']).stdout).toMatch(/^\/bin\/sh .*e/);
    const id = ok(['image', 'inspect', '-f', '{{.Id}}', 'b-config']).stdout.trim().replace(/^sha256:/, '');
    const hist = (JSON.parse(fs.readFileSync(path.join(env.store, 'blobs', 'sha256', id), 'utf8')) as { history: { created_by: string; empty_layer?: boolean }[] }).history;
    const mine = hist.slice(-8);
    expect(mine.map((h) => h.created_by)).toEqual([
      'SHELL [/bin/sh -ec]',
      'ENTRYPOINT ["echo"]',
      'HEALTHCHECK &{["CMD-SHELL","true"]}',
      'STOPSIGNAL SIGUSR1',
      'VOLUME [/data]',
      'EXPOSE map[80/tcp:{} 53/udp:{}]',
      'LABEL a=b',
      'RUN /bin/sh -ec echo "$0 $-" > /shell # buildkit',
    ]);
    expect(mine.map((h) => !!h.empty_layer)).toEqual([true, true, true, true, true, true, true, false]);
  });

  it('COPY --from a stage with wildcards matches in its merged view (a file deleted in a later layer is not matched)', T, () => {
    const dir = context({
      Dockerfile: [
        `FROM ${IMAGE} AS build`,
        'RUN mkdir -p /out/sub && echo a > /out/a.so && echo b > /out/b.so && echo c > /out/c.txt && echo d > /out/gone.so && echo s > /out/sub/s.so',
        'RUN rm /out/gone.so',
        `FROM ${IMAGE}`,
        'COPY --from=build /out/*.so /lib/got/',
        'COPY --from=build /out/s*/*.so /lib/deep/',
        '',
      ].join('\n'),
    });
    build(dir, '-t', 'b-from-glob');
    expect(run('b-from-glob', 'sh', '-c', 'ls /lib/got /lib/deep')).toBe('/lib/deep:\ns.so\n\n/lib/got:\na.so\nb.so\n');
    const none = b(['build', context({ Dockerfile: `FROM ${IMAGE} AS build\nFROM ${IMAGE}\nCOPY --from=build /nowhere/*.so /x/\n` })]);
    expect(none.code).toBe(125);
    expect(none.stderr).toContain('matches nothing there');
  });

  it('builds only the stages the target needs, with COPY --from a stage', T, () => {
    const dir = context({
      Dockerfile: [
        `FROM ${IMAGE} AS build`,
        'RUN mkdir /out && echo built > /out/artifact',
        `FROM ${IMAGE} AS unused`,
        'RUN echo this stage must not run; exit 3',
        `FROM ${IMAGE}`,
        'COPY --from=build /out/artifact /artifact',
        'CMD ["cat", "/artifact"]',
        '',
      ].join('\n'),
    });
    const r = build(dir, '-t', 'b-multi');
    expect(r.stderr).not.toContain('must not run');
    expect(run('b-multi')).toBe('built\n');
    // --target stops at a stage.
    const t = build(dir, '--target', 'build', '-t', 'b-multi-build');
    expect(t.stderr).not.toContain('COPY --from');
    expect(run('b-multi-build', 'cat', '/out/artifact')).toBe('built\n');
  });

  it("takes ARG before FROM and --build-arg, with Docker's scoping", T, () => {
    const dir = context({
      Dockerfile: [
        'ARG BASE=nonexistent-image',
        'ARG VERSION=1.0',
        'FROM ${BASE}',
        'ARG VERSION',
        'ARG OTHER=default',
        'ARG TARGETARCH',
        'RUN echo "v=$VERSION o=$OTHER arch=$TARGETARCH" > /args',
        'CMD ["cat", "/args"]',
        '',
      ].join('\n'),
    });
    build(dir, '--build-arg', `BASE=${IMAGE}`, '--build-arg', 'OTHER=given', '-t', 'b-args');
    expect(run('b-args')).toMatch(/^v=1\.0 o=given arch=(amd64|arm64|arm|386|ppc64le|s390x|riscv64)\n$/);
    const bad = b(['build', '--build-arg', '1X=2', dir]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--build-arg');
  });

  it('applies .dockerignore with ! exceptions', T, () => {
    const dir = context({
      Dockerfile: `FROM ${IMAGE}\nCOPY . /ctx\nCMD ["find", "/ctx", "-type", "f"]\n`,
      '.dockerignore': 'secret*\nlogs/\n!logs/keep.log\n*.tmp\n',
      'secret.key': 'no',
      'app.txt': 'yes',
      'x.tmp': 'no',
      'logs/a.log': 'no',
      'logs/keep.log': 'yes',
    });
    build(dir, '-t', 'b-ignore');
    const files = run('b-ignore').trim().split('\n').sort();
    expect(files).toEqual(['/ctx/.dockerignore', '/ctx/Dockerfile', '/ctx/app.txt', '/ctx/logs/keep.log']);
    // COPY --exclude on top of it, and `burrow image build`.
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${IMAGE}\nCOPY --exclude=*.txt --exclude=Dockerfile . /ctx\nCMD ["find", "/ctx", "-type", "f"]\n`);
    ok(['image', 'build', '-q', '-t', 'b-exclude', dir]);
    expect(run('b-exclude').trim().split('\n').sort()).toEqual(['/ctx/.dockerignore', '/ctx/logs/keep.log']);
  });

  it('runs heredocs in RUN and writes them with COPY', T, () => {
    const dir = context({
      Dockerfile: [
        `FROM ${IMAGE}`,
        'ARG NAME=world',
        `RUN <<${HD}`,
        'echo "first line" > /run1',
        'echo "second $NAME" >> /run1',
        HD,
        `COPY <<${HD} /etc/greeting`,
        'hello ${NAME}',
        HD,
        'CMD ["cat", "/run1", "/etc/greeting"]',
        '',
      ].join('\n'),
    });
    build(dir, '-t', 'b-heredoc');
    expect(run('b-heredoc')).toBe('first line\nsecond world\nhello world\n');
    // A body that starts with #! runs as its own program (here busybox's awk), not through SHELL.
    const prog = context({ Dockerfile: [`FROM ${IMAGE}`, `RUN <<${HD}`, '#!/bin/awk -f', 'BEGIN { print "from awk" > "/awk.out" }', HD, ''].join('\n') });
    build(prog, '-t', 'b-heredoc-prog');
    expect(run('b-heredoc-prog', 'cat', '/awk.out')).toBe('from awk\n');
    expect(b(['run', '--rm', 'b-heredoc-prog', 'ls', '/.burrow-heredoc']).code).not.toBe(0);
  });

  it("resolves COPY --chown and USER names from the stage's passwd and group", T, () => {
    const dir = context({
      Dockerfile: [
        `FROM ${IMAGE}`,
        "RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'staff:x:2000:' >> /etc/group",
        'COPY --chown=app:staff --chmod=640 file.txt /srv/file.txt',
        'COPY --chown=app dir/ /srv/dir/',
        'USER app',
        `CMD ["sh", "-c", "stat -c '%u %g %a' /srv/file.txt /srv/dir/f; id -u"]`,
        '',
      ].join('\n'),
      'file.txt': 'x',
      'dir/f': 'y',
    });
    build(dir, '-t', 'b-chown');
    expect(run('b-chown')).toBe('1000 2000 640\n1000 1000 644\n1000\n');
  });

  it("runs a parent image's ONBUILD triggers in a child build", T, () => {
    const parent = context({ Dockerfile: `FROM ${IMAGE}\nONBUILD COPY marker.txt /marker\nONBUILD RUN echo triggered >> /marker\n` });
    build(parent, '-t', 'b-onbuild-parent');
    expect(config('b-onbuild-parent').OnBuild).toEqual(['COPY marker.txt /marker', 'RUN echo triggered >> /marker']);
    const child = context({ Dockerfile: 'FROM b-onbuild-parent\nCMD ["cat", "/marker"]\n', 'marker.txt': 'from the child context\n' });
    build(child, '-t', 'b-onbuild-child');
    expect(run('b-onbuild-child')).toBe('from the child context\ntriggered\n');
    expect(config('b-onbuild-child').OnBuild ?? null).toBeNull();
  });

  it('keeps RUN --mount=type=cache between builds, out of the image', T, () => {
    const df = (tag: string) => `FROM ${IMAGE}\nRUN --mount=type=cache,target=/cache,id=b-test echo ${tag} >> /cache/runs && cat /cache/runs > /seen\n`;
    build(context({ Dockerfile: df('one') }), '-t', 'b-cache1');
    build(context({ Dockerfile: df('two') }), '-t', 'b-cache2');
    expect(run('b-cache2', 'cat', '/seen')).toBe('one\ntwo\n');
    expect(run('b-cache2', 'sh', '-c', 'ls -A /cache 2>/dev/null; true')).toBe('');
  });

  it('caches by content: a rebuild hits, touch keeps the cache, an edit rebuilds from its step, --no-cache rebuilds', T, () => {
    const dir = context({
      Dockerfile: `FROM ${IMAGE}\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\nCOPY b.txt /b.txt\n`,
      'a.txt': 'a1',
      'b.txt': 'b1',
    });
    const first = build(dir, '-t', 'b-cached');
    expect(cachedSteps(first.stderr)).toBe(0);
    const again = build(dir, '-t', 'b-cached');
    expect(cachedSteps(again.stderr)).toBe(4);
    expect(again.stdout).toBe(first.stdout);
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(path.join(dir, 'a.txt'), later, later);
    expect(cachedSteps(build(dir, '-t', 'b-cached').stderr)).toBe(4);
    fs.writeFileSync(path.join(dir, 'a.txt'), 'a2');
    const edited = build(dir, '-t', 'b-cached');
    // RUN echo one hits; COPY a.txt and everything after it runs again.
    expect(cachedSteps(edited.stderr)).toBe(1);
    expect(run('b-cached', 'cat', '/copy')).toBe('a2');
    const nocache = build(dir, '--no-cache', '-t', 'b-cached');
    expect(cachedSteps(nocache.stderr)).toBe(0);
    // The cache's layers survive the removal of the image (rmi collects what nothing references).
    ok(['rmi', 'b-cached']);
    ok(['image', 'prune', '-f']);
    expect(cachedSteps(build(dir, '-t', 'b-cached').stderr)).toBe(4);
  });

  it('a failing RUN shows the step, the command, its status and output, and leaves nothing behind', T, () => {
    const dir = context({ Dockerfile: `FROM ${IMAGE}\nRUN echo before\nRUN echo the-last-words; exit 7\nRUN echo never\n` });
    const images = ok(['images', '-q', '--no-trunc']).stdout;
    const containers = fs.readdirSync(path.join(env.store, 'containers')).length;
    const r = b(['build', '--progress', 'plain', '-t', 'b-fails', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('STEP 3/4: RUN echo the-last-words; exit 7');
    expect(r.stderr).toMatch(/exited with status 7/);
    expect(r.stderr).toContain('the-last-words');
    expect(r.stderr).not.toContain('STEP 4/4');
    expect(ok(['ps', '-aq']).stdout).toBe('');
    expect(ok(['images', '-q', '--no-trunc']).stdout).toBe(images);
    expect(fs.readdirSync(path.join(env.store, 'containers')).length).toBe(containers);
    expect(leftovers(env.runroot, [])).toEqual([]);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(env.store);
    expect(fs.readdirSync(path.join(env.store, 'tmp')).filter((f) => f.startsWith('build-'))).toEqual([]);
  });

  it('Ctrl-C stops the running step and leaves nothing behind', T, async () => {
    const dir = context({ Dockerfile: `FROM ${IMAGE}\nRUN echo started; sleep 120\n` });
    const images = ok(['images', '-q', '--no-trunc']).stdout;
    const child = spawn(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, 'build', '--progress', 'plain', '-t', 'b-interrupted', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    await new Promise<void>((resolve) =>
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('started\n')) resolve();
      }) && child.on('close', () => resolve()),
    );
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(code, err).toBe(1);
    expect(err).toContain('interrupted');
    expect(ok(['ps', '-aq']).stdout).toBe('');
    expect(ok(['images', '-q', '--no-trunc']).stdout).toBe(images);
    expect(leftovers(env.runroot, [])).toEqual([]);
  });

  it('a context with symlinks pointing outside it cannot make COPY read outside it', T, () => {
    const outside = path.join(env.work, 'outside-secret');
    fs.writeFileSync(outside, 'host secret\n');
    const dir = context({ Dockerfile: `FROM ${IMAGE}\nCOPY leak /leak\n` });
    fs.symlinkSync(outside, path.join(dir, 'leak'));
    const r = b(['build', dir]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('leak');
    const dir2 = context({ Dockerfile: `FROM ${IMAGE}\nCOPY up/outside-secret /leak\n` });
    fs.symlinkSync('../..', path.join(dir2, 'up'));
    expect(b(['build', dir2]).code).not.toBe(0);
    // A link inside a copied directory is copied as a link, not followed.
    const dir3 = context({ Dockerfile: `FROM ${IMAGE}\nCOPY d /d\n`, 'd/real': 'r' });
    fs.symlinkSync(outside, path.join(dir3, 'd', 'link'));
    build(dir3, '-t', 'b-links');
    expect(run('b-links', 'readlink', '/d/link')).toBe(`${outside}\n`);
    expect(b(['run', '--rm', 'b-links', 'cat', '/d/link']).code).not.toBe(0);
  });

  it('fails before any work on an unknown --target or a missing COPY source', T, () => {
    const dir = context({ Dockerfile: `FROM ${IMAGE}\nRUN echo ran-a-step\nCOPY missing.txt /x\n` });
    const r = b(['build', '--progress', 'plain', dir]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('missing.txt');
    const unknown = context({ Dockerfile: `FROM ${IMAGE}\nRUN echo ran-a-step\nFROBNICATE now\n` });
    const u = b(['build', '--progress', 'plain', unknown]);
    expect(u.code).not.toBe(0);
    expect(u.stderr).toMatch(/Dockerfile:3/);
    expect(u.stderr).not.toContain('ran-a-step');
    const t = b(['build', '--target', 'nope', dir]);
    expect(t.code).not.toBe(0);
    expect(t.stderr).toContain('nope');
    expect(t.stderr).not.toContain('ran-a-step');
  });

  it('takes a Dockerfile or a tar on stdin, writes --iidfile and --output, and -q prints only the id', T, () => {
    const q = ok(['build', '-q', '-'], { input: `FROM ${IMAGE}\nRUN echo from-stdin > /stdin\n` });
    expect(q.stdout).toMatch(/^[a-f0-9]{64}\n$/);
    expect(q.stderr).toBe('');
    const src = context({ Dockerfile: `FROM ${IMAGE}\nCOPY f.txt /f.txt\n`, 'f.txt': 'in the tar\n' });
    const tarFile = path.join(env.work, 'ctx.tar');
    expect(spawnSync('tar', ['-cf', tarFile, '-C', src, '.']).status).toBe(0);
    const iid = path.join(env.work, 'iid');
    const out = path.join(env.work, 'rootfs.tar');
    const local = path.join(env.work, 'local-out');
    const r = b(['build', '--iidfile', iid, '-t', 'b-stdin-tar', '--output', 'type=image', '--output', `type=tar,dest=${out}`, '--output', `type=local,dest=${local}`, '-'], { input: fs.readFileSync(tarFile, 'latin1') });
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(iid, 'utf8')).toBe(`sha256:${r.stdout.trim()}`);
    expect(run('b-stdin-tar', 'cat', '/f.txt')).toBe('in the tar\n');
    expect(fs.readFileSync(path.join(local, 'f.txt'), 'utf8')).toBe('in the tar\n');
    expect(fs.existsSync(path.join(local, 'bin', 'busybox'))).toBe(true);
    const list = spawnSync('tar', ['-tf', out], { encoding: 'utf8' }).stdout;
    expect(list).toMatch(/(^|\n)(\.\/)?f\.txt\n/);
    // An OCI archive and a docker archive of the result, read by skopeo.
    const oci = path.join(env.work, 'out-oci.tar');
    const docker = path.join(env.work, 'out-docker.tar');
    ok(['build', '-q', '--output', `type=oci,dest=${oci}`, '--output', `type=docker,dest=${docker}`, src]);
    for (const ref of [`oci-archive:${oci}`, `docker-archive:${docker}`]) {
      const s = spawnSync('skopeo', ['inspect', '--config', ref], { encoding: 'utf8', env: { ...process.env, TMPDIR: env.work, HOME: env.work } });
      expect(s.status, s.stderr).toBe(0);
      expect((JSON.parse(s.stdout) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids.length).toBe(2);
    }
  });

  it('builds independent stages in parallel', T, () => {
    // Each stage waits (bounded) for the other's mark in a shared cache mount: one after the
    // other, the first would give up and fail.
    const id = `sync-${process.pid}-${Date.now()}`;
    const wait = (me: string, other: string) =>
      `RUN --mount=type=cache,id=${id},target=/sync touch /sync/${me}; for i in $(seq 1200); do [ -e /sync/${other} ] && break; sleep 0.1; done; [ -e /sync/${other} ] && echo ${me} > /${me}`;
    const dir = context({
      Dockerfile: [`FROM ${IMAGE} AS a`, wait('a', 'b'), `FROM ${IMAGE} AS b`, wait('b', 'a'), `FROM ${IMAGE}`, 'COPY --from=a /a /a', 'COPY --from=b /b /b', 'CMD ["cat", "/a", "/b"]', ''].join('\n'),
    });
    build(dir, '-t', 'b-parallel');
    expect(run('b-parallel')).toBe('a\nb\n');
  });

  it('RUN --mount binds the context read-only and a secret that stays out of the image; --network none', T, () => {
    const secret = path.join(env.work, 'token');
    fs.writeFileSync(secret, 's3cret');
    const dir = context({
      Dockerfile: [
        `FROM ${IMAGE}`,
        'RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/f > /from-bind && ! touch /mnt/data/new 2>/dev/null',
        'RUN --mount=type=secret,id=tok test "$(cat /run/secrets/tok)" = s3cret && echo checked > /checked',
        'RUN --network=none sh -c "ls /sys/class/net | sort | tr \'\\n\' \' \' > /net"',
        '',
      ].join('\n'),
      'data/f': 'bound\n',
    });
    build(dir, '--secret', `id=tok,src=${secret}`, '-t', 'b-mounts');
    expect(run('b-mounts', 'cat', '/from-bind', '/checked')).toBe('bound\nchecked\n');
    expect(run('b-mounts', 'sh', '-c', 'ls /run/secrets 2>/dev/null; cat /net')).toBe('lo ');
    expect(fs.existsSync(path.join(dir, 'data', 'new'))).toBe(false);
  });

  it('ADD extracts a local tar and downloads a URL checked against --checksum', T, async () => {
    const src = path.join(env.work, 'tar-src');
    fs.mkdirSync(path.join(src, 'pkg'), { recursive: true });
    fs.writeFileSync(path.join(src, 'pkg', 'inside.txt'), 'from the tar\n');
    const dir = context({ Dockerfile: '' });
    expect(spawnSync('tar', ['-czf', path.join(dir, 'pkg.tar.gz'), '-C', src, 'pkg']).status).toBe(0);
    const body = 'downloaded\n';
    const sum = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    const server = http.createServer((_req, res) => res.end(body));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/file.txt`;
    try {
      fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${IMAGE}\nADD pkg.tar.gz /opt/\nADD --checksum=${sum} ${url} /dl/\n`);
      const r = await env.bg(['build', '--progress', 'plain', '-t', 'b-add', dir]);
      expect(r.code, r.stderr).toBe(0);
      expect(run('b-add', 'cat', '/opt/pkg/inside.txt', '/dl/file.txt')).toBe('from the tar\ndownloaded\n');
      fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${IMAGE}\nADD --checksum=sha256:${'0'.repeat(64)} ${url} /dl/\n`);
      const bad = await env.bg(['build', dir]);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain('checksum mismatch');
    } finally {
      server.close();
    }
  });

  it("ADD of a local archive keeps the archive's owners (as Docker's ADD), reads xz, and refuses a hostile one", T, () => {
    const src = path.join(env.work, 'tar-owners');
    fs.mkdirSync(path.join(src, 'app'), { recursive: true });
    fs.writeFileSync(path.join(src, 'app', 'owned.txt'), 'owned\n');
    fs.writeFileSync(path.join(src, 'app', 'root.txt'), 'root\n');
    const dir = context({ Dockerfile: '' });
    // The owners as the archive records them (numeric; this process need not be root to say so).
    const tar = (out: string, ...more: string[]) =>
      expect(spawnSync('tar', ['--numeric-owner', '--owner=1234', '--group=4321', ...more, '-cf', out, '-C', src, 'app']).status).toBe(0);
    tar(path.join(dir, 'owned.tar'));
    tar(path.join(dir, 'owned.tar.xz'), '-J');
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${IMAGE}\nADD owned.tar /t/\nADD owned.tar.xz /x/\nADD --chown=7:8 owned.tar /c/\n`);
    build(dir, '-t', 'b-add-owners');
    const out = run('b-add-owners', 'sh', '-c', 'stat -c "%n %u:%g" /t/app/owned.txt /x/app/root.txt /c/app/owned.txt');
    expect(out).toBe('/t/app/owned.txt 1234:4321\n/x/app/root.txt 1234:4321\n/c/app/owned.txt 7:8\n');
    // A member that climbs out of the extraction directory is refused, and nothing is built.
    // (GNU tar strips a leading ../ when it writes one: Python's tarfile keeps the name.)
    const py = "import io, sys, tarfile\nt = tarfile.open(sys.argv[1], 'w')\ni = tarfile.TarInfo('../escaped')\ni.size = 1\nt.addfile(i, io.BytesIO(b'x'))\nt.close()";
    expect(spawnSync('python3', ['-c', py, path.join(dir, 'evil.tar')], { encoding: 'utf8' }).status).toBe(0);
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${IMAGE}\nADD evil.tar /e/\n`);
    const bad = b(['build', '-t', 'b-add-evil', dir]);
    expect(bad.code, bad.stderr).not.toBe(0);
    expect(bad.stderr).toMatch(/ADD evil\.tar: extracting the archive failed/);
    expect(b(['image', 'inspect', 'b-add-evil']).code).not.toBe(0);
  });

  it('builds, pushes to a registry, and skopeo reads it back', T, async () => {
    const reg = await startRegistry({ mode: 'anonymous' });
    try {
      const dir = context({ Dockerfile: `FROM ${IMAGE}\nRUN echo pushed > /pushed\nCMD ["cat", "/pushed"]\n` });
      const ref = `${reg.host}/built/x:1`;
      build(dir, '-t', ref);
      ok(['push', '--tls-verify=false', ref]);
      const sk = { env: { TMPDIR: env.work, HOME: env.work } };
      const inspect = await exec('skopeo', ['inspect', '--tls-verify=false', '--config', `docker://${ref}`], sk);
      expect(inspect.code, inspect.stderr).toBe(0);
      expect((JSON.parse(inspect.stdout) as { config: { Cmd: string[] } }).config.Cmd).toEqual(['cat', '/pushed']);
      const oci = path.join(env.work, 'skopeo-oci');
      const copy = await exec('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${oci}:x`], sk);
      expect(copy.code, copy.stderr).toBe(0);
      ok(['rmi', ref]);
      // FROM an image that is not in the store pulls it, as `pull` does.
      const child = context({ Dockerfile: `FROM ${ref}\nRUN cat /pushed > /again\n` });
      expect(build(child, '-t', 'b-from-registry').stderr).toContain(`Resolving "${ref}"`);
      expect(run('b-from-registry', 'cat', '/again')).toBe('pushed\n');
      ok(['rmi', ref]);
      ok(['pull', '--tls-verify=false', ref]);
      expect(run(ref)).toBe('pushed\n');
    } finally {
      await reg.stop();
    }
  });
});

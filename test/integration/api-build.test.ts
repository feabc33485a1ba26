/**
 * `POST /build` with the real clients: the docker 20.10 CLI's classic builder
 * (DOCKER_BUILDKIT=0: the CLI tars the context, applying .dockerignore itself, and reads the
 * stream), docker-py's images.build (which finds the image in the stream's aux ID and
 * "Successfully built" line), and docker-compose 1.29's `build:` followed by `up`. Each build's
 * image then runs through the same service. BURROW_API_PEER=podman runs the same against
 * `podman system service`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { checks, PEER, PODMAN_DEVIATIONS as DEV, show, startApi, type ApiPeer, type Result } from './api-clients.helpers';
import { composeBin, dockerPyPython, run } from '../harness/docker-clients.mjs';

let api: ApiPeer;
let ctx: string;

beforeAll(async () => {
  api = await startApi('api-build');
  ctx = path.join(api.work, 'ctx');
  fs.mkdirSync(path.join(ctx, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(ctx, 'hello.txt'), 'hello from the context\n');
  fs.writeFileSync(path.join(ctx, 'sub', 'kept.txt'), 'kept\n');
  fs.writeFileSync(path.join(ctx, 'secret.key'), 'must not be sent\n');
  fs.writeFileSync(path.join(ctx, '.dockerignore'), '*.key\n');
  fs.writeFileSync(
    path.join(ctx, 'Dockerfile'),
    [
      `FROM ${api.image}`,
      'ARG GREETING=default',
      'ENV GREETING=$GREETING',
      'WORKDIR /app',
      'COPY hello.txt sub/ ./',
      'RUN echo "built with $GREETING" > built.txt && ls /app > listing.txt',
      'LABEL org.example.built=yes',
      'CMD ["sh", "-c", "cat /app/hello.txt /app/built.txt /app/listing.txt"]',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(path.join(ctx, 'Dockerfile.fail'), `FROM ${api.image}\nRUN echo about to fail && exit 7\n`);
  // The service's clients run as this test's user: the context must be readable by it (it is ours).
}, 180_000);

afterAll(async () => {
  await api?.dispose();
}, 120_000);

const d = (args: string[], opts: { cwd?: string } = {}): Promise<Result> => api.docker(args, { env: api.clientEnv({ DOCKER_BUILDKIT: '0' }), timeoutMs: 300_000, ...opts });

async function ok(args: string[]): Promise<string> {
  const r = await d(args);
  expect(r.code, `docker ${args.join(' ')}\n${show(r)}\nservice: ${api.log().slice(-3000)}`).toBe(0);
  return r.stdout;
}

describe(`building through ${PEER}'s Engine API as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('docker build (classic): steps streamed, a build arg, .dockerignore applied, the image tagged and runnable', async () => {
    const out = await ok(['build', '-t', 'built/cli:1', '--build-arg', 'GREETING=cli', ctx]);
    if (checks(DEV.buildStepLines)) expect(out).toMatch(/Step 1\/\d+ : FROM/);
    expect(out).toMatch(/Successfully built [0-9a-f]{12}/);
    expect(out).toMatch(/Successfully tagged built\/cli:1/);
    const run = await ok(['run', '--rm', 'built/cli:1']);
    expect(run).toContain('hello from the context');
    expect(run).toContain('built with cli');
    // COPY of a directory copies its contents; the ignored key never reached the builder.
    expect(run.split('\n')).toEqual(expect.arrayContaining(['kept.txt', 'hello.txt']));
    expect(run).not.toContain('secret.key');
    const labels = await ok(['inspect', '--format', '{{index .Config.Labels "org.example.built"}} {{.Config.WorkingDir}}', 'built/cli:1']);
    expect(labels.trim()).toBe('yes /app');
  });

  it("a failing RUN: the client fails, naming the command's status, and no image is left", async () => {
    const before = (await ok(['images', '-q'])).trim().split('\n').filter(Boolean).length;
    const r = await d(['build', '-t', 'built/fail', '-f', path.join(ctx, 'Dockerfile.fail'), ctx]);
    expect(r.code, show(r)).not.toBe(0);
    expect(r.stdout + r.stderr).toContain('about to fail');
    expect(r.stdout + r.stderr).toMatch(/exit(ed)? (code|status):? ?7|returned a non-zero code: 7/);
    const after = await ok(['images', '--filter', 'reference=built/fail', '-q']);
    expect(after.trim()).toBe('');
    expect((await ok(['images', '-q'])).trim().split('\n').filter(Boolean).length).toBe(before);
    const ps = await ok(['ps', '-aq']);
    expect(ps.trim(), 'no build container is left behind').toBe('');
  });

  it('docker-py images.build returns the image, which runs', async () => {
    const python = dockerPyPython() as string;
    const script = [
      'import docker, json, sys',
      'c = docker.from_env()',
      `img, logs = c.images.build(path=${JSON.stringify(ctx)}, tag="built/py:1", buildargs={"GREETING": "py"}, rm=True)`,
      'out = c.containers.run("built/py:1", remove=True).decode()',
      'print(json.dumps({"id": img.id, "tags": img.tags, "out": out, "streamed": sum(1 for l in logs if "stream" in l)}))',
    ].join('\n');
    const r = (await run(python, ['-c', script], { env: api.clientEnv(), timeoutMs: 300_000 })) as Result;
    expect(r.code, `${show(r)}\nservice: ${api.log().slice(-3000)}`).toBe(0);
    const rep = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { id: string; tags: string[]; out: string; streamed: number };
    expect(rep.id).toMatch(/^sha256:[0-9a-f]{64}$/);
    if (checks(DEV.buildTagsAsGiven)) expect(rep.tags).toContain('built/py:1');
    else expect(rep.tags.map((t) => t.replace(/^docker\.io\//, ''))).toContain('built/py:1');
    expect(rep.out).toContain('built with py');
    expect(rep.streamed).toBeGreaterThan(0);
  });

  it("docker-compose build: a service's image built from its context, then up runs it", async () => {
    const proj = path.join(api.work, 'compose');
    fs.mkdirSync(proj);
    fs.writeFileSync(
      path.join(proj, 'docker-compose.yml'),
      JSON.stringify({ version: '3.8', services: { app: { build: { context: ctx, args: { GREETING: 'compose' } }, image: 'built/compose:1' } } }, null, 2),
    );
    const compose = (args: string[]): Promise<Result> => run(composeBin(), ['--no-ansi', '-p', 'apibuild', ...args], { env: api.clientEnv(), cwd: proj, timeoutMs: 300_000 }) as Promise<Result>;
    try {
      const b = await compose(['build']);
      expect(b.code, `${show(b)}\nservice: ${api.log().slice(-3000)}`).toBe(0);
      const up = await compose(['up', '--no-color']);
      expect(up.code, show(up)).toBe(0);
      expect(up.stdout).toContain('built with compose');
    } finally {
      await compose(['down', '-t', '1']).catch(() => undefined);
    }
  });
});

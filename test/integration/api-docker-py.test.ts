/**
 * docker-py (the Docker SDK for Python, from PyPI, pinned in test/harness/docker-py.txt, in its
 * own venv) against the Engine API service the test starts: test/harness/docker-py-ops.py runs
 * each operation through the SDK (containers.run with and without detach, streamed logs, an
 * attach socket with stdin, exec_run, put_archive/get_archive, images push/pull/get/save/load,
 * events streamed and bounded, df, volumes) and reports JSON that the tests here assert on.
 * BURROW_API_PEER=podman runs the same against `podman system service`.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { checks, PEER, PODMAN_DEVIATIONS as DEV, show, startApi, type ApiPeer } from './api-clients.helpers';
import { startRegistry } from '../harness/registry.mjs';
import { dockerPyPython, run } from '../harness/docker-clients.mjs';

let api: ApiPeer;
let reg: { host: string; stop(): Promise<void> };
let report: Record<string, Record<string, unknown>>;

beforeAll(async () => {
  const python = dockerPyPython() as string;
  reg = await startRegistry({ mode: 'anonymous' });
  api = await startApi('api-docker-py', { insecure: [reg.host] });
  const script = path.join(__dirname, '..', 'harness', 'docker-py-ops.py');
  const r = await run(python, [script, JSON.stringify({ image: api.image, registry: reg.host, work: api.work })], { env: api.clientEnv(), timeoutMs: 400_000 });
  try {
    report = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
  } catch {
    throw new Error(`docker-py-ops.py gave no report: ${show(r)}\nservice: ${api.log().slice(-3000)}`);
  }
}, 480_000);

afterAll(async () => {
  await api?.dispose();
  await reg?.stop();
}, 120_000);

/** One operation's report; its error (with the SDK's traceback) fails the test that reads it. */
function step<T = Record<string, unknown>>(name: string): T {
  const s = report[name];
  if (!s) throw new Error(`docker-py-ops.py reported nothing for ${name}`);
  expect(s.error, `${name}: ${s.error}\n${s.trace ?? ''}`).toBeUndefined();
  return s as T;
}

describe(`docker-py against ${PEER}'s Engine API as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('negotiates API 1.41 and pings', () => {
    expect(step('ping')).toMatchObject({ ping: true, ApiVersion: '1.41', negotiated: '1.41', Os: 'linux' });
  });

  it("containers.run: the output, the exit status as ContainerError with stderr, and remove=True removes", () => {
    const s = step<{ stdout: string; both: string[]; failed: { exit_status: number; stderr: string } | null; left: string[] }>('run');
    expect(s.stdout).toBe('hello-py\n');
    expect(s.both).toEqual(['e', 'o']);
    expect(s.failed).toEqual({ exit_status: 3, stderr: 'failing\n' });
    expect(s.left).toEqual([]);
  });

  it('containers.run(detach=True): running, listed by label, stopped with exit 0, removed', () => {
    const s = step<{ image: string }>('detach');
    expect(s).toMatchObject({ status: 'running', name: 'py-detach', labels: { 'burrow.test': 'py' }, listed: ['py-detach'], after_stop: 'exited', exit_code: 0 });
    if (checks(DEV.imageAsGiven)) expect(s.image).toBe(api.image);
  });

  it('logs(stream=True, follow=True) streams until the container exits; wait() gives its status', () => {
    expect(step('logs_stream')).toEqual({ text: 'line1\nline2\nline3\n', wait: { StatusCode: 0, Error: null } });
  });

  it("attach_socket: stdin reaches the container, its output comes back in Docker's multiplexed frames", () => {
    const s = step<{ stdout: string; wait: { StatusCode: number } }>('attach_socket');
    expect(s.stdout).toBe('through the attach socket\nend-of-input\n');
    expect(s.wait.StatusCode).toBe(0);
  });

  it('exec_run: exit code, stdout and stderr apart (demux), environment and workdir', () => {
    expect(step('exec_run')).toEqual({ code: 4, stdout: 'exec-out\n', stderr: 'exec-err\n', env: 'bar\n/tmp\n', env_code: 0 });
  });

  it('put_archive and get_archive: a file in, a file out, with its stat header', () => {
    expect(step('archive')).toEqual({ put: true, cat: 'put by docker-py\n', stat: { name: 'get.txt', size: 17 }, member: 'get.txt', content: 'got-by-docker-py\n' });
  });

  it('images: push to a loopback registry, remove, pull back, save, load, run the loaded image', () => {
    const ref = `${reg.host}/api/py:v1`;
    const s = step<Record<string, unknown>>('images');
    expect(s.push_errors).toEqual([]);
    expect(s.pushed).toBe(true);
    expect(s.gone_after_remove).toBe(true);
    expect(s.pulled_tags).toContain(ref);
    expect(s.saved_bytes as number).toBeGreaterThan(100_000);
    expect(s.loaded_tags).toContain(ref);
    expect(s.ran).toBe('from-loaded\n');
    expect(s.listed_after).not.toContain(ref);
  });

  it('events: streamed while the container runs (create, start, die with its exit code), and bounded by until', () => {
    const s = step<{ streamed: string[]; bounded: string[] }>('events');
    expect(s.streamed).toEqual(expect.arrayContaining(['container create', 'container start', 'container die 6']));
    expect(s.bounded).toEqual(expect.arrayContaining(['container create', 'container start', 'container die']));
  });

  it('df: images, containers, volumes and the layers size', () => {
    const s = step<{ keys: string[]; images: number; LayersSize: number }>('df');
    expect(s.keys).toEqual(expect.arrayContaining(['Containers', 'Images', 'LayersSize', 'Volumes']));
    expect(s.images).toBeGreaterThan(0);
    if (checks(DEV.dfLayersSize)) expect(s.LayersSize).toBeGreaterThan(0);
  });

  it('volumes: create with labels, list, get, mount read-write and read-only, remove', () => {
    expect(step('volumes')).toEqual({ listed: true, attrs: { name: 'py-vol', driver: 'local', labels: { 'burrow.test': 'py' }, mountpoint: true }, out: 'in-volume\n', again: 'in-volume\n', after: false });
  });
});

/**
 * docker-compose 1.29 (Debian's, through Debian's docker-py 5) against the Engine API service
 * the test starts: `up -d`, `ps`, `logs`, `exec -T`, `down -v` of a project with two services
 * from the test image, a named volume both mount, and a port the web service publishes on the
 * host's loopback (fetched from here), on the project network compose creates (a user-defined
 * network: the published port goes to a container on it). Services reaching each other by name
 * are api-networks.test.ts's. BURROW_API_PEER=podman runs the same against `podman system service`.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { PEER, show, startApi, until, type ApiPeer, type Result } from './api-clients.helpers';
import { composeBin, freePort, run } from '../harness/docker-clients.mjs';

let api: ApiPeer;
let dir: string;
let port: number;
const PROJECT = 'apicompose';

beforeAll(async () => {
  composeBin();
  api = await startApi('api-compose');
  dir = path.join(api.work, 'project');
  fs.mkdirSync(dir);
  port = await freePort();
  const loop = (what: string): string => `trap "exit 0" TERM; ${what}; while :; do sleep 1; done`;
  fs.writeFileSync(
    path.join(dir, 'docker-compose.yml'),
    JSON.stringify(
      {
        version: '3.8',
        services: {
          web: {
            image: api.image,
            command: ['sh', '-c', loop('echo web-up; mkdir -p /www && echo hello-from-compose > /www/index.html && httpd -p 8080 -h /www')],
            ports: [`127.0.0.1:${port}:8080`],
            volumes: ['data:/data'],
          },
          worker: {
            image: api.image,
            command: ['sh', '-c', loop('echo worker-up; echo persisted > /data/f')],
            volumes: ['data:/data'],
            environment: { ROLE: 'worker' },
          },
        },
        volumes: { data: {} },
      },
      null,
      2,
    ),
  );
}, 120_000);

afterAll(async () => {
  if (api && dir) await compose(['down', '-v', '-t', '1']).catch(() => undefined);
  await api?.dispose();
}, 120_000);

function compose(args: string[]): Promise<Result> {
  return run(composeBin(), ['--no-ansi', '-p', PROJECT, ...args], { env: api.clientEnv(), cwd: dir, timeoutMs: 180_000 });
}

async function ok(args: string[]): Promise<string> {
  const r = await compose(args);
  expect(r.code, `docker-compose ${args.join(' ')}\n${show(r)}\nservice: ${api.log().slice(-2000)}`).toBe(0);
  return r.stdout;
}

function get(url: string): Promise<string | null> {
  return new Promise((resolve) => {
    const req = http.get(url, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve(res.statusCode === 200 ? body : null));
    });
    req.on('error', () => resolve(null));
    req.setTimeout(5000, () => req.destroy());
  });
}

describe(`docker-compose 1.29 against ${PEER}'s Engine API as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('up -d starts both services, with the named volume and the published port', async () => {
    await ok(['up', '-d']);
    const ids = (await ok(['ps', '-q'])).trim().split('\n').filter(Boolean);
    expect(ids).toHaveLength(2);
    const states = await api.docker(['inspect', '--format', '{{.Name}} {{.State.Status}} {{index .Config.Labels "com.docker.compose.service"}}', ...ids]);
    expect(states.code, show(states)).toBe(0);
    expect(states.stdout.trim().split('\n').sort()).toEqual([`/${PROJECT}_web_1 running web`, `/${PROJECT}_worker_1 running worker`]);
    const vols = await api.docker(['volume', 'ls', '--format', '{{.Name}}']);
    expect(vols.stdout.split('\n')).toContain(`${PROJECT}_data`);
  });

  it('ps lists both services as Up, with the published port', async () => {
    const ps = await ok(['ps']);
    expect(ps).toMatch(new RegExp(`${PROJECT}_web_1 .* Up .*127\\.0\\.0\\.1:${port}->8080/tcp`));
    expect(ps).toMatch(new RegExp(`${PROJECT}_worker_1 .* Up`));
  });

  it('the published port answers from the host', async () => {
    // Both services up first (else there is nothing to wait for).
    expect((await ok(['ps', '-q'])).trim().split('\n').filter(Boolean)).toHaveLength(2);
    let body: string | null = null;
    await until(async () => (body = await get(`http://127.0.0.1:${port}/index.html`)) !== null, 60_000, `http://127.0.0.1:${port}/ to answer`);
    expect(body).toBe('hello-from-compose\n');
  });

  it('logs shows each service, prefixed by its name', async () => {
    await until(async () => /worker-up/.test(await ok(['logs', '--no-color'])), 30_000, 'the worker to log');
    const logs = await ok(['logs', '--no-color']);
    expect(logs).toMatch(/web_1 +\| web-up/);
    expect(logs).toMatch(/worker_1 +\| worker-up/);
  });

  it('exec -T runs in a service: its environment, and the volume both services share', async () => {
    expect(await ok(['exec', '-T', 'worker', 'sh', '-c', 'echo $ROLE; cat /data/f'])).toBe('worker\npersisted\n');
    expect(await ok(['exec', '-T', 'web', 'cat', '/data/f'])).toBe('persisted\n');
    const st = await compose(['exec', '-T', 'web', 'sh', '-c', 'exit 3']);
    expect(st.code, show(st)).toBe(3);
  });

  it('down -v removes the containers and the named volume', async () => {
    await ok(['down', '-v', '-t', '1']);
    const left = await api.docker(['ps', '-a', '--format', '{{.Names}}']);
    expect(left.code, show(left)).toBe(0);
    expect(left.stdout).not.toMatch(new RegExp(PROJECT));
    const vols = await api.docker(['volume', 'ls', '--format', '{{.Name}}']);
    expect(vols.stdout.split('\n')).not.toContain(`${PROJECT}_data`);
    expect(await get(`http://127.0.0.1:${port}/index.html`)).toBeNull();
  });
});

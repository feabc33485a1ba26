/**
 * The Engine API service itself: its socket, versioned paths, Docker's error bodies, the idle
 * timeout. The resources' routes have their own files (api-containers, api-images, …).
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup, type Env } from './lifecycle.helpers';
import { startService, type Service } from './api.helpers';

let env: Env;
let svc: Service;

beforeAll(async () => {
  env = setup('api-service');
  svc = await startService(env);
}, 60_000);

afterAll(async () => {
  await svc?.stop();
  env?.dispose();
});

describe('burrow system service', () => {
  it('listens on a socket only its owner can open, and answers _ping with GET and HEAD', async () => {
    expect(fs.statSync(svc.sock).mode & 0o777).toBe(0o600);
    const get = await svc.request('GET', '/_ping');
    expect(get.status).toBe(200);
    expect(get.text).toBe('OK');
    expect(get.headers['api-version']).toBe('1.41');
    const head = await svc.request('HEAD', '/v1.41/_ping');
    expect(head.status).toBe(200);
    expect(head.text).toBe('');
  });

  it('answers version on versioned and unversioned paths, and refuses a version it does not speak', async () => {
    for (const p of ['/version', '/v1.41/version', '/v1.40/version']) {
      const r = await svc.request('GET', p);
      expect(r.status, p).toBe(200);
      expect(r.json<{ ApiVersion: string; Os: string }>()).toMatchObject({ ApiVersion: '1.41', Os: 'linux' });
    }
    const r = await svc.request('GET', '/v1.99/version');
    expect(r.status).toBe(400);
    expect(r.json<{ message: string }>().message).toMatch(/too new.*1\.41/);
  });

  it("gives Docker's JSON error body for an unknown path", async () => {
    const r = await svc.request('GET', '/v1.41/no/such/thing');
    expect(r.status).toBe(404);
    expect(r.json()).toEqual({ message: 'page not found' });
  });

  it('exits after --time idle seconds and removes its socket', async () => {
    const s = await startService(env, { time: 1 });
    expect((await s.request('GET', '/_ping')).status).toBe(200);
    expect(await s.stop('SIGCONT')).toBe(0); // SIGCONT does nothing: this waits for the idle exit
    expect(fs.existsSync(s.sock)).toBe(false);
  });
});

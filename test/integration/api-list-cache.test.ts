/**
 * GET /containers/json of the real service, whose container files are cached while their
 * directories are unchanged (ts/container/dir-cache.ts): each list comes after the containers'
 * directories settled (older than the racy window, so that their files are served from the
 * cache), then something changes and the next list must show it: a stop, a start, a rename, a
 * removal, and an init that died behind burrow's back (its monitor killed first: no file
 * changes, only /proc tells).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RACY_MS } from '../../ts/container/dir-cache';
import { IMAGE, alive, setup, sleep, waitFor, type Env } from './lifecycle.helpers';
import { startService, type Service } from './api.helpers';

let env: Env;
let svc: Service;
const rootless = (process.getuid?.() ?? 0) !== 0;

beforeAll(async () => {
  env = setup('api-list-cache');
  svc = await startService(env);
}, 120_000);

afterAll(async () => {
  await svc?.stop();
  env?.dispose();
});

interface Listed {
  Id: string;
  Names: string[];
  State: string;
  Status: string;
}

/** Until the containers' directories are older than the racy window: their files get cached. */
const settle = (): Promise<void> => sleep(RACY_MS + 500);

describe(`the service's container list sees every change after a cached list (as ${rootless ? 'the unprivileged user' : 'root'})`, () => {
  it('a stop, a start, a rename, a removal, and an init that died unseen', async () => {
    const create = async (name: string, cmd: string[]): Promise<string> => {
      const r = await svc.request('POST', `/v1.41/containers/create?name=${name}`, { Image: IMAGE, Cmd: cmd, HostConfig: { NetworkMode: 'none' } });
      expect(r.status, r.text).toBe(201);
      const id = r.json<{ Id: string }>().Id;
      expect((await svc.request('POST', `/v1.41/containers/${id}/start`)).status).toBe(204);
      return id;
    };
    const list = async (): Promise<Record<string, string>> => {
      const r = await svc.request('GET', '/v1.41/containers/json?all=1');
      expect(r.status, r.text).toBe(200);
      return Object.fromEntries(r.json<Listed[]>().map((c) => [c.Names[0]!, `${c.State} ${c.Status.replace(/ \d+ seconds?| About a minute| Less than a second/, '')}`]));
    };
    const up = await create('lc-up', ['sh', '-c', 'sleep 300 & wait']);
    const four = await create('lc-four', ['sh', '-c', 'exit 4']);
    expect((await svc.request('POST', `/v1.41/containers/${four}/wait`)).json<{ StatusCode: number }>().StatusCode).toBe(4);

    await settle();
    expect(await list()).toEqual({ '/lc-up': 'running Up', '/lc-four': 'exited Exited (4) ago' });
    // Served from the cache: the same.
    expect(await list()).toEqual({ '/lc-up': 'running Up', '/lc-four': 'exited Exited (4) ago' });

    expect((await svc.request('POST', `/v1.41/containers/${up}/stop?t=0`)).status).toBe(204);
    expect((await svc.request('POST', `/v1.41/containers/${four}/rename?name=lc-renamed`)).status).toBe(204);
    expect(await list()).toEqual({ '/lc-up': 'exited Exited (137) ago', '/lc-renamed': 'exited Exited (4) ago' });

    await settle();
    expect(await list()).toEqual({ '/lc-up': 'exited Exited (137) ago', '/lc-renamed': 'exited Exited (4) ago' });
    expect((await svc.request('POST', `/v1.41/containers/${up}/start`)).status).toBe(204);
    expect((await svc.request('DELETE', `/v1.41/containers/${four}`)).status).toBe(204);
    expect(await list()).toEqual({ '/lc-up': 'running Up' });

    // Its monitor killed, then its init: nothing writes a file, /proc alone tells.
    await settle();
    expect(await list()).toEqual({ '/lc-up': 'running Up' });
    const dir = path.join(env.store, 'containers', up);
    const monitor = (JSON.parse(fs.readFileSync(path.join(dir, 'monitor.json'), 'utf8')) as { pid: number }).pid;
    const init = (await svc.request('GET', `/v1.41/containers/${up}/json`)).json<{ State: { Pid: number } }>().State.Pid;
    process.kill(monitor, 'SIGKILL');
    waitFor(() => !alive(monitor), 5000, 'the monitor to die');
    expect(await list()).toEqual({ '/lc-up': 'running Up' });
    process.kill(init, 'SIGKILL');
    waitFor(() => !alive(init), 5000, 'the init to die');
    expect(await list()).toEqual({ '/lc-up': 'exited Exited (255) ago' });
  });
});

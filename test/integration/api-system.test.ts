/**
 * The Engine API's system, volume and network endpoints against the real service, CLI and
 * runtime: info's shape and counts, the events stream (filters, since/until, an event from a CLI
 * command while streaming, the monitor's bare `die` filled from the record), system/df, volume
 * and network create/list/inspect/remove with Docker's statuses, and dial-stdio starting the
 * service on demand.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT } from './helpers';
import { cmdline, IMAGE, setup, type Env } from './lifecycle.helpers';
import { startService, type Service } from './api.helpers';

let env: Env;
let svc: Service;

beforeAll(async () => {
  env = setup('api-system');
  svc = await startService(env);
}, 120_000);

afterAll(async () => {
  await svc?.stop();
  env?.dispose();
});

interface Ev {
  Type: string;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  time: number;
  timeNano: number;
  status?: string;
  from?: string;
}

/** A streaming GET: the events as they come; `close()` hangs up. */
function stream(sock: string, p: string): { events: Ev[]; status: Promise<number>; ended: Promise<void>; next(pred: (e: Ev) => boolean): Promise<Ev>; close(): void } {
  const events: Ev[] = [];
  const waiters: { pred: (e: Ev) => boolean; resolve: (e: Ev) => void }[] = [];
  let resolveStatus!: (n: number) => void;
  let resolveEnded!: () => void;
  const status = new Promise<number>((r) => (resolveStatus = r));
  const ended = new Promise<void>((r) => (resolveEnded = r));
  let buf = '';
  const req = http.get({ socketPath: sock, path: p }, (res) => {
    resolveStatus(res.statusCode ?? 0);
    res.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines.filter(Boolean)) {
        const e = JSON.parse(l) as Ev;
        events.push(e);
        for (const w of waiters.filter((x) => x.pred(e))) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(e);
        }
      }
    });
    res.on('end', resolveEnded);
    res.on('close', resolveEnded);
  });
  req.on('error', () => resolveEnded());
  return {
    events,
    status,
    ended,
    next: (pred) => new Promise((resolve) => (events.find(pred) ? resolve(events.find(pred)!) : waiters.push({ pred, resolve }))),
    close: () => req.destroy(),
  };
}

const q = (filters: Record<string, string[]>) => encodeURIComponent(JSON.stringify(filters));
const nowSecs = () => Date.now() / 1000;
/**
 * Unix seconds as a decimal with exact milliseconds: `(ms / 1000).toFixed(9)` rounds in binary
 * (1796643391.383 prints as 1796643391.382999897) and an `until` written so would leave out an
 * event of that very millisecond.
 */
const exactSecs = (t: number) => {
  const ms = Math.round(t * 1000);
  return `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, '0')}`;
};

describe('GET /info', () => {
  it("has Docker's shape and the store's counts", async () => {
    const created = env.b(['create', '--name', 'info-created', IMAGE, 'true']);
    expect(created.code, created.stderr).toBe(0);
    const running = env.b(['run', '-d', '--name', 'info-running', IMAGE, 'sleep', '600']);
    expect(running.code, running.stderr).toBe(0);
    try {
      const r = await svc.request('GET', '/v1.41/info');
      expect(r.status).toBe(200);
      const info = r.json<Record<string, unknown>>();
      expect(info).toMatchObject({ Containers: 2, ContainersRunning: 1, ContainersPaused: 0, ContainersStopped: 1, Images: 1, OSType: 'linux', KernelVersion: os.release(), DockerRootDir: env.store, DefaultRuntime: 'burrow-runtime', Swarm: { LocalNodeState: 'inactive' } });
      expect(info.ID).toMatch(/^[0-9A-F]{4}(:[0-9A-F]{4}){11}$/);
      expect(['overlay', 'fuse-overlayfs', 'copy']).toContain(info.Driver);
      expect(Array.isArray(info.DriverStatus)).toBe(true);
      // The store's image format and why (ts/storage/image-format.ts): layers on this local disk.
      expect(info.DriverStatus).toContainEqual(['Image Format', expect.stringMatching(/^layers \(store on .+, a local file system\)$/)]);
      expect(['1', '2']).toContain(info.CgroupVersion);
      expect(['systemd', 'cgroupfs', 'none']).toContain(info.CgroupDriver);
      expect(info.NCPU).toBeGreaterThan(0);
      expect(info.MemTotal).toBeGreaterThan(0);
      expect(info.Architecture).toBe(os.machine());
      expect(typeof info.ServerVersion).toBe('string');
      expect(typeof info.MemoryLimit).toBe('boolean');
      const rt = (info.Runtimes as Record<string, { path: string }>)['burrow-runtime']!;
      expect(fs.existsSync(rt.path)).toBe(true);
      const sec = info.SecurityOptions as string[];
      expect(sec).toContain('name=seccomp,profile=default');
      // Docker's clients parse every entry as name=…: rootless exactly when we are.
      expect(sec.every((s) => s.startsWith('name='))).toBe(true);
      expect(sec.includes('name=rootless')).toBe(process.getuid!() !== 0);
      expect(Array.isArray(info.Warnings)).toBe(true);
    } finally {
      env.b(['rm', '-f', 'info-created', 'info-running']);
    }
  });
});

describe('GET /events', () => {
  it('streams new events as they happen, a CLI command included, with filters', async () => {
    const s = stream(svc.sock, `/v1.41/events?filters=${q({ type: ['volume'], event: ['create'] })}`);
    expect(await s.status).toBe(200);
    // A network event (filtered out by type) and a volume removal (by event) come first.
    expect((await svc.request('POST', '/v1.41/networks/create', { Name: 'ev-net' })).status).toBe(201);
    const cli = env.b(['volume', 'create', 'ev-vol']);
    expect(cli.code, cli.stderr).toBe(0);
    const e = await s.next((x) => x.Actor.ID === 'ev-vol');
    expect(e).toMatchObject({ Type: 'volume', Action: 'create', Actor: { ID: 'ev-vol', Attributes: { driver: 'local' } } });
    expect(e.timeNano).toBeGreaterThan(0);
    expect(s.events.every((x) => x.Type === 'volume' && x.Action === 'create')).toBe(true);
    expect((await svc.request('GET', '/info')).json<{ NEventsListener: number }>().NEventsListener).toBe(1);
    s.close();
    await s.ended;
    expect((await svc.request('DELETE', '/v1.41/networks/ev-net')).status).toBe(204);
  });

  it('sends past events between since and until, then ends', async () => {
    // Events carry millisecond times: a few milliseconds between the phases keep them apart.
    const tick = () => new Promise((r) => setTimeout(r, 20));
    await tick();
    const t0 = nowSecs();
    expect((await svc.request('POST', '/volumes/create', { Name: 'range-a' })).status).toBe(201);
    expect((await svc.request('DELETE', '/volumes/range-a')).status).toBe(204);
    const t1 = nowSecs();
    await tick();
    expect((await svc.request('POST', '/volumes/create', { Name: 'range-b' })).status).toBe(201);
    const r = await svc.request('GET', `/v1.41/events?since=${exactSecs(t0)}&until=${exactSecs(t1)}`);
    expect(r.status).toBe(200);
    const evs = r.text.trim().split('\n').map((l) => JSON.parse(l) as Ev);
    expect(evs.map((e) => `${e.Action} ${e.Actor.ID}`)).toEqual(['create range-a', 'destroy range-a']);
    // RFC 3339 works as well, and a filter on the volume's name.
    const since = new Date(t0 * 1000 - 1).toISOString();
    const r2 = await svc.request('GET', `/events?since=${since}&until=${(nowSecs() + 0.001).toFixed(3)}&filters=${q({ volume: ['range-b'] })}`);
    expect(r2.text.trim().split('\n').map((l) => (JSON.parse(l) as Ev).Actor.ID)).toEqual(['range-b']);
  });

  it("a container's run has Docker's network connect at start and disconnect at its end, from the front end and the holder", async () => {
    const t0 = nowSecs() - 0.001;
    const r = env.b(['run', '--rm', '--name', 'ev-net-run', IMAGE, 'true']);
    expect(r.code, r.stderr).toBe(0);
    const bridge = (await svc.request('GET', '/v1.41/networks/bridge')).json<{ Id: string }>().Id;
    // The die (and the disconnect before it) come from the holder, before the CLI's destroy.
    const res = await svc.request('GET', `/v1.41/events?since=${exactSecs(t0)}&until=${(nowSecs() + 0.001).toFixed(3)}`);
    expect(res.status).toBe(200);
    const evs = res.text.trim().split('\n').map((l) => JSON.parse(l) as Ev);
    const id = evs.find((e) => e.Type === 'container' && e.Action === 'create' && e.Actor.Attributes.name === 'ev-net-run')!.Actor.ID;
    const mine = evs.filter((e) => e.Actor.ID === id || e.Actor.Attributes.container === id);
    expect(mine.map((e) => `${e.Type} ${e.Action}`)).toEqual(['container create', 'container attach', 'network connect', 'container start', 'network disconnect', 'container die', 'container destroy']);
    for (const e of mine.filter((x) => x.Type === 'network')) expect(e.Actor).toEqual({ ID: bridge, Attributes: { container: id, name: 'bridge', type: 'bridge' } });
  });

  it("fills a container event's name and image from the record when the monitor wrote only the id", async () => {
    const c = env.b(['create', '--name', 'ev-die', '--label', 'team=x', IMAGE, 'true']);
    expect(c.code, c.stderr).toBe(0);
    const id = c.stdout.trim();
    const t = Date.now();
    // What burrow-runtime's monitor appends when a container exits.
    fs.appendFileSync(path.join(env.runroot, 'events.jsonl'), `${JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID: id, Attributes: { exitCode: '3' } }, time: Math.floor(t / 1000), timeNano: t * 1e6 })}\n`);
    const r = await svc.request('GET', `/events?since=${Math.floor(t / 1000) - 1}&until=${(nowSecs() + 0.001).toFixed(3)}&filters=${q({ container: ['ev-die'], event: ['die'], label: ['team=x'] })}`);
    expect(r.status).toBe(200);
    const evs = r.text.trim().split('\n').map((l) => JSON.parse(l) as Ev);
    expect(evs).toHaveLength(1);
    expect(evs[0]).toMatchObject({ Type: 'container', Action: 'die', status: 'die', from: IMAGE, Actor: { ID: id, Attributes: { name: 'ev-die', image: IMAGE, exitCode: '3', team: 'x' } } });
    env.b(['rm', '-f', 'ev-die']);
  });

  it('refuses bad times and filters with 400', async () => {
    expect((await svc.request('GET', '/events?since=yesterday')).status).toBe(400);
    expect((await svc.request('GET', '/events?since=200&until=100')).status).toBe(400);
    const r = await svc.request('GET', `/events?filters=${q({ colour: ['red'] })}`);
    expect(r.status).toBe(400);
    expect(r.json<{ message: string }>().message).toMatch(/colour/);
  });
});

describe('volumes', () => {
  it('creates, lists with filters, inspects and removes, refusing options and a volume in use', async () => {
    const c = await svc.request('POST', '/v1.41/volumes/create', { Name: 'data1', Labels: { tier: 'db' }, Driver: 'local', DriverOpts: {} });
    expect(c.status).toBe(201);
    expect(c.json()).toMatchObject({ Name: 'data1', Driver: 'local', Labels: { tier: 'db' }, Scope: 'local', Mountpoint: path.join(env.store, 'volumes', 'data1', '_data') });
    // Again: the same volume back, as Docker.
    expect((await svc.request('POST', '/volumes/create', { Name: 'data1' })).json()).toMatchObject({ Name: 'data1', Labels: { tier: 'db' } });
    const anon = (await svc.request('POST', '/volumes/create', { Name: null, Driver: null, DriverOpts: null, Labels: null })).json<{ Name: string }>();
    expect(anon.Name).toMatch(/^[0-9a-f]{64}$/);
    for (const bad of [{ Name: 'x1', DriverOpts: { type: 'nfs' } }, { Name: 'x2', Driver: 'nfs' }, { Name: '../x3' }, { Name: 5 }, { Name: 'x4', Colour: 'red' }]) {
      const r = await svc.request('POST', '/volumes/create', bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect(r.json<{ message: string }>().message).toBeTruthy();
    }
    expect(fs.existsSync(path.join(env.store, 'volumes', 'x1'))).toBe(false);
    const names = async (f: Record<string, string[]>) => (await svc.request('GET', `/volumes?filters=${q(f)}`)).json<{ Volumes: { Name: string }[] }>().Volumes.map((v) => v.Name);
    expect(await names({ label: ['tier=db'] })).toEqual(['data1']);
    expect(await names({ name: ['data'] })).toEqual(['data1']);
    const user = env.b(['create', '--name', 'vol-user', '-v', 'data1:/data', IMAGE, 'true']);
    expect(user.code, user.stderr).toBe(0);
    expect(await names({ dangling: ['false'] })).toEqual(['data1']);
    expect(await names({ dangling: ['true'] })).toContain(anon.Name);
    const list = (await svc.request('GET', '/volumes')).json<{ Volumes: unknown[]; Warnings: unknown[] }>();
    expect(list.Warnings).toEqual([]);
    expect((await svc.request('GET', '/volumes/data1')).json()).toMatchObject({ Name: 'data1' });
    expect((await svc.request('GET', '/volumes/nope')).status).toBe(404);
    const inUse = await svc.request('DELETE', '/volumes/data1');
    expect(inUse.status).toBe(409);
    expect(inUse.json<{ message: string }>().message).toMatch(/in use/);
    expect((await svc.request('DELETE', '/volumes/data1?force=1')).status).toBe(409);
    expect((await svc.request('DELETE', '/volumes/nope')).status).toBe(404);
    expect((await svc.request('DELETE', '/volumes/nope?force=true')).status).toBe(204);
    // Prune takes the unused ones only.
    const p = await svc.request('POST', '/volumes/prune');
    expect(p.status).toBe(200);
    const pr = p.json<{ VolumesDeleted: string[]; SpaceReclaimed: number }>();
    expect(pr.VolumesDeleted).toContain(anon.Name);
    expect(pr.VolumesDeleted).not.toContain('data1');
    env.b(['rm', 'vol-user']);
    expect((await svc.request('DELETE', '/volumes/data1')).status).toBe(204);
    expect(fs.existsSync(path.join(env.store, 'volumes', 'data1'))).toBe(false);
  });

  it('burrow volume create takes labels and refuses options, as the API does', () => {
    const ok = env.b(['volume', 'create', '--label', 'a=b', 'cli-vol']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(env.b(['volume', 'ls', '-q', '--filter', 'label=a=b']).stdout).toBe('cli-vol\n');
    const bad = env.b(['volume', 'create', '-o', 'type=tmpfs', 'cli-vol2']);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/options .*not supported/);
    expect(env.b(['volume', 'rm', 'cli-vol']).code).toBe(0);
  });
});

describe('networks', () => {
  interface Net {
    Name: string;
    Id: string;
    Driver: string;
    Scope: string;
    IPAM: { Driver: string; Config: unknown[] };
    Labels: Record<string, string>;
    Containers: Record<string, { Name: string }>;
  }

  it('lists the modes that exist in Docker\'s shape, and inspects them by name or id prefix', async () => {
    const r = await svc.request('GET', '/v1.41/networks');
    expect(r.status).toBe(200);
    const nets = r.json<Net[]>();
    expect(nets.map((n) => [n.Name, n.Driver])).toEqual([
      ['bridge', 'bridge'],
      ['host', 'host'],
      ['none', 'null'],
    ]);
    for (const n of nets) {
      expect(n.Id).toMatch(/^[0-9a-f]{64}$/);
      expect(n.Scope).toBe('local');
      expect((await svc.request('GET', `/networks/${n.Id.slice(0, 12)}`)).json<Net>().Name).toBe(n.Name);
    }
    // The ids stay the same for the store.
    expect((await svc.request('GET', '/networks/bridge')).json<Net>().Id).toBe(nets[0]!.Id);
    expect((await svc.request('GET', '/networks/nope')).status).toBe(404);
  });

  it("creates a user-defined network (compose's PROJECT_default): unique name, a subnet of its own, list, inspect, connect, remove, prune", async () => {
    const labels = { 'com.docker.compose.project': 'proj', 'com.docker.compose.network': 'default' };
    const c = await svc.request('POST', '/v1.41/networks/create', { Name: 'proj_default', Driver: 'bridge', CheckDuplicate: true, Labels: labels, IPAM: { Driver: 'default', Config: [] } });
    expect(c.status).toBe(201);
    const { Id, Warning } = c.json<{ Id: string; Warning: string }>();
    expect(Id).toMatch(/^[0-9a-f]{64}$/);
    expect(Warning).toBe('');
    const dup = await svc.request('POST', '/networks/create', { Name: 'proj_default' });
    expect(dup.status).toBe(409);
    expect(dup.json<{ message: string }>().message).toMatch(/already exists/);
    expect((await svc.request('POST', '/networks/create', { Name: 'bridge' })).status).toBe(409);
    expect((await svc.request('POST', '/networks/create', { Name: 'ov', Driver: 'overlay' })).status).toBe(400);
    expect((await svc.request('POST', '/networks/create', {})).status).toBe(400);
    const found = (await svc.request('GET', `/networks?filters=${q({ label: ['com.docker.compose.project=proj'] })}`)).json<Net[]>();
    expect(found.map((n) => n.Name)).toEqual(['proj_default']);
    expect((await svc.request('GET', `/networks?filters=${q({ type: ['custom'] })}`)).json<Net[]>().map((n) => n.Name)).toEqual(['proj_default']);
    const ins = (await svc.request('GET', '/networks/proj_default')).json<Net>();
    expect(ins).toMatchObject({ Name: 'proj_default', Id, Driver: 'bridge', Labels: labels });
    expect((ins.IPAM.Config[0] as { Subnet: string }).Subnet).toMatch(/^\d+\.\d+\.\d+\.\d+\/\d+$/);
    // connect: the container must exist; the built-in networks cannot be changed afterwards; a
    // container on a user-defined network joins another one (its record: it is not running).
    const ctr = env.b(['create', '--name', 'net-user', '--network', 'proj_default', IMAGE, 'true']);
    expect(ctr.code, ctr.stderr).toBe(0);
    expect((await svc.request('POST', '/networks/create', { Name: 'proj_back' })).status).toBe(201);
    const conn = await svc.request('POST', '/networks/proj_back/connect', { Container: 'net-user', EndpointConfig: { Aliases: ['back'] } });
    expect(conn.status, conn.text).toBe(200);
    expect((await svc.request('POST', '/networks/proj_back/connect', { Container: 'nope' })).status).toBe(404);
    expect((await svc.request('POST', '/networks/host/connect', { Container: 'net-user' })).status).toBe(403);
    expect((await svc.request('POST', '/networks/proj_back/connect', { Container: 'net-user', EndpointConfig: { IPAMConfig: { IPv4Address: 'x' } } })).status).toBe(400);
    const eps = (await svc.request('GET', '/containers/net-user/json')).json<{ NetworkSettings: { Networks: Record<string, { Aliases: string[] }> } }>().NetworkSettings.Networks;
    expect(Object.keys(eps)).toEqual(['proj_default', 'proj_back']);
    expect(eps.proj_back!.Aliases).toContain('back');
    // In use (a running container: Docker's active endpoint): Docker's 403 with its words.
    const runner = env.b(['run', '-d', '--name', 'net-runner', '--network', 'proj_default', IMAGE, 'sleep', '1000']);
    expect(runner.code, runner.stderr).toBe(0);
    const inUse = await svc.request('DELETE', '/networks/proj_default');
    expect(inUse.status).toBe(403);
    expect(inUse.json<{ message: string }>().message).toMatch(/error while removing network: network proj_default .*has active endpoints/);
    const disc = await svc.request('POST', '/networks/proj_back/disconnect', { Container: 'net-user', Force: false });
    expect(disc.status, disc.text).toBe(200);
    expect(Object.keys((await svc.request('GET', '/containers/net-user/json')).json<{ NetworkSettings: { Networks: object } }>().NetworkSettings.Networks)).toEqual(['proj_default']);
    expect((await svc.request('POST', '/networks/proj_back/disconnect', { Container: 'net-user' })).status).toBe(403);
    expect((await svc.request('DELETE', '/networks/proj_back')).status).toBe(204);
    env.b(['rm', '-f', 'net-user', 'net-runner']);
    expect((await svc.request('DELETE', '/networks/bridge')).status).toBe(403);
    expect((await svc.request('DELETE', `/networks/${Id.slice(0, 10)}`)).status).toBe(204);
    expect((await svc.request('DELETE', '/networks/proj_default')).status).toBe(404);
    // prune: recorded networks nobody uses. A body as docker-py's IPAM helpers build it (nulls) is fine.
    const nulls = await svc.request('POST', '/networks/create', { Name: 'stale', Driver: null, Internal: null, IPAM: { Driver: null, Config: [{ Subnet: '10.9.0.0/24', Gateway: null, AuxiliaryAddresses: null }], Options: null }, Options: null });
    expect(nulls.status, nulls.text).toBe(201);
    const p = (await svc.request('POST', '/networks/prune')).json<{ NetworksDeleted: string[] }>();
    expect(p.NetworksDeleted).toEqual(['stale']);
    // Its events as Docker's: create, the running container's connect at its start and disconnect
    // when rm -f killed it (the created one never ran: none), destroy.
    const ev = await svc.request('GET', `/events?since=0&until=${(nowSecs() + 0.001).toFixed(3)}&filters=${q({ network: ['proj_default'] })}`);
    expect(ev.text.trim().split('\n').map((l) => (JSON.parse(l) as Ev).Action)).toEqual(['create', 'connect', 'disconnect', 'destroy']);
  });
});

describe('GET /system/df', () => {
  it("gives Docker's shape: layers, images with their containers, containers, volumes with their use", async () => {
    const v = env.b(['volume', 'create', 'df-vol']);
    expect(v.code, v.stderr).toBe(0);
    fs.writeFileSync(path.join(env.store, 'volumes', 'df-vol', '_data', 'f'), Buffer.alloc(10_000));
    const c = env.b(['create', '--name', 'df-ctr', '-v', 'df-vol:/d', IMAGE, 'true']);
    expect(c.code, c.stderr).toBe(0);
    try {
      const r = await svc.request('GET', '/v1.41/system/df');
      expect(r.status).toBe(200);
      const df = r.json<{ LayersSize: number; Images: { Id: string; Containers: number; Size: number }[]; Containers: { Id: string; Names: string[]; State: string }[]; Volumes: { Name: string; UsageData: { Size: number; RefCount: number } }[]; BuildCache: unknown[] }>();
      expect(df.LayersSize).toBeGreaterThan(0);
      expect(df.Images).toHaveLength(1);
      expect(df.Images[0]!.Id).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(df.Images[0]!.Containers).toBe(1);
      expect(df.Containers.map((x) => [x.Names[0], x.State])).toEqual([['/df-ctr', 'created']]);
      const vol = df.Volumes.find((x) => x.Name === 'df-vol')!;
      expect(vol.UsageData.RefCount).toBe(1);
      expect(vol.UsageData.Size).toBeGreaterThanOrEqual(10_000);
      expect(df.BuildCache).toEqual([]);
    } finally {
      env.b(['rm', 'df-ctr']);
      env.b(['volume', 'rm', 'df-vol']);
    }
  });
});

describe('burrow system dial-stdio', () => {
  it('starts the service when nothing listens, relays HTTP both ways, and the service leaves when idle', async () => {
    const sock = path.join(env.work, 'dial.sock');
    const child = spawn(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, 'system', 'dial-stdio'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, DOCKER_HOST: `unix://${sock}` } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    // Two requests on one connection, then the end of stdin: both answers, then the relay ends.
    child.stdin.write('GET /v1.41/_ping HTTP/1.1\r\nHost: burrow\r\n\r\n');
    child.stdin.end('GET /v1.41/volumes HTTP/1.1\r\nHost: burrow\r\n\r\n');
    expect(await exited, err).toBe(0);
    expect(out).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nOK/);
    expect(out).toMatch(/HTTP\/1\.1 200 OK[\s\S]*"Volumes":/);
    // The service it started runs detached and goes after its 5 idle seconds, taking its socket.
    expect(fs.statSync(sock).isSocket()).toBe(true);
    for (let i = 0; i < 600 && fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    expect(fs.existsSync(sock)).toBe(false);
  }, 60_000);

  it('two relays at once on a dead socket both get answers (one service keeps the path, neither leaves a process)', async () => {
    const sock = path.join(env.work, 'dial2.sock');
    // A socket file nobody listens on, as a killed service leaves it.
    const stale = spawnSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', sock]);
    expect(stale.status, String(stale.stderr)).toBe(0);
    expect(fs.statSync(sock).isSocket()).toBe(true);
    const relay = () =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const child = spawn(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, 'system', 'dial-stdio', '--host', `unix://${sock}`], { stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d));
        child.stderr.on('data', (d: Buffer) => (err += d));
        child.once('exit', (code) => resolve({ code, out, err }));
        child.stdin.end('GET /v1.41/_ping HTTP/1.1\r\nHost: burrow\r\n\r\n');
      });
    const [a, b] = await Promise.all([relay(), relay()]);
    for (const r of [a, b]) {
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nOK/);
    }
    // Every service started for it goes when idle, and the socket with the last of them.
    const services = () => fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d) && cmdline(Number(d)).includes(sock));
    for (let i = 0; i < 600 && (services().length || fs.existsSync(sock)); i++) await new Promise((r) => setTimeout(r, 50));
    expect(services()).toEqual([]);
    expect(fs.existsSync(sock)).toBe(false);
  }, 60_000);

  it("is what the docker shim runs for `docker --host unix://… system dial-stdio` (docker's ssh helper)", async () => {
    const child = spawn(path.join(ROOT, 'contrib', 'docker'), ['--host', svc.host, 'system', 'dial-stdio'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    child.stdin.end('GET /v1.41/info HTTP/1.1\r\nHost: burrow\r\n\r\n');
    expect(await exited, err).toBe(0);
    expect(out).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*"DockerRootDir":/);
    // Other commands run burrow here; a -H for them is refused rather than ignored.
    const other = spawnSync(path.join(ROOT, 'contrib', 'docker'), ['-H', svc.host, 'ps'], { encoding: 'utf8' });
    expect(other.status).toBe(125);
    expect(other.stderr).toMatch(/only for 'system dial-stdio'/);
  });

  it('says which socket it cannot use', () => {
    const r = env.b(['system', 'dial-stdio', '--host', 'tcp://127.0.0.1:1']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/unix socket only/);
  });
});

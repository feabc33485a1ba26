/**
 * The Engine API's container routes against the real service and runtime (as root, and as the
 * unprivileged test user in the rootless pass): Docker's create body translated into a
 * container that runs with what it was given, the lifecycle routes with Docker's statuses,
 * list filters, wait conditions, and concurrent creates (distinct names all succeed; one name:
 * exactly one wins, also against the CLI).
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import { startService, type Service } from './api.helpers';

let env: Env;
let svc: Service;
let share: string;
const rootless = (process.getuid?.() ?? 0) !== 0;

beforeAll(async () => {
  env = setup('api-containers');
  svc = await startService(env);
  // A directory the container's users can write whatever ids they map to.
  share = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-api-ctr-share-'));
  fs.chmodSync(share, 0o777);
  fs.writeFileSync(path.join(share, 'in'), 'from the host\n');
  fs.chmodSync(path.join(share, 'in'), 0o644);
}, 120_000);

afterAll(async () => {
  await svc?.stop();
  env?.dispose();
  if (share) fs.rmSync(share, { recursive: true, force: true });
});

interface Created {
  Id: string;
  Warnings: string[];
}
interface Inspect {
  Id: string;
  Name: string;
  RestartCount: number;
  State: { Status: string; Running: boolean; Paused: boolean; ExitCode: number; Pid: number; StartedAt: string; FinishedAt: string };
  Config: { Env: string[]; User: string; WorkingDir: string; Labels: Record<string, string>; Hostname: string; Cmd: string[]; Entrypoint: string[] | null; StopSignal: string; StopTimeout: number; Healthcheck?: { Test: string[]; Interval?: number; Retries?: number }; Tty: boolean; OpenStdin: boolean };
  HostConfig: Record<string, unknown> & { RestartPolicy: { Name: string; MaximumRetryCount: number }; PortBindings: Record<string, { HostIp: string; HostPort: string }[]> };
  Mounts: { Type: string; Source: string; Destination: string; RW: boolean }[];
}

async function create(body: Record<string, unknown>, name?: string): Promise<string> {
  const r = await svc.request('POST', `/v1.41/containers/create${name ? `?name=${name}` : ''}`, { Image: IMAGE, ...body });
  expect(r.status, r.text).toBe(201);
  return r.json<Created>().Id;
}

async function inspect(id: string): Promise<Inspect> {
  const r = await svc.request('GET', `/v1.41/containers/${id}/json`);
  expect(r.status, r.text).toBe(200);
  return r.json<Inspect>();
}

async function count(): Promise<number> {
  return (await svc.request('GET', '/containers/json?all=1')).json<unknown[]>().length;
}

function events(): { Action: string; Actor: { ID: string; Attributes: Record<string, string> } }[] {
  const f = path.join(env.runroot, 'events.jsonl');
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ReturnType<typeof events>[number]) : [];
}

describe(`the Engine API's container routes as ${rootless ? 'the unprivileged user' : 'root'}`, () => {
  it('creates a container from Docker JSON that runs with its env, user, workdir, binds, labels, hostname and command', async () => {
    const id = await create(
      {
        Hostname: 'apihost',
        User: '1000:1000',
        Env: ['FOO=bar baz', 'EMPTY='],
        Cmd: ['sh', '-c', 'echo "$FOO|$(id -u):$(id -g)|$(pwd)|$(hostname)|$(grep -c apiextra /etc/hosts)" > /share/out; cat /share/in >> /share/out; exit 7'],
        WorkingDir: '/tmp',
        Labels: { 'com.example.team': 'burrow', empty: '' },
        StopSignal: 'SIGINT',
        StopTimeout: 3,
        Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 2_000_000_000, Retries: 2 },
        Tty: false,
        OpenStdin: false,
        Unknown: { ignored: true },
        HostConfig: { Binds: [`${share}:/share`], ExtraHosts: ['apiextra:10.1.2.3'], RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 3 }, Memory: 0, NanoCpus: 0, PidsLimit: null, CapAdd: ['NET_RAW'], Tmpfs: { '/scratch': 'size=1m' } },
      },
      'apictr',
    );
    const c = await inspect('apictr');
    expect(c.Id).toBe(id);
    expect(c.Name).toBe('/apictr');
    expect(c.State.Status).toBe('created');
    expect(c.Config.Env).toEqual(expect.arrayContaining(['FOO=bar baz', 'EMPTY=']));
    expect(c.Config.User).toBe('1000:1000');
    expect(c.Config.WorkingDir).toBe('/tmp');
    expect(c.Config.Labels).toMatchObject({ 'com.example.team': 'burrow', empty: '' });
    expect(c.Config.Hostname).toBe('apihost');
    expect(c.Config.StopSignal).toBe('SIGINT');
    expect(c.Config.StopTimeout).toBe(3);
    expect(c.Config.Healthcheck).toEqual({ Test: ['CMD-SHELL', 'true'], Interval: 2_000_000_000, Retries: 2 });
    expect(c.HostConfig.RestartPolicy).toEqual({ Name: 'on-failure', MaximumRetryCount: 3 });
    expect(c.HostConfig.CapAdd).toEqual(['NET_RAW']);
    expect(c.HostConfig.Binds).toEqual([`${share}:/share`]);
    expect(c.HostConfig.ExtraHosts).toEqual(['apiextra:10.1.2.3']);
    expect(c.Mounts).toEqual(expect.arrayContaining([expect.objectContaining({ Type: 'bind', Source: share, Destination: '/share', RW: true })]));
    const wait = svc.request('POST', `/v1.41/containers/${id}/wait?condition=next-exit`);
    expect((await svc.request('POST', `/v1.41/containers/${id}/start`)).status).toBe(204);
    const w = await wait;
    expect(w.status).toBe(200);
    expect(w.json()).toEqual({ StatusCode: 7, Error: null });
    expect(fs.readFileSync(path.join(share, 'out'), 'utf8')).toBe('bar baz|1000:1000|/tmp|apihost|1\nfrom the host\n');
    const after = await inspect(id);
    expect(after.State).toMatchObject({ Status: 'exited', Running: false, ExitCode: 7 });
    expect(Date.parse(after.State.FinishedAt)).toBeGreaterThanOrEqual(Date.parse(after.State.StartedAt));
    // Events, whichever front end acts: create and start here, die from the monitor.
    expect(events().filter((e) => e.Actor.ID === id).map((e) => e.Action)).toEqual(expect.arrayContaining(['create', 'start']));
    expect(events().find((e) => e.Actor.ID === id && e.Action === 'create')!.Actor.Attributes).toMatchObject({ name: 'apictr', image: IMAGE, 'com.example.team': 'burrow' });
  });

  it("translates entrypoint, port bindings, mounts, ulimits, dns and the network mode: a user-defined network with its EndpointsConfig (Docker's endpoint in inspect)", async () => {
    const net = await svc.request('POST', '/v1.41/networks/create', { Name: 'myproject_default', IPAM: { Config: [{ Subnet: '10.232.5.0/24', Gateway: '10.232.5.1' }] } });
    expect(net.status, net.text).toBe(201);
    const r = await svc.request('POST', '/containers/create?name=apiports', {
      Image: IMAGE,
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: 'echo hi',
      ExposedPorts: { '9090/tcp': {} },
      Volumes: { '/anon': {} },
      HostConfig: {
        PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '18080' }], '53/udp': [{ HostIp: '', HostPort: '' }] },
        Mounts: [{ Type: 'volume', Source: 'apivol', Target: '/vol' }, { Type: 'tmpfs', Target: '/tm', TmpfsOptions: { SizeBytes: 1048576 } }],
        Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }],
        Dns: ['10.0.2.3'],
        DnsSearch: ['example.com'],
        NetworkMode: 'myproject_default',
        ReadonlyRootfs: true,
        AutoRemove: false,
      },
      NetworkingConfig: { EndpointsConfig: { myproject_default: { Aliases: ['web'] } } },
    });
    expect(r.status, r.text).toBe(201);
    const { Id, Warnings } = r.json<Created>();
    expect(Warnings.join('\n')).not.toMatch(/network/);
    const c = await inspect(Id);
    expect(c.Config.Entrypoint).toEqual(['/bin/sh', '-c']);
    expect(c.Config.Cmd).toEqual(['echo hi']);
    expect(c.HostConfig.PortBindings).toEqual({ '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '18080' }], '53/udp': [{ HostIp: '', HostPort: '' }] });
    expect(c.HostConfig.ReadonlyRootfs).toBe(true);
    expect(c.HostConfig.Dns).toEqual(['10.0.2.3']);
    expect(c.Mounts.map((m) => `${m.Type}:${m.Destination}`).sort()).toEqual(['tmpfs:/tm', 'volume:/anon', 'volume:/vol']);
    // Docker's shapes: the network's name as the mode, its endpoint with the aliases asked and
    // the short id (compose looks for it), an address from the network's subnet.
    expect(c.HostConfig.NetworkMode).toBe('myproject_default');
    const eps = (c as unknown as { NetworkSettings: { Networks: Record<string, { Aliases: string[]; IPAddress: string; NetworkID: string }> } }).NetworkSettings.Networks;
    expect(Object.keys(eps)).toEqual(['myproject_default']);
    expect(eps.myproject_default!.Aliases).toEqual(expect.arrayContaining(['web', Id.slice(0, 12)]));
    expect(eps.myproject_default!.NetworkID).toBe(net.json<{ Id: string }>().Id);
    // Several EndpointsConfig entries: the mode's first, then the others; a fixed address and a MAC.
    expect((await svc.request('POST', '/v1.41/networks/create', { Name: 'myproject_back', IPAM: { Config: [{ Subnet: '10.232.6.0/24' }] } })).status).toBe(201);
    const two = await create({ HostConfig: { NetworkMode: 'myproject_back' }, NetworkingConfig: { EndpointsConfig: { myproject_default: { Aliases: ['db'] }, myproject_back: { IPAMConfig: { IPv4Address: '10.232.6.77' }, MacAddress: '02:42:0a:e8:06:4d' } } } });
    const twoEps = (await svc.request('GET', `/containers/${two}/json`)).json<{ HostConfig: { NetworkMode: string }; NetworkSettings: { Networks: Record<string, { Aliases: string[]; IPAMConfig: { IPv4Address: string } | null; MacAddress: string }> } }>();
    expect(twoEps.HostConfig.NetworkMode).toBe('myproject_back');
    expect(Object.keys(twoEps.NetworkSettings.Networks)).toEqual(['myproject_back', 'myproject_default']);
    expect(twoEps.NetworkSettings.Networks.myproject_back).toMatchObject({ IPAMConfig: { IPv4Address: '10.232.6.77' }, MacAddress: '02:42:0a:e8:06:4d' });
    expect(twoEps.NetworkSettings.Networks.myproject_default!.Aliases).toContain('db');
    // The list shows them too (docker ps's NETWORKS).
    const listed = (await svc.request('GET', `/containers/json?all=true&filters=${encodeURIComponent(JSON.stringify({ id: [two] }))}`)).json<{ HostConfig: { NetworkMode: string }; NetworkSettings: { Networks: Record<string, unknown> } }[]>();
    expect(listed[0]!.HostConfig.NetworkMode).toBe('myproject_back');
    expect(Object.keys(listed[0]!.NetworkSettings.Networks)).toEqual(['myproject_back', 'myproject_default']);
    // A network that does not exist: Docker's 404; bad addresses: 400; nothing is created.
    const before = (await svc.request('GET', '/containers/json?all=true')).json<unknown[]>().length;
    const nf = await svc.request('POST', '/containers/create', { Image: IMAGE, HostConfig: { NetworkMode: 'no-such-net' } });
    expect(nf.status, nf.text).toBe(404);
    expect(nf.json<{ message: string }>().message).toMatch(/network no-such-net not found/);
    const badIp = await svc.request('POST', '/containers/create', { Image: IMAGE, HostConfig: { NetworkMode: 'myproject_back' }, NetworkingConfig: { EndpointsConfig: { myproject_back: { IPAMConfig: { IPv4Address: '10.232.6.300' } } } } });
    expect(badIp.status, badIp.text).toBe(400);
    expect((await svc.request('GET', '/containers/json?all=true')).json<unknown[]>()).toHaveLength(before);
    expect((await svc.request('DELETE', `/containers/${two}`)).status).toBe(204);
    const list = (await svc.request('GET', `/containers/json?all=true&filters=${encodeURIComponent(JSON.stringify({ id: [Id] }))}`)).json<{ Ports: object[] }[]>();
    expect(list[0]!.Ports).toEqual(expect.arrayContaining([{ PrivatePort: 80, Type: 'tcp' }, { PrivatePort: 53, Type: 'udp' }]));
    const host = await svc.request('POST', '/containers/create', { Image: IMAGE, HostConfig: { NetworkMode: 'host' } });
    expect(host.status).toBe(201);
    expect((await inspect(host.json<Created>().Id)).HostConfig.NetworkMode).toBe('host');
  });

  it('gives Docker\'s errors: 404 for a missing image or container, 400 for a wrong type or bad JSON, 409 for a name in use; nothing is half-created', async () => {
    const before = await count();
    const noImg = await svc.request('POST', '/v1.41/containers/create?name=noimg', { Image: 'nosuch/image:1' });
    expect(noImg.status).toBe(404);
    expect(noImg.json()).toEqual({ message: 'No such image: nosuch/image:1' });
    const wrong = await svc.request('POST', '/containers/create?name=wrongtype', { Image: IMAGE, Env: 'FOO=bar' });
    expect(wrong.status).toBe(400);
    expect(wrong.json<{ message: string }>().message).toMatch(/\bEnv\b/);
    const wrongHc = await svc.request('POST', '/containers/create?name=wrongtype', { Image: IMAGE, HostConfig: { Memory: '1g' } });
    expect(wrongHc.status).toBe(400);
    expect(wrongHc.json<{ message: string }>().message).toMatch(/HostConfig\.Memory/);
    const badJson = await svc.request('POST', '/containers/create?name=badjson', '{"Image": ');
    expect(badJson.status).toBe(400);
    const badBind = await svc.request('POST', '/containers/create?name=badbind', { Image: IMAGE, HostConfig: { Binds: ['/no/such/dir/here:/x'] } });
    expect(badBind.status).toBe(400);
    const rm = await svc.request('POST', '/containers/create?name=rmrestart', { Image: IMAGE, HostConfig: { AutoRemove: true, RestartPolicy: { Name: 'always' } } });
    expect(rm.status).toBe(400);
    const badName = await svc.request('POST', '/containers/create?name=bad/name', { Image: IMAGE });
    expect(badName.status).toBe(400);
    await create({ Cmd: ['true'] }, 'taken');
    const dup = await svc.request('POST', '/containers/create?name=taken', { Image: IMAGE });
    expect(dup.status).toBe(409);
    expect(dup.json<{ message: string }>().message).toMatch(/^Conflict\. The container name "\/taken" is already in use by container "[0-9a-f]{64}"\. You have to remove \(or rename\) that container to be able to reuse that name\.$/);
    expect(await count()).toBe(before + 1);
    // The failed names are free: no reservation was left behind.
    for (const n of ['noimg', 'wrongtype', 'badbind', 'rmrestart']) await create({ Cmd: ['true'] }, n);
    for (const p of ['/containers/nosuch/json', '/containers/nosuch/top']) {
      const r = await svc.request('GET', p);
      expect(r.status, p).toBe(404);
      expect(r.json()).toEqual({ message: 'No such container: nosuch' });
    }
    for (const p of ['start', 'stop', 'restart', 'kill', 'wait', 'pause', 'unpause', 'rename?name=x', 'update']) expect((await svc.request('POST', `/containers/nosuch/${p}`, p === 'update' ? {} : undefined)).status, p).toBe(404);
    expect((await svc.request('DELETE', '/containers/nosuch')).status).toBe(404);
  });

  it('passes the resource limits on: enforced and shown by inspect, or refused naming the controllers (nothing created)', async () => {
    const before = await count();
    const r = await svc.request('POST', '/containers/create?name=limited', { Image: IMAGE, Cmd: ['true'], HostConfig: { Memory: 64 * 1024 * 1024, NanoCpus: 500_000_000, PidsLimit: 50, CpuShares: 0, BlkioWeight: 0 } });
    if (r.status === 201) {
      expect((await inspect(r.json<Created>().Id)).HostConfig).toMatchObject({ Memory: 64 * 1024 * 1024, NanoCpus: 500_000_000, PidsLimit: 50 });
    } else {
      expect(r.status).toBe(500);
      expect(r.json<{ message: string }>().message).toMatch(/cannot enforce the requested limits: .*memory, cpu, pids controllers/);
      expect(await count()).toBe(before);
      expect((await svc.request('GET', '/containers/limited/json')).status).toBe(404);
    }
  });

  it('start, stop, restart, kill and DELETE answer with Docker\'s statuses (204, 304, 409)', async () => {
    const id = await create({ Cmd: ['sleep', '300'], StopTimeout: 1 }, 'lifecycle');
    expect((await svc.request('POST', `/containers/${id}/start`)).status).toBe(204);
    expect((await svc.request('POST', `/containers/${id}/start`)).status).toBe(304);
    expect((await inspect(id)).State).toMatchObject({ Status: 'running', Running: true });
    const del = await svc.request('DELETE', `/containers/${id}`);
    expect(del.status).toBe(409);
    expect(del.json<{ message: string }>().message).toMatch(/You cannot remove a running container .*force/);
    expect((await svc.request('POST', `/containers/${id}/stop?t=1`)).status).toBe(204);
    expect((await svc.request('POST', `/containers/${id}/stop`)).status).toBe(304);
    const kill = await svc.request('POST', `/containers/${id}/kill`);
    expect(kill.status).toBe(409);
    expect(kill.json<{ message: string }>().message).toMatch(/is not running/);
    expect((await svc.request('POST', `/containers/${id}/restart?t=1`)).status).toBe(204);
    const pid = (await inspect(id)).State.Pid;
    expect(pid).toBeGreaterThan(0);
    expect((await svc.request('POST', `/containers/${id}/restart?t=1`)).status).toBe(204);
    expect((await inspect(id)).State.Pid).not.toBe(pid);
    const waiting = svc.request('POST', `/containers/${id}/wait`);
    // (SIGTERM would do nothing: `sleep` is pid 1 of its namespace, without a handler.)
    expect((await svc.request('POST', `/containers/${id}/kill?signal=SIGKILL`)).status).toBe(204);
    expect((await waiting).json()).toEqual({ StatusCode: 137, Error: null });
    expect((await svc.request('POST', `/containers/${id}/restart`)).status).toBe(204);
    expect((await svc.request('DELETE', `/containers/${id}?force=1&v=1`)).status).toBe(204);
    expect((await svc.request('GET', `/containers/${id}/json`)).status).toBe(404);
    const acts = events().filter((e) => e.Actor.ID === id).map((e) => e.Action);
    for (const a of ['create', 'start', 'stop', 'restart', 'kill', 'destroy']) expect(acts, a).toContain(a);
  });

  it('wait: not-running answers at once for a stopped container, next-exit waits for the next run, removed for the removal', async () => {
    const id = await create({ Cmd: ['sh', '-c', 'exit 3'] }, 'waiter');
    expect((await svc.request('POST', `/containers/${id}/wait?condition=not-running`)).json()).toEqual({ StatusCode: 0, Error: null });
    const next = svc.request('POST', `/containers/${id}/wait?condition=next-exit`);
    expect((await svc.request('POST', `/containers/${id}/start`)).status).toBe(204);
    expect((await next).json()).toEqual({ StatusCode: 3, Error: null });
    expect((await svc.request('POST', `/containers/${id}/wait`)).json()).toEqual({ StatusCode: 3, Error: null });
    expect((await svc.request('POST', `/containers/${id}/wait?condition=bogus`)).status).toBe(400);
    // The status line comes before the container has even started, as Docker's: the docker CLI
    // waits for it before it sends start (`run` asks for next-exit or removed first).
    const early = await create({ Cmd: ['sh', '-c', 'exit 9'] }, 'early');
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.request({ socketPath: svc.sock, method: 'POST', path: `/v1.41/containers/${early}/wait?condition=next-exit` }, resolve).on('error', reject).end());
    expect(res.statusCode).toBe(200);
    let body = '';
    res.on('data', (d: Buffer) => (body += d));
    const ended = new Promise((resolve) => res.on('end', resolve));
    expect((await svc.request('POST', `/containers/${early}/start`)).status).toBe(204);
    await ended;
    expect(JSON.parse(body)).toEqual({ StatusCode: 9, Error: null });
    // AutoRemove: the docker CLI's `run --rm` waits for the removal.
    const rm = await create({ Cmd: ['sh', '-c', 'sleep 0.2; exit 5'], HostConfig: { AutoRemove: true } }, 'autorm');
    const removed = svc.request('POST', `/containers/${rm}/wait?condition=removed`);
    expect((await svc.request('POST', `/containers/${rm}/start`)).status).toBe(204);
    expect((await removed).json()).toEqual({ StatusCode: 5, Error: null });
    expect((await svc.request('GET', `/containers/${rm}/json`)).status).toBe(404);
  });

  it("lists containers in Docker's shape, with all, limit and the filters", async () => {
    const run = await create({ Cmd: ['sleep', '300'], Labels: { tier: 'web', app: 'lister' } }, 'lister-run');
    await svc.request('POST', `/containers/${run}/start`);
    const ex = await create({ Cmd: ['sh', '-c', 'exit 4'], Labels: { tier: 'db' } }, 'lister-exited');
    await svc.request('POST', `/containers/${ex}/start`);
    await svc.request('POST', `/containers/${ex}/wait`);
    const q = (s: string) => svc.request('GET', `/v1.41/containers/json${s}`).then((r) => {
      expect(r.status, r.text).toBe(200);
      return r.json<{ Id: string; Names: string[]; Image: string; ImageID: string; Command: string; Created: number; State: string; Status: string; Labels: Record<string, string>; HostConfig: { NetworkMode: string }; NetworkSettings: { Networks: Record<string, unknown> }; Mounts: unknown[] }[]>();
    });
    const f = (o: object) => `filters=${encodeURIComponent(JSON.stringify(o))}`;
    const running = await q('');
    expect(running.map((c) => c.Id)).toContain(run);
    expect(running.map((c) => c.Id)).not.toContain(ex);
    const me = running.find((c) => c.Id === run)!;
    expect(me).toMatchObject({ Names: ['/lister-run'], Image: IMAGE, Command: 'sleep 300', State: 'running', Labels: { tier: 'web', app: 'lister' } });
    expect(me.Status).toMatch(/^Up /);
    expect(me.ImageID).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(Math.abs(me.Created - Date.now() / 1000)).toBeLessThan(600);
    expect(['bridge', 'none']).toContain(me.HostConfig.NetworkMode);
    expect(Object.keys(me.NetworkSettings.Networks)).toEqual([me.HostConfig.NetworkMode]);
    expect(Array.isArray(me.Mounts)).toBe(true);
    const all = await q('?all=1');
    expect(all.map((c) => c.Id)).toEqual(expect.arrayContaining([run, ex]));
    expect(all.find((c) => c.Id === ex)).toMatchObject({ State: 'exited' });
    expect(all.find((c) => c.Id === ex)!.Status).toMatch(/^Exited \(4\) .* ago$/);
    expect((await q('?limit=1')).map((c) => c.Id)).toEqual([ex]);
    expect((await q(`?all=1&${f({ label: ['tier=db'] })}`)).map((c) => c.Id)).toEqual([ex]);
    expect((await q(`?all=1&${f({ label: ['app'] })}`)).map((c) => c.Id)).toEqual([run]);
    expect((await q(`?all=1&${f({ name: ['lister-'] })}`)).map((c) => c.Id).sort()).toEqual([run, ex].sort());
    expect((await q(`?${f({ status: ['exited'], name: ['lister'] })}`)).map((c) => c.Id)).toEqual([ex]);
    expect((await q(`?all=1&${f({ exited: ['4'] })}`)).map((c) => c.Id)).toEqual([ex]);
    expect((await q(`?all=1&${f({ id: [run.slice(0, 12)] })}`)).map((c) => c.Id)).toEqual([run]);
    expect((await q(`?all=1&${f({ ancestor: [IMAGE], name: ['lister'] })}`)).map((c) => c.Id).sort()).toEqual([run, ex].sort());
    expect((await q(`?all=1&${f({ since: ['lister-run'] })}`)).map((c) => c.Id)).toEqual([ex]);
    expect((await q(`?all=1&${f({ before: ['lister-exited'], name: ['lister'] })}`)).map((c) => c.Id)).toEqual([run]);
    const bad = await svc.request('GET', `/containers/json?${f({ colour: ['red'] })}`);
    expect(bad.status).toBe(400);
    await svc.request('DELETE', `/containers/${run}?force=1`);
  });

  it('update of a stopped container (created or exited): 200, the restart policy and the limits apply at its next start', async () => {
    const id = await create({ Cmd: ['sh', '-c', 'echo run; exit 3'] }, 'upd-stopped');
    const created = await svc.request('POST', `/containers/${id}/update`, { RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 1 } });
    expect(created.status, created.text).toBe(200);
    expect((await svc.request('POST', `/containers/${id}/start`)).status).toBe(204);
    for (let i = 0; ; i++) {
      const st = await inspect(id);
      if (st.State.Status === 'exited' && st.RestartCount === 1 && st.State.ExitCode === 3) break;
      expect(i, 'the restart that the updated policy makes').toBeLessThan(300);
      await new Promise((r) => setTimeout(r, 100));
    }
    const logs = await svc.request('GET', `/containers/${id}/logs?stdout=1`);
    expect(logs.body.toString('latin1').match(/run\n/g)?.length).toBe(2);
    // Exited: limits for its next start (Docker's 200), refused only where this host cannot enforce them.
    const mem = await svc.request('POST', `/containers/${id}/update`, { Memory: 64 * 1024 * 1024, PidsLimit: 100 });
    expect(mem.status, mem.text).not.toBe(409);
    if (mem.status === 200) {
      expect((await inspect(id)).HostConfig).toMatchObject({ Memory: 64 * 1024 * 1024, PidsLimit: 100 });
      expect((await svc.request('POST', `/containers/${id}/start`)).status).toBe(204);
      expect((await svc.request('POST', `/containers/${id}/wait`)).json()).toMatchObject({ StatusCode: 3 });
    } else {
      expect(mem.status).toBe(500);
      expect(mem.json<{ message: string }>().message).toMatch(/cannot enforce the requested limits: .*memory, pids controllers/);
    }
    await svc.request('DELETE', `/containers/${id}?force=true`);
  });

  it('rename, top, prune and update', async () => {
    const id = await create({ Cmd: ['sleep', '300'] }, 'oldname');
    expect((await svc.request('POST', `/containers/${id}/rename?name=newname`)).status).toBe(204);
    expect((await inspect(id)).Name).toBe('/newname');
    expect((await svc.request('GET', '/containers/oldname/json')).status).toBe(404);
    await create({ Cmd: ['true'] }, 'other');
    expect((await svc.request('POST', `/containers/${id}/rename?name=other`)).status).toBe(409);
    expect(events().some((e) => e.Actor.ID === id && e.Action === 'rename' && e.Actor.Attributes.oldName === '/oldname')).toBe(true);

    expect((await svc.request('GET', `/containers/${id}/top`)).status).toBe(409);
    await svc.request('POST', `/containers/${id}/start`);
    const top = await svc.request('GET', `/containers/${id}/top?ps_args=-o%20pid,args`);
    expect(top.status, top.text).toBe(200);
    const t = top.json<{ Titles: string[]; Processes: string[][] }>();
    expect(t.Titles).toEqual(['PID', 'COMMAND']);
    expect(t.Processes.map((p) => p[1])).toContain('sleep 300');
    const dflt = (await svc.request('GET', `/containers/${id}/top`)).json<{ Titles: string[]; Processes: string[][] }>();
    expect(dflt.Titles).toEqual(expect.arrayContaining(['UID', 'PID', 'PPID', 'CMD']));
    expect(dflt.Processes[0]!.length).toBe(dflt.Titles.length);

    const up = await svc.request('POST', `/containers/${id}/update`, { RestartPolicy: { Name: 'always' } });
    expect(up.status, up.text).toBe(200);
    expect(up.json()).toEqual({ Warnings: [] });
    expect((await inspect(id)).HostConfig.RestartPolicy).toEqual({ Name: 'always', MaximumRetryCount: 0 });
    const mem = await svc.request('POST', `/containers/${id}/update`, { Memory: 64 * 1024 * 1024, PidsLimit: 100 });
    if (mem.status !== 200) {
      // A host that cannot enforce them for this user (hybrid, or v2 not delegated): refused,
      // naming the controllers and the fix.
      expect(mem.status).toBe(500);
      expect(mem.json<{ message: string }>().message).toMatch(/cannot enforce the requested limits: .*memory, pids controllers.*Delegate=/);
    } else {
      expect(mem.status, mem.text).toBe(200);
      expect((await inspect(id)).HostConfig).toMatchObject({ Memory: 64 * 1024 * 1024, PidsLimit: 100 });
    }
    expect((await svc.request('POST', `/containers/${id}/update`, { Memory: 'lots' })).status).toBe(400);

    const gone = await create({ Cmd: ['true'], Labels: { prune: 'yes' } }, 'prunable');
    const kept = await create({ Cmd: ['true'] }, 'unlabelled');
    const pr = await svc.request('POST', `/containers/prune?filters=${encodeURIComponent(JSON.stringify({ label: ['prune=yes'] }))}`);
    expect(pr.status, pr.text).toBe(200);
    expect(pr.json()).toMatchObject({ ContainersDeleted: [gone], SpaceReclaimed: expect.any(Number) });
    expect((await svc.request('GET', `/containers/${kept}/json`)).status).toBe(200);
    const all = await svc.request('POST', '/containers/prune');
    expect(all.json<{ ContainersDeleted: string[] }>().ContainersDeleted).toContain(kept);
    expect((await svc.request('GET', `/containers/${id}/json`)).status).toBe(200);
    await svc.request('DELETE', `/containers/${id}?force=true`);
  });

  it('pause and unpause: frozen through the cgroup freezer, or a clear error naming why and the fix', async () => {
    const id = await create({ Cmd: ['sleep', '300'] }, 'pausable');
    expect((await svc.request('POST', `/containers/${id}/pause`)).status).toBe(409);
    await svc.request('POST', `/containers/${id}/start`);
    const p = await svc.request('POST', `/containers/${id}/pause`);
    const frozen = p.status === 204;
    if (!frozen) {
      // A host where the container gets no cgroup of its own (v1/hybrid; v2 not delegated).
      expect(p.status).toBe(500);
      expect(p.json<{ message: string }>().message).toMatch(/^cannot pause container pausable: it has no cgroup freezer \(.+\): .*(cgroup v2|freezer).*recreate the container$/);
      expect((await inspect(id)).State).toMatchObject({ Status: 'running', Paused: false });
    } else {
      const c = await inspect(id);
      expect(c.State).toMatchObject({ Status: 'paused', Running: true, Paused: true });
      expect((await svc.request('GET', `/containers/json?filters=${encodeURIComponent(JSON.stringify({ status: ['paused'] }))}`)).json<{ Id: string; Status: string }[]>().map((x) => x.Id)).toEqual([id]);
      expect((await svc.request('POST', `/containers/${id}/pause`)).status).toBe(409);
      expect((await svc.request('POST', `/containers/${id}/unpause`)).status).toBe(204);
      expect((await inspect(id)).State).toMatchObject({ Status: 'running', Paused: false });
      expect(events().filter((e) => e.Actor.ID === id).map((e) => e.Action)).toEqual(expect.arrayContaining(['pause', 'unpause']));
    }
    expect((await svc.request('POST', `/containers/${id}/unpause`)).status).toBe(409);
    await svc.request('DELETE', `/containers/${id}?force=1`);
  });

  it('50 concurrent creates with distinct names all succeed', async () => {
    const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => svc.request('POST', `/containers/create?name=many-${i}`, { Image: IMAGE, Cmd: ['true'] })));
    expect(rs.map((r) => r.status)).toEqual(Array(50).fill(201));
    expect(new Set(rs.map((r) => r.json<Created>().Id)).size).toBe(50);
    const listed = (await svc.request('GET', `/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify({ name: ['^many-'] }))}`)).json<unknown[]>();
    expect(listed.length).toBe(50);
    expect((await svc.request('POST', '/containers/prune')).status).toBe(200);
  }, 300_000);

  it('10 concurrent creates with one name: exactly one 201, nine 409; the CLI at the same time cannot win twice either', async () => {
    const rs = await Promise.all(Array.from({ length: 10 }, () => svc.request('POST', '/containers/create?name=contested', { Image: IMAGE, Cmd: ['true'] })));
    expect(rs.map((r) => r.status).sort()).toEqual([201, ...Array(9).fill(409)]);
    const winner = rs.find((r) => r.status === 201)!.json<Created>().Id;
    expect((await inspect('contested')).Id).toBe(winner);
    // The service and CLI processes race for one name: one winner across processes.
    const api = Array.from({ length: 4 }, () => svc.request('POST', '/containers/create?name=across', { Image: IMAGE, Cmd: ['true'] }));
    const cli = Array.from({ length: 4 }, () => env.bg(['create', '--name', 'across', IMAGE, 'true']));
    const [a, c] = await Promise.all([Promise.all(api), Promise.all(cli)]);
    const wins = a.filter((r) => r.status === 201).length + c.filter((r) => r.code === 0).length;
    expect(wins).toBe(1);
    for (const r of a) if (r.status !== 201) expect(r.status).toBe(409);
    for (const r of c) if (r.code !== 0) expect(r.stderr).toMatch(/Conflict\. The container name "\/across" is already in use/);
  }, 300_000);

  it('the CLI records --restart and refuses it with --rm; pause of a stopped container is an error', () => {
    const r = env.b(['create', '--name', 'clirestart', '--restart', 'on-failure:2', IMAGE, 'true']);
    expect(r.code, r.stderr).toBe(0);
    expect(env.b(['inspect', '-f', '{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}', 'clirestart']).stdout.trim()).toBe('on-failure:2');
    const both = env.b(['run', '--rm', '--restart', 'always', IMAGE, 'true']);
    expect(both.code).toBe(125);
    expect(both.stderr).toMatch(/conflicting options: cannot specify both --restart and --rm/);
    const bad = env.b(['create', '--restart', 'sometimes', IMAGE, 'true']);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/invalid restart policy sometimes/);
    const p = env.b(['pause', 'clirestart']);
    expect(p.code).toBe(125);
    expect(p.stderr).toMatch(/is not running/);
  });
});

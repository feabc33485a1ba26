/**
 * The Engine API service itself: its socket, versioned paths, Docker's error bodies, the idle
 * timeout (and streams that hold it off), systemd socket activation, SIGTERM with requests in
 * flight, containers that outlive a stopped or SIGKILLed service, loopback-only TCP. The
 * resources' routes have their own files (api-containers, api-images, api-system, …).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from './helpers';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import { request, startService, waitForSocket, type Service } from './api.helpers';

let env: Env;
let svc: Service;

beforeAll(async () => {
  env = setup('api-service');
  svc = await startService(env);
}, 60_000);

/** Services the tests below start: whatever a failed test left running is killed at the end. */
const started: Service[] = [];
async function tracked(o: Parameters<typeof startService>[1] = {}): Promise<Service> {
  const s = await startService(env, o);
  started.push(s);
  return s;
}

afterAll(async () => {
  await svc?.stop();
  for (const s of started) await s.stop('SIGKILL');
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

/** A GET whose response streams: resolves with the status once the headers are in. */
function openStream(sock: string, p: string): Promise<{ status: number; ended: Promise<'end' | 'aborted'>; close(): void }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: sock, path: p }, (res) => {
      const ended = new Promise<'end' | 'aborted'>((r) => {
        res.on('end', () => r('end'));
        res.on('aborted', () => r('aborted'));
        res.on('error', () => r('aborted'));
      });
      res.resume();
      resolve({ status: res.statusCode ?? 0, ended, close: () => req.destroy() });
    });
    req.on('error', reject);
  });
}

function running(name: string): boolean {
  return env.b(['inspect', '-f', '{{.State.Running}}', name]).stdout.trim() === 'true';
}

function infoCounts(s: Service): Promise<{ Containers: number; ContainersRunning: number }> {
  return s.request('GET', '/v1.41/info').then((r) => r.json());
}

describe('the service across stops and restarts', () => {
  it('keeps a long stream (events) going past --time, then exits idle once it ends', async () => {
    const s = await tracked({ time: 1 });
    const ev = await openStream(s.sock, '/v1.41/events');
    expect(ev.status).toBe(200);
    await new Promise((r) => setTimeout(r, 2500)); // more than the idle time
    expect(s.child.exitCode).toBe(null);
    expect((await s.request('GET', '/_ping')).status).toBe(200);
    ev.close();
    expect(await s.stop('SIGCONT')).toBe(0); // the idle exit
  });

  it('on SIGTERM finishes a request in flight and ends an events stream, refuses new connections, exits 0', async () => {
    const s = await tracked();
    const ev = await openStream(s.sock, '/v1.41/events');
    // A volume create whose body is not all sent yet.
    const body = JSON.stringify({ Name: 'inflight', Labels: { during: 'sigterm' } });
    const conn = net.connect(s.sock);
    await new Promise((r) => conn.once('connect', r));
    let answer = '';
    conn.on('data', (d: Buffer) => (answer += d));
    const closed = new Promise((r) => conn.once('close', r));
    conn.write(`POST /v1.41/volumes/create HTTP/1.1\r\nHost: burrow\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
    // A full round trip on another connection: the service has read what was sent before it.
    expect((await s.request('GET', '/_ping')).status).toBe(200);
    s.child.kill('SIGTERM');
    // The stream ends properly (its last chunk), not cut off.
    expect(await ev.ended).toBe('end');
    expect(s.child.exitCode).toBe(null); // still waiting for the request in flight
    // A new connection is refused (the service no longer accepts).
    const refused = await new Promise<string>((resolve) => {
      const c = net.connect(s.sock);
      c.once('connect', () => (c.destroy(), resolve('connected')));
      c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(['ECONNREFUSED', 'ENOENT']).toContain(refused);
    conn.write(body.slice(10));
    await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 201 Created\r\n/);
    expect(answer).toMatch(/"Name":"inflight"/);
    expect(await s.stop('SIGCONT'), s.stderr()).toBe(0); // no second signal: this waits for the exit
    expect(fs.existsSync(s.sock)).toBe(false);
    expect(fs.existsSync(path.join(env.store, 'volumes', 'inflight', '_data'))).toBe(true);
  });

  it('a service started while the previous one still drains keeps its socket when that one exits', async () => {
    const sock = path.join(env.work, 'handover.sock');
    const first = await tracked({ sock });
    // A request in flight keeps the first service draining after SIGTERM.
    const conn = net.connect(sock);
    await new Promise((r) => conn.once('connect', r));
    let answer = '';
    conn.on('data', (d: Buffer) => (answer += d));
    const closed = new Promise((r) => conn.once('close', r));
    const body = JSON.stringify({ Name: 'handover' });
    conn.write(`POST /volumes/create HTTP/1.1\r\nHost: burrow\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`);
    expect((await first.request('GET', '/_ping')).status).toBe(200);
    first.child.kill('SIGTERM');
    // The first one still answers on the path, so a connection cannot tell when the second one
    // has put its own socket there (bind elsewhere, then rename): its inode can.
    const firstIno = fs.statSync(sock).ino;
    const second = await tracked({ sock });
    for (let i = 0; fs.statSync(sock, { throwIfNoEntry: false })?.ino === firstIno; i++) {
      if (second.child.exitCode !== null || i > 800) throw new Error(`the second service did not take over ${sock}: ${second.stderr()}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    try {
      conn.write(body.slice(5));
      await closed;
      expect(answer).toMatch(/^HTTP\/1\.1 201 /);
      expect(await first.stop('SIGCONT')).toBe(0);
      // The first one's exit left the second one's socket alone.
      expect((await request(sock, 'GET', '/_ping', undefined, { Connection: 'close' })).status).toBe(200);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });

  it('a restarted service sees the containers of the one before; a SIGKILLed one leaves them running for the next', async () => {
    const sock = path.join(env.work, 'restart.sock');
    const services: Service[] = [];
    const start = async () => {
      const s = await tracked({ sock });
      services.push(s);
      return s;
    };
    try {
      const first = await start();
      const r = env.b(['run', '-d', '--name', 'outlives', IMAGE, 'sleep', '600']);
      expect(r.code, r.stderr).toBe(0);
      expect(await infoCounts(first)).toMatchObject({ Containers: 1, ContainersRunning: 1 });
      expect(await first.stop()).toBe(0);
      expect(running('outlives')).toBe(true);
      const second = await start();
      expect(await infoCounts(second)).toMatchObject({ Containers: 1, ContainersRunning: 1 });
      // SIGKILL: nothing is cleaned up, the socket file stays behind.
      expect(await second.stop('SIGKILL')).toBe(137);
      expect(fs.existsSync(sock)).toBe(true);
      expect(running('outlives')).toBe(true);
      const third = await start();
      expect(await infoCounts(third)).toMatchObject({ Containers: 1, ContainersRunning: 1 });
      const df = (await third.request('GET', '/system/df')).json<{ Containers: { Names: string[]; State: string }[] }>();
      expect(df.Containers.map((c) => [c.Names[0], c.State])).toEqual([['/outlives', 'running']]);
      expect(await third.stop()).toBe(0);
    } finally {
      // Whatever failed, no service of this test outlives it.
      for (const s of services) await s.stop('SIGKILL');
      env.b(['rm', '-f', 'outlives']);
    }
  });
});

/** systemd's activation helper (Debian's `systemd` package), for one socket-activated start. */
function socketActivate(): string {
  for (const p of ['/usr/bin/systemd-socket-activate', '/lib/systemd/systemd-socket-activate']) if (fs.existsSync(p)) return p;
  throw new Error('systemd-socket-activate is missing: install the Debian package systemd (.ci/setup does)');
}

describe('systemd socket activation', () => {
  it.each([[[] as string[]], [['fd://']]])('answers on the socket systemd passed (%j), exits idle, leaves the socket to systemd', async (uri) => {
    const sock = path.join(env.work, `activated-${uri.length}.sock`);
    const child = spawn(socketActivate(), ['-l', sock, process.execPath, BIN, '--root', env.store, '--runroot', env.runroot, 'system', 'service', ...uri, '--time', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    try {
      // systemd-socket-activate listens first; the service starts on the first connection.
      for (let i = 0; i < 400 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
      // The file exists from its bind(); connections are refused until its listen() (CI met that gap).
      let r: Awaited<ReturnType<typeof request>> | undefined;
      let t0 = process.hrtime.bigint();
      for (let i = 0; !r; i++) {
        t0 = process.hrtime.bigint();
        r = await request(sock, 'GET', '/v1.41/_ping').catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ECONNREFUSED' || i >= 200) throw e;
          return new Promise<undefined>((res) => setTimeout(() => res(undefined), 25));
        });
      }
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      expect(r.status, err).toBe(200);
      expect(r.text).toBe('OK');
      // The figure the issue asks for: the first request on an activated socket to its answer.
      console.log(`socket activation: first request answered in ${ms.toFixed(0)} ms`);
      expect((await request(sock, 'GET', '/v1.41/version')).json()).toMatchObject({ ApiVersion: '1.41' });
      expect(await exited, err).toBe(0);
      // The socket is systemd's (it listens again for the next start): the service left it.
      expect(fs.statSync(sock).isSocket()).toBe(true);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('fd:// without sockets from systemd is a usage error naming the fix', () => {
    const r = env.b(['system', 'service', 'fd://']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/LISTEN_FDS/);
  });
});

describe('TCP', () => {
  it('serves loopback TCP when asked', async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const child = spawn(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, 'system', 'service', `tcp://127.0.0.1:${port}`, '--time', '0'], { stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    try {
      let r: http.IncomingMessage | undefined;
      let body = '';
      for (let i = 0; i < 400 && !r; i++) {
        r = await new Promise<http.IncomingMessage | undefined>((resolve) => {
          http
            .get({ host: '127.0.0.1', port, path: '/v1.41/_ping' }, (res) => {
              res.on('data', (d: Buffer) => (body += d));
              res.on('end', () => resolve(res));
            })
            .on('error', () => setTimeout(() => resolve(undefined), 50));
        });
      }
      expect(r?.statusCode).toBe(200);
      expect(body).toBe('OK');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it.each(['tcp://0.0.0.0:2375', 'tcp://192.0.2.1:2375', 'tcp://[::]:2375'])('refuses %s without --allow-remote, naming it', (uri) => {
    const r = spawnSync(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, 'system', 'service', uri], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(/refusing to serve the API on/);
    expect(r.stderr).toMatch(/--allow-remote/);
  });
});

// Keeps the helpers' import used when the suite is filtered.
void waitForSocket;

/**
 * The network owner of user-defined networks (issue #16), driven directly: `burrow-runtime
 * network-owner` started as the CLI starts it (detached, status on fd 3), "containers" that are
 * plain processes with a network namespace of their own (rootless: made in the owner's user
 * namespace U, as a container on these networks joins it), attached over the owner's socket.
 * Proves: two endpoints of one network reach each other (ICMP, TCP), a third on another network
 * cannot, an internal network has no way out while a non-internal one reaches a server on the
 * host's own address through slirp4netns, connect/disconnect at run time, closing a lease
 * detaches, the owner exits with its last lease and leaves no slirp4netns, and a `run` whose
 * container is on a network records the owner's death (kill -9) in its lost file. Runs as root
 * and as the unprivileged test user.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBundle, makeRootfs, ownSubuid, RUNTIME } from '../harness/bundle.mjs';
import type { NetworkDef, OwnerReply } from '../../ts/network/user';
import { IS_ROOT } from './helpers';
import { alive, sleep } from './lifecycle.helpers';

const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd} || test -x /usr/sbin/${cmd}`]).status === 0;
const READY = have('slirp4netns') && have('iptables-restore') && have('nsenter') && fs.existsSync('/bin/busybox');

// The protocol's shapes, as the CLI's client has them (the Rust side's mirrors).
type Reply = OwnerReply;

/** One connection to the owner: JSON lines, one reply per request. */
class Conn {
  private buf = '';
  private waiting: ((line: string) => void)[] = [];
  readonly closed: Promise<void>;
  constructor(private sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        this.waiting.shift()?.(line);
      }
    });
    this.closed = new Promise((r) => sock.on('close', () => r()));
  }
  static open(dir: string): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(path.join(dir, 'owner.sock'), () => resolve(new Conn(s)));
      s.once('error', reject);
    });
  }
  request(req: object): Promise<Reply> {
    return new Promise((resolve) => {
      this.waiting.push((l) => resolve(JSON.parse(l) as Reply));
      this.sock.write(`${JSON.stringify(req)}\n`);
    });
  }
  close(): void {
    this.sock.destroy();
  }
}

async function until(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function children(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const comm = (pid: number) => {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
};

/** The store's mapping for the current user, as the CLI passes it (none as root). */
function mapArgs(): string[] {
  if (IS_ROOT) return [];
  const u = ownSubuid('/etc/subuid');
  const g = ownSubuid('/etc/subgid');
  if (!u || !g) throw new Error('the test user needs ranges in /etc/subuid and /etc/subgid');
  const uid = process.getuid!();
  const gid = process.getgid!();
  return ['--uid-map', `0:${uid}:1`, '--uid-map', `1:${u.start}:${u.count}`, '--gid-map', `0:${gid}:1`, '--gid-map', `1:${g.start}:${g.count}`];
}

interface Owner {
  pid: number;
  child: ChildProcess;
  exited: Promise<number | null>;
}

/** Starts the owner as the CLI does and waits for its first report. */
async function startOwner(dir: string, extra: string[] = []): Promise<Owner> {
  const log = fs.openSync(path.join(dir, 'owner.log'), 'a');
  const child = spawn(RUNTIME as string, ['--status-fd', '3', 'network-owner', '--dir', dir, ...mapArgs(), ...extra], { stdio: ['ignore', log, log, 'pipe'], detached: true });
  fs.closeSync(log);
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const status = child.stdio[3] as NodeJS.ReadableStream;
  let text = '';
  await new Promise<void>((resolve) => {
    status.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\n')) resolve();
    });
    status.on('end', () => resolve());
  });
  const rep = JSON.parse(text.split('\n')[0] || '{}') as { pid?: number; error?: string };
  if (!rep.pid) throw new Error(`the owner did not start: ${text} ${fs.readFileSync(path.join(dir, 'owner.log'), 'utf8')}`);
  return { pid: rep.pid, child, exited };
}

/** A "container": a process with a network namespace of its own (rootless: made in U). */
async function container(owner: Owner): Promise<{ pid: number; kill: () => void }> {
  const cmd = IS_ROOT ? ['unshare', '--net', '--', 'sleep', '1000'] : ['nsenter', `--user=/proc/${owner.pid}/ns/user`, '--preserve-credentials', 'unshare', '--net', '--', 'sleep', '1000'];
  const c = spawn(cmd[0]!, cmd.slice(1), { stdio: 'ignore' });
  const pid = c.pid!;
  const ours = fs.readlinkSync('/proc/self/ns/net');
  await until(() => {
    try {
      return fs.readlinkSync(`/proc/${pid}/ns/net`) !== ours && comm(pid) === 'sleep';
    } catch {
      return false;
    }
  }, 'the container namespace');
  return { pid, kill: () => c.kill('SIGKILL') };
}

/** Runs `cmd` in the container's network namespace (rootless: through U). */
function inNs(pid: number, cmd: string[], input?: string): Promise<{ code: number; out: string }> {
  const args = [...(IS_ROOT ? [] : ['-U', '--preserve-credentials']), '-n', '-t', String(pid), ...cmd];
  return new Promise((resolve) => {
    const p = execFile('nsenter', args, { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
    p.stdin?.on('error', () => undefined);
    if (input !== undefined) p.stdin?.end(input);
  });
}

let seq = 0;
function network(name: string, third: number, internal = false): NetworkDef {
  const id = crypto.randomBytes(32).toString('hex');
  return { id, name, bridge: `bw${id.slice(0, 12)}`, subnet: `172.29.${third}.0/24`, gateway: `172.29.${third}.1`, internal, mtu: 65520 };
}
function endpoint(n: NetworkDef, host: number, ifname = 'eth0') {
  const ip = n.subnet.replace('0/24', String(host));
  const mac = `02:42:${ip
    .split('.')
    .map((b) => Number(b).toString(16).padStart(2, '0'))
    .join(':')}`;
  const ip6 = n.subnet6 ? n.subnet6.replace('::/64', `::${host}`) : undefined;
  return { network: n, ip, ...(ip6 ? { ip6 } : {}), mac, ifname, aliases: [`alias${host}`], defaultRoute: !n.internal };
}
function ref(name: string) {
  return { id: crypto.randomBytes(32).toString('hex'), name: `${name}-${process.pid}-${++seq}` };
}

/** The host's own non-loopback IPv4 address: reachable from slirp4netns, which refuses loopback. */
function hostAddress(): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

const HTTP_GET = 'GET /index.html HTTP/1.0\r\n\r\n';

/** A resolver on the host's loopback that answers every A question with 192.0.2.77. */
async function upstream(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  s.on('message', (q, from) => {
    // Header: id, flags (response, recursion available), 1 question, 1 answer.
    let end = 12;
    while (q[end] !== 0) end += q[end]! + 1;
    const question = q.subarray(12, end + 5);
    const head = Buffer.from([q[0]!, q[1]!, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 77]);
    s.send(Buffer.concat([head, question, answer]), from.port, from.address);
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

describe.runIf(READY)(`the network owner as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  let dir: string;
  let owner: Owner;
  const procs: { kill: () => void }[] = [];
  const conns: Conn[] = [];
  // IPv6 too (`network create --ipv6`): addresses on the bridge and the endpoints.
  const A = { ...network('neta', 11), subnet6: 'fd29:11::/64', gateway6: 'fd29:11::1' };
  const B = network('netb', 12);
  const I = network('neti', 13, true);

  let dns: dgram.Socket;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-netowner-'));
    dns = await upstream();
    owner = await startOwner(dir, ['--dns-upstream', `127.0.0.1:${dns.address().port}`]);
  });
  afterAll(async () => {
    dns?.close();
    for (const c of conns) c.close();
    for (const p of procs) p.kill();
    if (owner && alive(owner.pid)) process.kill(owner.pid, 'SIGTERM');
    if (owner) await owner.exited;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function attach(n: NetworkDef, host: number, name: string) {
    const c = await container(owner);
    procs.push(c);
    const conn = await Conn.open(dir);
    conns.push(conn);
    const r = ref(name);
    const rep = await conn.request({ op: 'attach', pid: c.pid, container: r, endpoints: [endpoint(n, host)], dns: [] });
    expect(rep, JSON.stringify(rep)).toMatchObject({ ok: true });
    return { ...c, conn, ref: r, ip: endpoint(n, host).ip };
  }

  let c1: Awaited<ReturnType<typeof attach>>;
  let c2: Awaited<ReturnType<typeof attach>>;
  let c3: Awaited<ReturnType<typeof attach>>;

  it('answers hold with its user namespace (rootless) and writes its record', async () => {
    const conn = await Conn.open(dir);
    conns.push(conn);
    const rep = await conn.request({ op: 'hold' });
    expect(rep.ok).toBe(true);
    expect(rep.pid).toBe(owner.pid);
    if (IS_ROOT) expect(rep.userns).toBeUndefined();
    else expect(rep.userns).toBe(`/proc/${owner.pid}/ns/user`);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'owner.json'), 'utf8')).pid).toBe(owner.pid);
    const slirp = children(owner.pid).filter((p) => comm(p) === 'slirp4netns');
    expect(slirp.length).toBe(1);
  });

  it('two containers on one network reach each other by address (ICMP and TCP); one on another network reaches neither', async () => {
    c1 = await attach(A, 2, 'c1');
    c2 = await attach(A, 3, 'c2');
    c3 = await attach(B, 2, 'c3');
    const st = await c1.conn.request({ op: 'status' });
    const a = st.networks!.find((n) => n.id === A.id)!;
    expect(a.endpoints.map((e) => e.ip).sort()).toEqual([c1.ip, c2.ip]);
    expect(a.bridge).toBe(A.bridge);

    const addr = await inNs(c1.pid, ['busybox', 'ip', '-4', 'addr', 'show', 'eth0']);
    expect(addr.out).toContain(`inet ${c1.ip}/24`);
    expect((await inNs(c1.pid, ['busybox', 'ip', 'route'])).out).toContain(`default via ${A.gateway}`);
    expect((await inNs(c1.pid, ['busybox', 'ip', 'link', 'show', 'eth0'])).out).toContain(endpoint(A, 2).mac);

    expect((await inNs(c1.pid, ['busybox', 'ping', '-c', '1', '-W', '5', c2.ip])).code).toBe(0);
    expect((await inNs(c1.pid, ['busybox', 'ip', '-6', 'addr', 'show', 'eth0'])).out).toContain('inet6 fd29:11::2/64');
    const six = await inNs(c1.pid, ['busybox', 'ping6', '-c', '1', '-W', '5', 'fd29:11::3']);
    expect(six.code, six.out).toBe(0);
    // TCP: busybox httpd in c2, a request from c1.
    const www = path.join(dir, 'www');
    fs.mkdirSync(www, { recursive: true });
    fs.writeFileSync(path.join(www, 'index.html'), 'from c2\n');
    fs.chmodSync(dir, 0o755);
    const httpd = spawn('nsenter', [...(IS_ROOT ? [] : ['-U', '--preserve-credentials']), '-n', '-t', String(c2.pid), 'busybox', 'httpd', '-f', '-p', '8080', '-h', www], {
      stdio: 'ignore',
    });
    procs.push({ kill: () => httpd.kill('SIGKILL') });
    let got = '';
    for (let i = 0; i < 50 && !got.includes('from c2'); i++) {
      got = (await inNs(c1.pid, ['busybox', 'nc', c2.ip, '8080'], HTTP_GET)).out;
      if (!got.includes('from c2')) await sleep(100);
    }
    expect(got).toContain('from c2');

    // c3 (network B) reaches its own gateway but not network A.
    expect((await inNs(c3.pid, ['busybox', 'ping', '-c', '1', '-W', '5', B.gateway])).code).toBe(0);
    expect((await inNs(c3.pid, ['busybox', 'ping', '-c', '1', '-W', '2', c2.ip])).code).not.toBe(0);
    expect((await inNs(c3.pid, ['busybox', 'nc', '-w', '2', c2.ip, '8080'], HTTP_GET)).out).not.toContain('from c2');
    // Nor does A reach B.
    expect((await inNs(c1.pid, ['busybox', 'ping', '-c', '1', '-W', '2', c3.ip])).code).not.toBe(0);
  });

  it('each network\'s resolver answers its containers\' names and aliases, not another network\'s, and forwards the rest to the host\'s loopback resolver', async () => {
    const look = (pid: number, name: string, server: string) => inNs(pid, ['busybox', 'nslookup', name, server]);
    expect((await look(c1.pid, c2.ref.name, A.gateway)).out).toContain(c2.ip);
    expect((await look(c1.pid, 'alias3', A.gateway)).out).toContain(c2.ip);
    expect((await look(c1.pid, c2.ref.id.slice(0, 12), A.gateway)).out).toContain(c2.ip);
    // c3 on network B asks its own gateway: A's names are not there (forwarded, the upstream
    // answers its fixed address, never c2's).
    expect((await look(c3.pid, c2.ref.name, B.gateway)).out).not.toContain(c2.ip);
    expect((await look(c3.pid, c3.ref.name, B.gateway)).out).toContain(c3.ip);
    // A name outside: forwarded by the owner, which stays in the host's network namespace.
    expect((await look(c1.pid, 'example.test', A.gateway)).out).toContain('192.0.2.77');
  });

  const outside = hostAddress();
  it.runIf(outside !== undefined)('a network reaches a server on the host\'s address through slirp4netns; an internal one has no way out', async () => {
    const server = http.createServer((_q, r) => r.end('outside\n'));
    await new Promise<void>((r) => server.listen(0, outside, () => r()));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const get = `GET / HTTP/1.0\r\nHost: x\r\n\r\n`;
      const out = await inNs(c1.pid, ['busybox', 'nc', '-w', '10', outside!, String(port)], get);
      expect(out.out).toContain('outside');
      const ci = await attach(I, 2, 'ci');
      expect((await inNs(ci.pid, ['busybox', 'ip', 'route'])).out).not.toContain('default');
      // No default route, and none through its gateway either (the owner forwards nothing).
      expect((await inNs(ci.pid, ['busybox', 'nc', '-w', '2', outside!, String(port)], get)).out).not.toContain('outside');
      await inNs(ci.pid, ['busybox', 'ip', 'route', 'add', 'default', 'via', I.gateway]);
      expect((await inNs(ci.pid, ['busybox', 'nc', '-w', '2', outside!, String(port)], get)).out).not.toContain('outside');
      // Its gateway (the resolver's address) is there.
      expect((await inNs(ci.pid, ['busybox', 'ping', '-c', '1', '-W', '5', I.gateway])).code).toBe(0);
      ci.conn.close();
    } finally {
      server.close();
    }
  });

  it('connect and disconnect one endpoint of an attached container at run time', async () => {
    const other = await Conn.open(dir);
    conns.push(other);
    const rep = await other.request({ op: 'connect', container: c3.ref.id, endpoint: endpoint(A, 4, 'eth1') });
    expect(rep, JSON.stringify(rep)).toMatchObject({ ok: true, interfaces: [{ ifname: 'eth1', ip: endpoint(A, 4).ip }] });
    expect((await inNs(c3.pid, ['busybox', 'ping', '-c', '1', '-W', '5', c1.ip])).code).toBe(0);
    expect((await other.request({ op: 'disconnect', container: c3.ref.name, network: A.id })).ok).toBe(true);
    expect((await inNs(c3.pid, ['busybox', 'ip', 'link', 'show', 'eth1'])).code).not.toBe(0);
    expect((await inNs(c3.pid, ['busybox', 'ping', '-c', '1', '-W', '2', c1.ip])).code).not.toBe(0);
    const bad = await other.request({ op: 'disconnect', container: c3.ref.id, network: A.id });
    expect(bad).toMatchObject({ ok: false, code: 'ENET_OWNER' });
    other.close();
  });

  it('closing an attach connection detaches the container; the last lease gone, the owner leaves and takes slirp4netns along', async () => {
    const slirp = children(owner.pid).filter((p) => comm(p) === 'slirp4netns');
    expect(slirp.length).toBe(1);
    c2.conn.close();
    await until(() => spawnSync('nsenter', [...(IS_ROOT ? [] : ['-U', '--preserve-credentials']), '-n', '-t', String(c2.pid), 'busybox', 'ip', 'link', 'show', 'eth0']).status !== 0, 'c2\'s eth0 to go');
    const st = await c1.conn.request({ op: 'status' });
    expect(st.networks!.find((n) => n.id === A.id)!.endpoints.map((e) => e.name)).toEqual([c1.ref.name]);
    expect((await inNs(c1.pid, ['busybox', 'ping', '-c', '1', '-W', '2', c2.ip])).code).not.toBe(0);
    for (const c of conns) c.close();
    expect(await owner.exited).toBe(0);
    await until(() => slirp.every((p) => !alive(p)), 'slirp4netns to go');
    expect(fs.existsSync(path.join(dir, 'owner.sock'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'owner.json'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'start.lock'))).toBe(false);
  });
});

describe.runIf(READY)(`a container's lease (burrow-runtime run --network-config with a bridge) as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  let base: string;
  beforeAll(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-netowner-run-'));
  });
  afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

  it.each(['run', 'monitor'] as const)('%s: a published port reaches the container through the forwarder; kill -9 of the owner under it: the lost file (and the monitor\'s event)', async (via) => {
    const dir = path.join(base, via);
    fs.mkdirSync(dir);
    const owner = await startOwner(dir);
    const N = network('netrun', 21);
    const hold = await Conn.open(dir);
    expect((await hold.request({ op: 'hold' })).ok).toBe(true);
    const bundle = path.join(dir, 'bundle');
    makeRootfs(bundle);
    makeBundle(bundle, {
      args: ['sh', '-c', 'echo published > /tmp/index.html && exec httpd -f -p 8080 -h /tmp'],
      edit: (c: { linux: { namespaces: { type: string; path?: string }[]; uidMappings?: unknown; gidMappings?: unknown } }) => {
        c.linux.namespaces = c.linux.namespaces.filter((n) => n.type !== 'network');
        c.linux.namespaces.push({ type: 'network' });
        if (!IS_ROOT) {
          // A container on user-defined networks joins the owner's user namespace U.
          c.linux.namespaces = c.linux.namespaces.map((n) => (n.type === 'user' ? { type: 'user', path: `/proc/${owner.pid}/ns/user` } : n));
          delete c.linux.uidMappings;
          delete c.linux.gidMappings;
        }
      },
    });
    const lost = path.join(dir, 'lost.json');
    const ctr = ref('run');
    const cfg = path.join(dir, 'net.json');
    const netState = path.join(dir, 'net-state.json');
    // A published port too: the forwarder's sockets are made in the container's namespaces
    // (rootless: through U, which the container joined).
    const ports = [{ hostIp: '127.0.0.1', hostPort: 0, containerPort: 8080, protocol: 'tcp' }];
    fs.writeFileSync(cfg, JSON.stringify({ ports, stateFile: netState, bridge: { ownerDir: dir, container: ctr, endpoints: [endpoint(N, 2)], lostFile: lost } }));
    const state = path.join(dir, 'state');
    const out = fs.openSync(path.join(dir, 'run.out'), 'w');
    const events = path.join(dir, 'events.jsonl');
    const mdir = path.join(dir, 'monitor');
    fs.mkdirSync(mdir);
    const args =
      via === 'run'
        ? ['--root', state, 'run', '--network-config', cfg, '--bundle', bundle, ctr.id]
        : ['--root', state, 'monitor', '--network-config', cfg, '--bundle', bundle, '--dir', mdir, '--events-file', events, ctr.id];
    const run = spawn(RUNTIME as string, args, { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    const runExit = new Promise<number | null>((r) => run.on('exit', (c) => r(c)));
    try {
      await until(() => fs.existsSync(path.join(state, ctr.id)), 'the container');
      let st: Reply = { ok: false };
      for (let i = 0; i < 300 && !(st.networks ?? []).some((n) => n.endpoints.some((e) => e.container === ctr.id)); i++) {
        st = await hold.request({ op: 'status' });
        await sleep(20);
      }
      expect(st.networks!.find((n) => n.id === N.id)!.endpoints).toEqual([{ container: ctr.id, name: ctr.name, ip: endpoint(N, 2).ip }]);
      const init = JSON.parse(spawnSync(RUNTIME as string, ['--root', state, 'state', ctr.id], { encoding: 'utf8' }).stdout).pid as number;
      expect((await inNs(init, ['busybox', 'ping', '-c', '1', '-W', '5', N.gateway])).code).toBe(0);
      const hostPort = (JSON.parse(fs.readFileSync(netState, 'utf8')) as { ports: { hostPort: number }[] }).ports[0]!.hostPort;
      let body = '';
      for (let i = 0; i < 100 && !body.includes('published'); i++) {
        body = await new Promise<string>((resolve) => {
          http.get({ host: '127.0.0.1', port: hostPort, path: '/index.html' }, (res) => {
            let b = '';
            res.on('data', (d: Buffer) => (b += d.toString()));
            res.on('end', () => resolve(b));
          }).on('error', () => resolve(''));
        });
        if (!body.includes('published')) await sleep(50);
      }
      expect(body).toBe('published\n');
      expect(fs.existsSync(lost)).toBe(false);
      process.kill(owner.pid, 'SIGKILL');
      await owner.exited;
      await until(() => fs.existsSync(lost), 'the lost file');
      const rec = JSON.parse(fs.readFileSync(lost, 'utf8')) as { at: string; networks: string[] };
      expect(rec.networks).toEqual([N.name]);
      expect(Number.isNaN(Date.parse(rec.at))).toBe(false);
      // The container runs on (cut off, and said so).
      expect(alive(init)).toBe(true);
      if (via === 'monitor') {
        await until(() => fs.existsSync(events) && fs.readFileSync(events, 'utf8').includes('"network"'), 'the event');
        const ev = fs.readFileSync(events, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { Type: string; Action: string; Actor: { ID: string; Attributes: Record<string, string> } });
        expect(ev.find((e) => e.Type === 'network')).toMatchObject({ Action: 'disconnect', Actor: { ID: N.id, Attributes: { container: ctr.id, name: N.name } } });
      }
    } finally {
      hold.close();
      spawnSync(RUNTIME as string, ['--root', state, 'kill', ctr.id, 'KILL']);
      await runExit;
      spawnSync(RUNTIME as string, ['--root', state, 'delete', '--force', ctr.id]);
    }
  });
});

describe.runIf(READY)(`the network owner's own end as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  let base: string;
  beforeAll(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-netowner-end-'));
  });
  afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

  async function ended(dir: string, owner: Owner, slirp: number[]): Promise<void> {
    expect(await owner.exited).toBe(0);
    await until(() => slirp.every((p) => !alive(p)), 'slirp4netns to go');
    for (const f of ['owner.sock', 'owner.json', 'start.lock']) expect(fs.existsSync(path.join(dir, f)), f).toBe(false);
  }

  it('SIGTERM under a lease: it leaves at once, slirp4netns with it', async () => {
    const dir = fs.mkdtempSync(path.join(base, 'term-'));
    const owner = await startOwner(dir);
    const conn = await Conn.open(dir);
    expect((await conn.request({ op: 'hold' })).ok).toBe(true);
    const slirp = children(owner.pid).filter((p) => comm(p) === 'slirp4netns');
    expect(slirp.length).toBe(1);
    process.kill(owner.pid, 'SIGTERM');
    await ended(dir, owner, slirp);
    await conn.closed;
  });

  it('nobody takes a lease after it started: it leaves by itself', async () => {
    const dir = fs.mkdtempSync(path.join(base, 'idle-'));
    const owner = await startOwner(dir);
    const slirp = children(owner.pid).filter((p) => comm(p) === 'slirp4netns');
    expect(slirp.length).toBe(1);
    // A status request is no lease.
    const conn = await Conn.open(dir);
    expect((await conn.request({ op: 'status' })).ok).toBe(true);
    await ended(dir, owner, slirp);
    conn.close();
  });

  it('its directory removed under it: the last lease gone, it still leaves (nobody could reach it any more)', async () => {
    const dir = fs.mkdtempSync(path.join(base, 'gone-'));
    const owner = await startOwner(dir);
    const conn = await Conn.open(dir);
    expect((await conn.request({ op: 'hold' })).ok).toBe(true);
    const slirp = children(owner.pid).filter((p) => comm(p) === 'slirp4netns');
    fs.rmSync(dir, { recursive: true, force: true });
    conn.close();
    expect(await owner.exited).toBe(0);
    await until(() => slirp.every((p) => !alive(p)), 'slirp4netns to go');
  }, 30_000);

  const outside = hostAddress();
  it.runIf(have('pasta') && outside !== undefined)('with pasta as the outbound helper, a network reaches the host\'s address', async () => {
    const dir = fs.mkdtempSync(path.join(base, 'pasta-'));
    const owner = await startOwner(dir, ['--helper', 'pasta']);
    const server = http.createServer((_q, r) => r.end('outside\n'));
    await new Promise<void>((r) => server.listen(0, outside, () => r()));
    const c = await container(owner);
    const conn = await Conn.open(dir);
    try {
      expect(children(owner.pid).map(comm).join(' ')).toMatch(/pasta|passt/);
      const n = network('netp', 31);
      const rep = await conn.request({ op: 'attach', pid: c.pid, container: ref('p'), endpoints: [endpoint(n, 2)], dns: [] });
      expect(rep, JSON.stringify(rep)).toMatchObject({ ok: true });
      const port = (server.address() as net.AddressInfo).port;
      // wget, not nc: through pasta, nc never saw the server's close (it got the answer).
      const out = await inNs(c.pid, ['busybox', 'wget', '-q', '-O', '-', `http://${outside!}:${port}/`]);
      expect(out.out).toContain('outside');
    } finally {
      conn.close();
      c.kill();
      server.close();
    }
    expect(await owner.exited).toBe(0);
  });

  it('a start lock held by a live process keeps it from leaving until released', async () => {
    const dir = fs.mkdtempSync(path.join(base, 'lock-'));
    const owner = await startOwner(dir);
    const conn = await Conn.open(dir);
    expect((await conn.request({ op: 'hold' })).ok).toBe(true);
    // A client between "is an owner there?" and its lease holds the lock (withLock's format).
    fs.writeFileSync(path.join(dir, 'start.lock'), String(process.pid));
    conn.close();
    await conn.closed;
    const late = await Conn.open(dir);
    const rep = await late.request({ op: 'hold' });
    expect(rep).toMatchObject({ ok: true, pid: owner.pid });
    fs.rmSync(path.join(dir, 'start.lock'));
    late.close();
    const slirp = children(owner.pid).filter((p) => comm(p) === 'slirp4netns');
    await ended(dir, owner, slirp);
  });
});

/**
 * Networking without privileges, as a user sees it: outbound through slirp4netns and pasta (to a
 * server this test runs on the host's loopback, reachable only when allowed), the interfaces of
 * each mode, published TCP and UDP ports through burrow's forwarder and slirp4netns's own handler,
 * random ports, a taken port, /etc/resolv.conf and /etc/hosts, inspect, and teardown: after rm -f,
 * a killed monitor, a killed runtime or a crashed container, no helper and no forwarder is left
 * (checked in /proc and by binding the ports again). Loopback only. Runs as root and as the
 * unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hostGateway } from '../harness/net.mjs';
import { burrow, IS_ROOT, ROOT } from './helpers';
import { alive, cmdline, IMAGE, ownerPid, ppidOf, setup, sleep, waitFor, type Env } from './lifecycle.helpers';
import { hostProcess, hostServer } from './host-server';

const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const HAVE_SLIRP = have('slirp4netns');
const HAVE_PASTA = have('pasta');
const EXPOSED = 'net-exposed';

let env: Env;
/** Helper processes seen during the tests: none may be alive at the end. */
const helpers = new Set<number>();
beforeAll(() => {
  env = setup('network');
  const r = env.b(['import', path.join(env.work, 'busybox.tar.gz'), EXPOSED, '-c', 'CMD ["sh"]', '-c', 'EXPOSE 80 7000/udp']);
  if (r.code !== 0) throw new Error(`import: ${r.stderr}`);
});
afterEach(() => {
  env.cleanup();
  for (const pid of helpers) expect(alive(pid), `helper ${pid} (${cmdline(pid)}) outlived its container`).toBe(false);
});
afterAll(() => env?.dispose());

const b = (args: string[], opts?: { input?: string; timeout?: number }) => env.b(args, opts);
const inspect = (ref: string) => env.inspect(ref);
const runD = (...args: string[]) => env.runD(...args);
const dirOf = (id: string) => path.join(env.store, 'containers', id);

/** The helper of a running container, from what its network owner recorded; checked in /proc. */
function helperOf(id: string, name: 'slirp4netns' | 'pasta'): number {
  const pid = inspect(id).NetworkSettings.HelperPid as number;
  expect(pid).toBeGreaterThan(0);
  // pasta re-executes itself as passt.avx2 where the CPU has AVX2 (same process).
  expect(fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).toMatch(name === 'pasta' ? /^(pasta|passt)/ : /^slirp4netns$/);
  helpers.add(pid);
  return pid;
}

/** Every slirp4netns or pasta process whose target is this init pid (its last arguments). */
function helpersOfInit(init: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || !alive(Number(d))) continue;
    const argv = cmdline(Number(d)).split(' ');
    if (/(^|\/)(slirp4netns|pasta)$/.test(argv[0] ?? '') && argv.includes(String(init))) out.push(Number(d));
  }
  return out;
}

async function freePort(kind: 'tcp' | 'udp' = 'tcp'): Promise<number> {
  if (kind === 'udp') {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    const p = s.address().port;
    s.close();
    return p;
  }
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

/** Whether a host port can be bound on every address (nothing, our forwarder included, holds it). */
async function portFree(port: number): Promise<boolean> {
  const s = net.createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(port, () => s.close(() => resolve(true)));
  });
}

/** Processes holding a socket that listens on TCP `port` in our (the host's) network namespace. */
function listenersOf(port: number): number[] {
  const inodes = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(f, 'utf8').split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c[3] === '0A' && parseInt(c[1]?.split(':')[1] ?? '', 16) === port) inodes.add(`socket:[${c[9]}]`);
    }
  }
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${d}/fd`);
    } catch {
      continue; // not ours to read, or gone
    }
    if (fds.some((f) => { try { return inodes.has(fs.readlinkSync(`/proc/${d}/fd/${f}`)); } catch { return false; } })) out.push(Number(d));
  }
  return out;
}

/** GET with retries while the container's server starts; the body, or throws. */
async function get(url: string, tries = 100): Promise<string> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
      return await r.text();
    } catch (err) {
      last = err;
      await sleep(50);
    }
  }
  throw new Error(`GET ${url}: ${String(last)}`);
}

const HTTPD = ['sh', '-c', 'mkdir -p /www && echo "page from $(hostname)" > /www/index.html && exec httpd -f -p 80 -h /www'];

describe.skipIf(!HAVE_SLIRP)(`slirp4netns networking as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('is the default: tap0 at MTU 65520, the helper owned by the monitor, DNS through slirp4netns', () => {
    const r = b(['run', '--rm', IMAGE, 'sh', '-c', 'cat /proc/net/dev; cat /sys/class/net/tap0/mtu; cat /etc/resolv.conf']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^\s*tap0:/m);
    expect(r.stdout).toMatch(/^65520$/m);
    const host = fs.readFileSync('/etc/resolv.conf', 'utf8');
    if (!/^nameserver\s+127\./m.test(host)) expect(r.stdout).toMatch(/^nameserver 10\.0\.2\.3$/m);
    const id = runD(IMAGE, 'sleep', '60');
    const helper = helperOf(id, 'slirp4netns');
    const monitor = (JSON.parse(fs.readFileSync(path.join(dirOf(id), 'monitor.json'), 'utf8')) as { pid: number }).pid;
    expect(ppidOf(helper)).toBe(monitor);
  });

  it("reaches the host's loopback through 10.0.2.2 only with allow_host_loopback", async () => {
    const srv = await hostServer('hello from the host');
    try {
      const ok = await env.bg(['run', '--rm', '--network', 'slirp4netns:allow_host_loopback=true', IMAGE, 'sh', '-c', `wget -q -O- http://10.0.2.2:${srv.port}/ && wget -q -O- http://host.containers.internal:${srv.port}/`]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stdout).toBe('hello from the hosthello from the host');
      expect(srv.hits()).toHaveLength(2);
      const refused = await env.bg(['run', '--rm', IMAGE, 'wget', '-q', '-O-', `http://10.0.2.2:${srv.port}/`]);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/can't connect|unreachable|refused/i);
      expect(srv.hits()).toHaveLength(2);
      // /etc/hosts names the host by its own address, not the gateway, when loopback is not allowed.
      const hosts = b(['run', '--rm', IMAGE, 'cat', '/etc/hosts']).stdout;
      expect(hosts).not.toMatch(/10\.0\.2\.2/);
    } finally {
      srv.stop();
    }
  });

  it('--network none has only lo; host sees the host\'s interfaces; container:NAME shares a namespace', () => {
    const names = (text: string) => text.split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter(Boolean).sort();
    expect(names(b(['run', '--rm', '--network', 'none', IMAGE, 'cat', '/proc/net/dev']).stdout)).toEqual(['lo']);
    expect(names(b(['run', '--rm', '--network', 'host', IMAGE, 'cat', '/proc/net/dev']).stdout)).toEqual(names(fs.readFileSync('/proc/net/dev', 'utf8')));
    const a = runD('--name', 'net-a', IMAGE, 'sleep', '60');
    const pid = inspect(a).State.Pid as number;
    const r = b(['run', '--rm', '--network', 'container:net-a', IMAGE, 'sh', '-c', 'readlink /proc/self/ns/net; cat /proc/net/dev']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(fs.readlinkSync(`/proc/${pid}/ns/net`));
    expect(r.stdout).toMatch(/^\s*tap0:/m);
    // One helper for the shared namespace: the joining container starts none.
    expect(helpersOfInit(pid)).toHaveLength(1);
    // Sharing with a container on the host's network is the host's network.
    runD('--name', 'net-h', '--network', 'host', IMAGE, 'sleep', '60');
    const viaHost = b(['run', '--rm', '--network', 'container:net-h', IMAGE, 'cat', '/proc/net/dev']);
    expect(viaHost.code, viaHost.stderr).toBe(0);
    expect(names(viaHost.stdout)).toEqual(names(fs.readFileSync('/proc/net/dev', 'utf8')));
    const stopped = b(['run', '--rm', '--network', 'container:no-such', IMAGE, 'true']);
    expect(stopped.code).toBe(125);
    expect(stopped.stderr).toMatch(/no such container/);
  });

  it('-p publishes a TCP port on IPv4 and IPv6; -p PORT gets a free one that `port` reports', async () => {
    const hp = await freePort();
    const id = runD('-p', `${hp}:80`, '-p', '80', IMAGE, ...HTTPD);
    expect(await get(`http://127.0.0.1:${hp}/`)).toMatch(/^page from /);
    expect(await get(`http://[::1]:${hp}/`)).toMatch(/^page from /);
    const port = b(['port', id]);
    expect(port.code, port.stderr).toBe(0);
    const lines = port.stdout.trim().split('\n');
    expect(lines).toContain(`80/tcp -> 0.0.0.0:${hp}`);
    const random = lines.map((l) => /0\.0\.0\.0:(\d+)$/.exec(l)?.[1]).filter((p) => p && Number(p) !== hp);
    expect(random).toHaveLength(1);
    expect(await get(`http://127.0.0.1:${random[0]}/`)).toMatch(/^page from /);
    expect(b(['port', id, '80']).stdout).toContain(`0.0.0.0:${hp}\n`);
    const none = b(['port', id, '81']);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/no public port '81\/tcp'/);
    expect(b(['ps']).stdout).toContain(`0.0.0.0:${hp}->80/tcp`);
    // What was asked and what was bound, as Docker shows them.
    const info = inspect(id);
    expect(info.HostConfig.PortBindings['80/tcp']).toEqual([{ HostIp: '', HostPort: String(hp) }, { HostIp: '', HostPort: '' }]);
    expect(info.NetworkSettings.Ports['80/tcp']).toContainEqual({ HostIp: '0.0.0.0', HostPort: String(hp) });
    expect(info.NetworkSettings.Ports['80/tcp']).toContainEqual({ HostIp: '::', HostPort: String(hp) });
    expect(info.NetworkSettings).toMatchObject({ IPAddress: '10.0.2.100', Gateway: '10.0.2.2', IPPrefixLen: 24, SandboxKey: `/proc/${info.State.Pid}/ns/net` });
    expect(info.Config.ExposedPorts).toHaveProperty('80/tcp');
  });

  it('a UDP echo through a published UDP port, for IPv4 and IPv6 clients', async () => {
    const hp = await freePort('udp');
    // The echo server is the host's python3, bound in read-only (busybox's nc has no UDP).
    const echo = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',7000))\nwhile True:\n d,a=s.recvfrom(65535)\n s.sendto(b'echo:'+d,a)\n";
    runD('-p', `${hp}:7000/udp`, '-v', '/usr:/usr:ro', '-v', '/lib:/lib:ro', '-v', '/lib64:/lib64:ro', IMAGE, '/usr/bin/python3', '-c', echo);
    for (const [family, host] of [['udp4', '127.0.0.1'], ['udp6', '::1']] as const) {
      const s = dgram.createSocket(family);
      try {
        let reply = '';
        for (let i = 0; i < 100 && !reply; i++) {
          reply = await new Promise<string>((resolve) => {
            const t = setTimeout(() => resolve(''), 200);
            s.once('message', (m) => {
              clearTimeout(t);
              resolve(m.toString());
            });
            s.send(`hello ${host}`, hp, host);
          });
        }
        expect(reply).toBe(`echo:hello ${host}`);
      } finally {
        s.close();
      }
    }
  });

  it('-P publishes the exposed ports; port_handler=slirp4netns forwards through slirp4netns itself', async () => {
    const id = runD('-P', EXPOSED, ...HTTPD);
    const lines = b(['port', id]).stdout;
    expect(lines).toMatch(/^80\/tcp -> 0\.0\.0\.0:\d+$/m);
    expect(lines).toMatch(/^7000\/udp -> 0\.0\.0\.0:\d+$/m);
    expect(await get(`http://127.0.0.1:${/^80\/tcp -> 0\.0\.0\.0:(\d+)$/m.exec(lines)![1]}/`)).toMatch(/^page from /);
    const hp = await freePort();
    const s = runD('--network', 'slirp4netns:port_handler=slirp4netns', '-p', `127.0.0.1:${hp}:80`, IMAGE, ...HTTPD);
    expect(await get(`http://127.0.0.1:${hp}/`)).toMatch(/^page from /);
    expect(b(['port', s]).stdout).toBe(`80/tcp -> 127.0.0.1:${hp}\n`);
    // slirp4netns holds the port, not the monitor.
    const helper = helperOf(s, 'slirp4netns');
    const inodes = fs.readdirSync(`/proc/${helper}/fd`).map((f) => { try { return fs.readlinkSync(`/proc/${helper}/fd/${f}`); } catch { return ''; } });
    expect(inodes.some((l) => l.startsWith('socket:'))).toBe(true);
    b(['rm', '-f', s]);
    expect(await portFree(hp)).toBe(true);
  });

  it('port_handler=bypass: the server listens on the host itself; host clients (IPv4, IPv6) and its own container reach it', async () => {
    const hp = await freePort();
    const id = runD('--network', 'slirp4netns:port_handler=bypass', '-p', `${hp}:80`, IMAGE, ...HTTPD);
    expect(await get(`http://127.0.0.1:${hp}/`)).toMatch(/^page from /);
    expect(await get(`http://[::1]:${hp}/`)).toMatch(/^page from /);
    // The socket listening on the host port is httpd's own (the init: sh exec'd it), not the monitor's.
    const init = inspect(id).State.Pid as number;
    const monitor = (JSON.parse(fs.readFileSync(path.join(dirOf(id), 'monitor.json'), 'utf8')) as { pid: number }).pid;
    const holders = listenersOf(hp);
    expect(holders).toContain(init);
    expect(holders).not.toContain(monitor);
    // Inside, the server is still at 127.0.0.1:80 for the container's own clients.
    const inside = b(['exec', id, 'wget', '-q', '-O-', 'http://127.0.0.1:80/']);
    expect(inside.code, inside.stderr).toBe(0);
    expect(inside.stdout).toMatch(/^page from /);
    // A port that is not published binds in the container as always.
    const other = b(['exec', id, 'sh', '-c', 'httpd -p 8081 -h /www && sleep 0.3 && wget -q -O- http://127.0.0.1:8081/']);
    expect(other.stdout, other.stderr).toMatch(/^page from /);
    expect(listenersOf(8081)).not.toContain(init);
    expect(b(['port', id]).stdout).toContain(`80/tcp -> 0.0.0.0:${hp}\n`);
    expect(b(['rm', '-f', id]).code).toBe(0);
    expect(await portFree(hp)).toBe(true);
  });

  it('port_handler=bypass: the host socket a server gets cannot connect out to the host\'s loopback', async () => {
    const srv = await hostServer('secret');
    try {
      const hp = await freePort();
      // A server that binds the published port, gives up listening and tries to connect from
      // that socket to a service on the host's loopback (not reachable from its namespace).
      // Also with TCP Fast Open, which connects from a send.
      const py = [
        'import socket',
        's=socket.socket()',
        "s.bind(('0.0.0.0',80))",
        "print('bound', s.getsockname()[1], flush=True)",
        's.listen(1)',
        's.shutdown(socket.SHUT_RD)',
        's.settimeout(3)',
        'try:',
        ` s.connect(('127.0.0.1',${srv.port})); print('connected')`,
        'except OSError as e:',
        " print('refused', type(e).__name__)",
        'try:',
        ` s.sendto(b'GET / HTTP/1.0\\r\\n\\r\\n', socket.MSG_FASTOPEN, ('127.0.0.1',${srv.port})); print('sent')`,
        'except OSError as e:',
        " print('refused', type(e).__name__)",
        // The container's other sockets connect as usual (here, to its own loopback).
        'o=socket.socket(); o.bind((\'127.0.0.1\',0)); o.listen(1)',
        'c=socket.create_connection(o.getsockname()); print(\'own connect ok\')',
      ].join('\n');
      const r = await env.bg(['run', '--rm', '--network', 'slirp4netns:port_handler=bypass', '-p', `${hp}:80`, '-v', '/usr:/usr:ro', '-v', '/lib:/lib:ro', '-v', '/lib64:/lib64:ro', IMAGE, '/usr/bin/python3', '-c', py]);
      expect(r.code, r.stderr).toBe(0);
      // The bypass happened (the socket is bound to the host port), and the way out is closed.
      expect(r.stdout).toContain(`bound ${hp}`);
      expect(r.stdout.match(/^refused /gm)).toHaveLength(2);
      expect(r.stdout).toContain('own connect ok');
      expect(srv.hits()).toHaveLength(0);
    } finally {
      srv.stop();
    }
  });

  it('a taken host port fails the run before the container starts, with a clear message', async () => {
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const hp = (holder.address() as net.AddressInfo).port;
    try {
      for (const mode of [[], ['-d']]) {
        const r = b(['run', '--rm', ...mode, '-p', `${hp}:80`, IMAGE, 'sh', '-c', 'echo started; sleep 30']);
        expect(r.code).toBe(125);
        expect(r.stdout).not.toContain('started');
        expect(r.stderr).toMatch(new RegExp(`cannot publish port ${hp}/tcp.*already in use`));
      }
      expect(b(['ps', '-aq']).stdout).toBe('');
    } finally {
      holder.close();
    }
    const bad = b(['run', '--rm', '-p', '70000:80', IMAGE, 'true']);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/invalid port 70000/);
  });

  it('names: --hostname, --dns, --dns-search, --dns-option, --add-host; /etc/hostname', () => {
    const r = b(['run', '--rm', '--hostname', 'burrowbox', '--dns', '192.0.2.53', '--dns-search', 'corp.test', '--dns-option', 'ndots:2', '--add-host', 'db.test:10.9.8.7', '--add-host', 'gw:host-gateway', '--network', 'slirp4netns:allow_host_loopback=true', IMAGE, 'sh', '-c', 'cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; cat /etc/hostname; hostname']);
    expect(r.code, r.stderr).toBe(0);
    const [resolv, hosts, names] = r.stdout.split('---\n');
    expect(resolv).toBe('search corp.test\nnameserver 192.0.2.53\noptions ndots:2\n');
    expect(hosts).toMatch(/^10\.0\.2\.100\tburrowbox$/m);
    expect(hosts).toMatch(/^10\.0\.2\.2\thost\.containers\.internal host\.docker\.internal$/m);
    expect(hosts).toMatch(/^10\.9\.8\.7\tdb\.test$/m);
    expect(hosts).toMatch(/^10\.0\.2\.2\tgw$/m);
    expect(names).toBe('burrowbox\nburrowbox\n');
    const h = inspect(runD('--dns', '192.0.2.53', '--add-host', 'db.test:10.9.8.7', IMAGE, 'true')).HostConfig;
    expect(h).toMatchObject({ Dns: ['192.0.2.53'], ExtraHosts: ['db.test:10.9.8.7'] });
    expect(b(['run', '--rm', '--add-host', 'nocolon', IMAGE, 'true']).code).toBe(125);
  });

  it('teardown: rm -f, a killed monitor and a crashed container leave no helper and no forwarder', async () => {
    for (const how of ['rm -f', 'kill -9 monitor', 'kill -9 init'] as const) {
      const hp = await freePort();
      const id = runD('-p', `${hp}:80`, IMAGE, ...HTTPD);
      expect(await get(`http://127.0.0.1:${hp}/`)).toMatch(/^page from /);
      const init = inspect(id).State.Pid as number;
      const helper = helperOf(id, 'slirp4netns');
      const monitor = (JSON.parse(fs.readFileSync(path.join(dirOf(id), 'monitor.json'), 'utf8')) as { pid: number }).pid;
      expect(helpersOfInit(init)).toEqual([helper]);
      if (how === 'rm -f') expect(b(['rm', '-f', id]).code).toBe(0);
      else process.kill(how === 'kill -9 monitor' ? monitor : init, 'SIGKILL');
      waitFor(() => !alive(helper), 10_000, `slirp4netns to go after ${how}`);
      if (how !== 'kill -9 monitor') waitFor(() => !alive(monitor), 10_000, `the monitor to go after ${how}`);
      else expect(alive(init)).toBe(true); // the container runs on, without a network of its own
      expect(helpersOfInit(init)).toEqual([]);
      // The forwarder's listening socket went with the monitor.
      expect(await portFree(hp)).toBe(true);
      if (how === 'kill -9 init') {
        waitFor(() => b(['inspect', '-f', '{{.State.Status}}', id]).stdout.trim() === 'exited', 10_000, 'the exit record');
        expect(inspect(id).State.ExitCode).toBe(137);
      }
      env.cleanup();
    }
  });

  it('foreground: the runtime owns the helper; killing the runtime takes the helper along, killing the CLI leaves it to the container', async () => {
    const hp = await freePort();
    const run = env.bg(['run', '--rm', '--name', 'net-fg', '-p', `${hp}:80`, IMAGE, ...HTTPD]);
    expect(await get(`http://127.0.0.1:${hp}/`)).toMatch(/^page from /);
    const id = inspect('net-fg').Id as string;
    const helper = helperOf(id, 'slirp4netns');
    const ppid = ppidOf(helper)!;
    expect(cmdline(ppid)).toMatch(new RegExp(`burrow-runtime .* run .*${id}`));
    process.kill(ppid, 'SIGKILL');
    waitFor(() => !alive(helper), 10_000, 'slirp4netns to die with the runtime');
    expect(await portFree(hp)).toBe(true);
    b(['rm', '-f', id]);
    await run;

    // The CLI killed: the runtime keeps the container and its network, until the container dies.
    const hp2 = await freePort();
    const run2 = env.bg(['run', '--name', 'net-fg2', '-p', `${hp2}:80`, IMAGE, ...HTTPD]);
    expect(await get(`http://127.0.0.1:${hp2}/`)).toMatch(/^page from /);
    const info = inspect('net-fg2');
    const helper2 = helperOf(info.Id as string, 'slirp4netns');
    const runtime2 = ppidOf(helper2)!;
    const cli = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).find((p) => p !== process.pid && /burrow\.js .* run --name net-fg2 /.test(cmdline(p)));
    expect(cli).toBeGreaterThan(0);
    process.kill(cli!, 'SIGKILL');
    waitFor(() => !alive(cli!), 10_000, 'the CLI to die');
    expect(await get(`http://127.0.0.1:${hp2}/`)).toMatch(/^page from /);
    expect(alive(helper2)).toBe(true);
    process.kill(info.State.Pid as number, 'SIGKILL');
    waitFor(() => !alive(helper2), 10_000, 'slirp4netns to go with the container');
    waitFor(() => !alive(runtime2), 10_000, 'the runtime to finish');
    // (Its output pipes, which the runtime held, close only now.)
    await run2;
    expect(await portFree(hp2)).toBe(true);
  });
});

describe.skipIf(!HAVE_PASTA)(`pasta networking as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  /** The host's default gateway: pasta copies it, and maps it to the host's loopback with --map-gw. */
  const gateway: string | undefined = hostGateway();

  it.skipIf(!gateway)("reaches the host's loopback through the gateway only with --map-gw; ports go through the forwarder", async () => {
    const srv = await hostServer('hello pasta');
    try {
      const ok = await env.bg(['run', '--rm', '--network', 'pasta:--map-gw', IMAGE, 'sh', '-c', `cat /sys/class/net/*/mtu | sort -u | tr '\\n' ' '; wget -q -O- http://${gateway}:${srv.port}/`]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stdout).toMatch(/65520 .*hello pasta$/);
      // Without the mapping the gateway is the real one, which may drop the connection: wait a
      // while only.
      const refused = await env.bg(['run', '--rm', '--network', 'pasta', IMAGE, 'nc', '-w', '3', gateway!, String(srv.port)]);
      expect(refused.code).not.toBe(0);
      expect(srv.hits()).toHaveLength(1);
    } finally {
      srv.stop();
    }
    const hp = await freePort();
    const id = runD('--network', 'pasta', '-p', `${hp}:80`, IMAGE, ...HTTPD);
    expect(await get(`http://127.0.0.1:${hp}/`)).toMatch(/^page from /);
    const helper = helperOf(id, 'pasta');
    const r = b(['exec', id, 'cat', '/etc/resolv.conf']);
    if (!/^nameserver\s+127\./m.test(fs.readFileSync('/etc/resolv.conf', 'utf8'))) expect(r.stdout).toMatch(/^nameserver 169\.254\.1\.1$/m);
    const monitor = (JSON.parse(fs.readFileSync(path.join(dirOf(id), 'monitor.json'), 'utf8')) as { pid: number }).pid;
    process.kill(monitor, 'SIGKILL');
    waitFor(() => !alive(helper), 10_000, 'pasta to die with the monitor');
    expect(await portFree(hp)).toBe(true);
  });

  it('rm -f and a crashed container leave no pasta', () => {
    for (const how of ['rm -f', 'kill -9 init']) {
      const id = runD('--network', 'pasta', IMAGE, 'sleep', '60');
      const init = inspect(id).State.Pid as number;
      const helper = helperOf(id, 'pasta');
      expect(helpersOfInit(init)).toEqual([helper]);
      if (how === 'rm -f') b(['rm', '-f', id]);
      else process.kill(init, 'SIGKILL');
      waitFor(() => !alive(helper), 10_000, `pasta to go after ${how}`);
      expect(helpersOfInit(init)).toEqual([]);
    }
  });
});

describe(`without a network helper (${IS_ROOT ? 'root' : 'an unprivileged user'})`, () => {
  it('run falls back to --network none with one warning; published ports still work', async () => {
    // A PATH with everything of the host but slirp4netns and pasta.
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-nohelper-'));
    try {
      for (const dir of ['/usr/local/bin', '/usr/bin', '/usr/sbin']) {
        for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
          if (['slirp4netns', 'pasta', 'passt'].includes(f) || fs.existsSync(path.join(bin, f))) continue;
          fs.symlinkSync(path.join(dir, f), path.join(bin, f));
        }
      }
      const global = ['--root', env.store, '--runroot', env.runroot];
      const run = (args: string[]) => spawnSync(process.execPath, [path.resolve(__dirname, '../../bin/burrow.js'), ...global, ...args], { encoding: 'utf8', env: { ...process.env, PATH: bin } });
      const r = run(['run', '--rm', IMAGE, 'cat', '/proc/net/dev']);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr.match(/warning/g)).toHaveLength(1);
      expect(r.stderr).toMatch(/neither slirp4netns nor pasta is installed.*loopback only.*burrow info/);
      expect(r.stdout).not.toMatch(/tap0|eth0/);
      expect(run(['run', '--rm', '--network', 'none', IMAGE, 'true']).stderr).toBe('');
      const hp = await freePort();
      const d = run(['run', '-d', '-p', `${hp}:80`, IMAGE, ...HTTPD]);
      expect(d.status, d.stderr).toBe(0);
      expect(await get(`http://127.0.0.1:${hp}/`)).toMatch(/^page from /);
    } finally {
      fs.rmSync(bin, { recursive: true, force: true });
    }
  });
});

/**
 * A DNS server on the host's loopback, in its own process, that answers A queries for names
 * ending in `.outside.test` with 192.0.2.7 and refuses everything else (the upstream a
 * container's `--dns` names: the network owner forwards what its networks do not know there).
 */
async function hostResolver(): Promise<{ port: number; queries(): string[]; stop(): void }> {
  const code = `const d=require('dgram').createSocket('udp4');
d.on('message',(m,r)=>{let i=12;const l=[];while(m[i]){l.push(m.slice(i+1,i+1+m[i]).toString());i+=m[i]+1;}const q=m.slice(12,i+5);const name=l.join('.');const type=m.readUInt16BE(i+1);
process.stdout.write('q '+name+'\\n');const ok=/\\.outside\\.test$/.test(name)&&type===1;
const h=Buffer.alloc(12);m.copy(h,0,0,2);h.writeUInt16BE(ok?0x8180:0x8183,2);h.writeUInt16BE(1,4);h.writeUInt16BE(ok?1:0,6);
const a=ok?Buffer.from([0xc0,12,0,1,0,1,0,0,0,60,0,4,192,0,2,7]):Buffer.alloc(0);d.send(Buffer.concat([h,q,a]),r.port,r.address);});
d.bind(0,'127.0.0.1',()=>process.stdout.write('port '+d.address().port+'\\n'));`;
  const p = await hostProcess(code);
  return { port: p.port, queries: () => p.lines('q '), stop: p.stop };
}

/** The processes under `pid` (its children, theirs, ...): the owner's slirp4netns and helpers. */
function descendants(pid: number): number[] {
  const kids = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pp = ppidOf(Number(d));
    if (pp !== undefined) kids.set(pp, [...(kids.get(pp) ?? []), Number(d)]);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const k of kids.get(p) ?? []) {
      out.push(k);
      walk(k);
    }
  };
  walk(pid);
  return out;
}

/** A shell loop that retries `cmd` while a server in another container starts (at most ~10 s). */
const retry = (cmd: string) => `(for i in $(seq 100); do ${cmd} && exit 0; sleep 0.1; done; exit 1)`;

describe(`user-defined networks as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  const nets: string[] = [];
  const netCreate = (...args: string[]) => {
    const r = b(['network', 'create', ...args]);
    expect(r.code, r.stderr).toBe(0);
    nets.push(args[args.length - 1]!);
  };
  /** Processes of the owner seen during a test: none may outlive the test's last container. */
  const owners = new Set<number>();
  const seeOwner = () => {
    const pid = ownerPid(env.runroot);
    expect(pid, 'a network owner runs while a container is on a user-defined network').toBeDefined();
    owners.add(pid!);
    for (const d of descendants(pid!)) owners.add(d);
    return pid!;
  };
  afterEach(() => {
    env.cleanup();
    // No owner and none of its helpers (slirp4netns) once the last container is gone.
    for (const pid of owners) waitFor(() => !alive(pid), 10_000, `owner process ${pid} (${cmdline(pid)}) to exit after the last container`);
    owners.clear();
    for (const n of nets.splice(0)) b(['network', 'rm', n]);
  });

  it('two containers on one network reach each other by name and alias; a third on another network neither reaches nor resolves them', () => {
    netCreate('un-front');
    netCreate('un-back');
    const web = runD('--name', 'un-web', '--network', 'un-front', '--network-alias', 'webalias', IMAGE, ...HTTPD);
    seeOwner();
    const ws = inspect(web).NetworkSettings.Networks['un-front'];
    expect(ws.IPAddress).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(ws.Aliases).toEqual(['webalias']);
    expect(ws.MacAddress).toBe(`02:42:${ws.IPAddress.split('.').map((x: string) => Number(x).toString(16).padStart(2, '0')).join(':')}`);
    expect(ws.NetworkID).toBe(JSON.parse(b(['network', 'inspect', 'un-front']).stdout)[0].Id);
    expect(ws.Gateway).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    // Docker's NetworkMode of a container on user-defined networks: the first one's name.
    expect(inspect(web).HostConfig.NetworkMode).toBe('un-front');
    const client = b(['run', '--rm', '--network', 'un-front', IMAGE, 'sh', '-c', `${retry('wget -q -O /tmp/a http://un-web/')} ; cat /tmp/a; wget -q -O- http://webalias/; cat /etc/resolv.conf; ip -4 route`]);
    expect(client.code, client.stderr).toBe(0);
    expect(client.stdout).toMatch(/^page from \w+\npage from \w+\n/);
    // The one nameserver is the network's gateway, where the owner's resolver answers.
    expect(client.stdout).toMatch(new RegExp(`^nameserver ${ws.Gateway.replace(/\./g, '\\.')}$`, 'm'));
    expect(client.stdout).toMatch(new RegExp(`^default via ${ws.Gateway.replace(/\./g, '\\.')}`, 'm'));
    const other = b(['run', '--rm', '--network', 'un-back', IMAGE, 'sh', '-c', `nslookup un-web; echo "resolve=$?"; timeout 3 wget -q -O- http://${ws.IPAddress}/; echo "reach=$?"`]);
    expect(other.stdout).toMatch(/resolve=1/);
    expect(other.stdout).toMatch(/reach=[1-9]/);
    expect(other.stdout).not.toMatch(/page from/);
  });

  it('a container on two networks reaches both; /etc/hosts has its name on its address; the first network is eth0', () => {
    netCreate('un-one');
    netCreate('un-two');
    runD('--name', 'un-s1', '--network', 'un-one', IMAGE, ...HTTPD);
    runD('--name', 'un-s2', '--network', 'un-two', IMAGE, ...HTTPD);
    const both = runD('--name', 'un-both', '--hostname', 'bothhost', '--network', 'un-one', '--network', 'un-two', IMAGE, 'sleep', '60');
    seeOwner();
    const n = inspect(both).NetworkSettings.Networks;
    expect(Object.keys(n).sort()).toEqual(['un-one', 'un-two']);
    const r = b(['exec', both, 'sh', '-c', `${retry('wget -q -O- http://un-s1/ >/dev/null')} && ${retry('wget -q -O- http://un-s2/ >/dev/null')} && ip -4 -o addr show eth0 && ip -4 -o addr show eth1 && cat /etc/hosts`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`eth0\\s+inet ${n['un-one'].IPAddress.replace(/\./g, '\\.')}/${n['un-one'].IPPrefixLen}`));
    expect(r.stdout).toMatch(new RegExp(`eth1\\s+inet ${n['un-two'].IPAddress.replace(/\./g, '\\.')}/`));
    expect(r.stdout).toMatch(new RegExp(`^${n['un-one'].IPAddress.replace(/\./g, '\\.')}\\s+bothhost$`, 'm'));
  });

  it('--internal: no outbound route; a routed network has its default route through its gateway', () => {
    netCreate('--internal', 'un-int');
    const r = b(['run', '--rm', '--network', 'un-int', IMAGE, 'sh', '-c', 'ip -4 route; timeout 3 wget -q -O- http://10.0.2.2:1/; echo "out=$?"']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/^default/m);
    expect(r.stdout).toMatch(/out=[1-9]/);
    expect(JSON.parse(b(['network', 'inspect', 'un-int']).stdout)[0].Internal).toBe(true);
  });

  it('-p publishes a port of a container on a user-defined network to the host', async () => {
    netCreate('un-pub');
    const hp = await freePort();
    const id = runD('--network', 'un-pub', '-p', `127.0.0.1:${hp}:80`, IMAGE, ...HTTPD);
    seeOwner();
    expect(await get(`http://127.0.0.1:${hp}/`)).toMatch(/^page from /);
    expect(b(['port', id]).stdout.trim()).toBe(`80/tcp -> 127.0.0.1:${hp}`);
  });

  it('names outside the networks go to the --dns servers (a resolver on the host\'s loopback), through the owner', async () => {
    netCreate('un-dns');
    const dns = await hostResolver();
    try {
      const r = await env.bg(['run', '--rm', '--network', 'un-dns', '--dns', `127.0.0.1:${dns.port}`, IMAGE, 'sh', '-c', 'nslookup www.outside.test; cat /etc/resolv.conf']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/Address(?: 1)?:\s+192\.0\.2\.7/);
      // The container asks the network's gateway, never the upstream itself.
      expect(r.stdout).not.toMatch(/nameserver 127\./);
      expect(dns.queries()).toContain('www.outside.test');
    } finally {
      dns.stop();
    }
  });

  it('network connect and disconnect change a running container\'s networks', () => {
    netCreate('un-c1');
    netCreate('un-c2');
    runD('--name', 'un-srv', '--network', 'un-c1', IMAGE, ...HTTPD);
    const c = runD('--name', 'un-cli', '--network', 'un-c2', IMAGE, 'sleep', '60');
    seeOwner();
    const srv = inspect('un-srv').NetworkSettings.Networks['un-c1'].IPAddress as string;
    expect(b(['exec', c, 'sh', '-c', `timeout 2 wget -q -O- http://${srv}/`]).code).not.toBe(0);
    const con = b(['network', 'connect', '--alias', 'cli2', 'un-c1', c]);
    expect(con.code, con.stderr).toBe(0);
    const n = inspect(c).NetworkSettings.Networks;
    expect(Object.keys(n).sort()).toEqual(['un-c1', 'un-c2']);
    // By address: the interface (names across a container's networks: the two-network test).
    const ok = b(['exec', c, 'sh', '-c', `${retry(`timeout 2 wget -q -O- http://${srv}/`)} && ip -4 -o addr show eth1`]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/page from/);
    expect(ok.stdout).toMatch(new RegExp(`inet ${n['un-c1'].IPAddress.replace(/\./g, '\\.')}/`));
    const dis = b(['network', 'disconnect', 'un-c1', c]);
    expect(dis.code, dis.stderr).toBe(0);
    expect(Object.keys(inspect(c).NetworkSettings.Networks)).toEqual(['un-c2']);
    const gone = b(['exec', c, 'sh', '-c', `ip -o link show eth1 || timeout 2 wget -q -O- http://${srv}/`]);
    expect(gone.code).not.toBe(0);
    expect(gone.stdout).not.toMatch(/page from/);
  });

  it('addresses: --ip, a taken --ip refused, freed and reused after rm; kept across a restart', () => {
    netCreate('--subnet', '10.251.7.0/24', 'un-ipam');
    const a = runD('--name', 'un-ip1', '--network', 'un-ipam', '--ip', '10.251.7.9', IMAGE, 'sleep', '60');
    seeOwner();
    expect(inspect(a).NetworkSettings.Networks['un-ipam'].IPAddress).toBe('10.251.7.9');
    expect(inspect(a).NetworkSettings.Networks['un-ipam'].IPAMConfig).toEqual({ IPv4Address: '10.251.7.9' });
    const taken = b(['run', '-d', '--network', 'un-ipam', '--ip', '10.251.7.9', IMAGE, 'true']);
    expect(taken.code).toBe(125);
    expect(taken.stderr).toMatch(/10\.251\.7\.9/);
    // Nothing half-made: no container from the refused run.
    expect(b(['ps', '-aq']).stdout.trim().split('\n')).toHaveLength(1);
    const first = runD('--network', 'un-ipam', IMAGE, 'sleep', '60');
    const lowest = inspect(first).NetworkSettings.Networks['un-ipam'].IPAddress;
    expect(lowest).toBe('10.251.7.2');
    // Restarted, it keeps its address.
    expect(b(['stop', '-t', '0', first]).code).toBe(0);
    expect(b(['start', first]).code).toBe(0);
    const inside = b(['exec', first, 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
    expect(inside.stdout).toMatch(/inet 10\.251\.7\.2\/24/);
    expect(b(['rm', '-f', first, a]).code).toBe(0);
    const again = runD('--network', 'un-ipam', '--ip', '10.251.7.9', IMAGE, 'sleep', '60');
    expect(inspect(again).NetworkSettings.Networks['un-ipam'].IPAddress).toBe('10.251.7.9');
    const next = runD('--network', 'un-ipam', IMAGE, 'sleep', '60');
    expect(inspect(next).NetworkSettings.Networks['un-ipam'].IPAddress).toBe('10.251.7.2');
  });

  it('a restart policy restarts a container on a user-defined network with its address, reachable', () => {
    netCreate('un-rp');
    // Fails once (recording its address), then serves.
    const id = runD('--name', 'un-rp1', '--network', 'un-rp', '--restart', 'on-failure:3', IMAGE, 'sh', '-c', 'ip -4 -o addr show eth0 >> /addrs; [ -f /again ] || { touch /again; exit 3; }; mkdir -p /www && echo up > /www/index.html && exec httpd -f -p 80 -h /www');
    seeOwner();
    waitFor(() => inspect(id).RestartCount >= 1 && inspect(id).State.Running === true, 20_000, 'the restart');
    const ip = inspect(id).NetworkSettings.Networks['un-rp'].IPAddress as string;
    const addrs = b(['exec', id, 'cat', '/addrs']).stdout.trim().split('\n');
    expect(addrs).toHaveLength(2);
    for (const a of addrs) expect(a).toMatch(new RegExp(`inet ${ip.replace(/\./g, '\\.')}/`));
    const r = b(['run', '--rm', '--network', 'un-rp', IMAGE, 'sh', '-c', retry('wget -q -O- http://un-rp1/')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('up\n');
  });

  it('three runs at once start one owner', async () => {
    netCreate('un-race');
    const runs = await Promise.all([1, 2, 3].map(() => env.bg(['run', '-d', '--network', 'un-race', IMAGE, 'sleep', '60'])));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const pid = seeOwner();
    const owners = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d) && alive(Number(d)) && / network-owner --dir /.test(cmdline(Number(d))) && cmdline(Number(d)).includes(env.runroot));
    expect(owners).toEqual([String(pid)]);
    // All three on the one owner's bridge: each reaches the others.
    const ips = runs.map((r) => inspect(r.stdout.trim()).NetworkSettings.Networks['un-race'].IPAddress as string);
    expect(new Set(ips).size).toBe(3);
    const ping = b(['exec', runs[0]!.stdout.trim(), 'sh', '-c', ips.slice(1).map((ip) => `ping -c1 -W5 ${ip} >/dev/null`).join(' && ')]);
    expect(ping.code, ping.stderr).toBe(0);
  });

  it('no owner and no slirp4netns are left once the last container on a network is removed', () => {
    netCreate('un-gone');
    const x = runD('--network', 'un-gone', IMAGE, 'sleep', '60');
    const y = runD('--network', 'un-gone', IMAGE, 'sleep', '60');
    const pid = seeOwner();
    const under = descendants(pid);
    expect(b(['rm', '-f', x]).code).toBe(0);
    // One container left: the owner stays.
    expect(alive(pid)).toBe(true);
    expect(b(['rm', '-f', y]).code).toBe(0);
    waitFor(() => !alive(pid), 10_000, 'the owner to exit after the last container');
    for (const p of under) expect(alive(p), `${p} (${cmdline(p)}) outlived the owner`).toBe(false);
    expect(ownerPid(env.runroot)).toBeUndefined();
  });

  it('rm -f kills a container on a user-defined network at once (SIGKILL: its TERM trap never runs), frees its address, and records kill 9, die 137 and destroy', () => {
    netCreate('un-kill');
    const out = fs.mkdtempSync(path.join(env.work, 'kill-'));
    const id = runD('--network', 'un-kill', '-v', `${out}:/out`, IMAGE, 'sh', '-c', 'trap "echo term > /out/term; exit 3" TERM; touch /out/up; while :; do sleep 1; done');
    waitFor(() => fs.existsSync(path.join(out, 'up')), 10_000, 'the container to set its trap');
    const netId = JSON.parse(b(['network', 'inspect', 'un-kill']).stdout)[0].Id as string;
    const held = () => Object.keys((JSON.parse(fs.readFileSync(path.join(env.store, 'networks', 'ipam', `${netId}.json`), 'utf8')) as { addresses: object }).addresses).length;
    expect(held()).toBe(1);
    expect(b(['rm', '-f', id]).code).toBe(0);
    // No stop with a grace period first (Docker's rm -f): the trap would have written this.
    expect(fs.existsSync(path.join(out, 'term'))).toBe(false);
    expect(held()).toBe(0);
    const ev = fs
      .readFileSync(path.join(env.runroot, 'events.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { Action: string; Actor: { ID: string; Attributes: Record<string, string> } })
      .filter((e) => e.Actor.ID === id);
    // Docker's: the kill (SIGKILL, by number) before the die.
    expect(ev.map((e) => e.Action)).toEqual(['create', 'start', 'kill', 'die', 'destroy']);
    expect(ev[2]!.Actor.Attributes.signal).toBe('9');
    expect(ev[3]!.Actor.Attributes.exitCode).toBe('137');
  });

  it('the owner and the monitors run burrow-monitor, the small binary of what stays; a monitor with a healthcheck runs burrow-runtime', () => {
    netCreate('un-bin');
    const x = runD('--network', 'un-bin', IMAGE, 'sleep', '60');
    const y = runD('--network', 'un-bin', '--health-cmd', 'true', '--health-interval', '1h', IMAGE, 'sleep', '60');
    const exe = (pid: number) => fs.readlinkSync(`/proc/${pid}/exe`);
    const bin = (name: string) => fs.realpathSync(path.join(ROOT, 'target', 'release', name));
    const monitorOf = (id: string) => (JSON.parse(fs.readFileSync(path.join(dirOf(id), 'monitor.json'), 'utf8')) as { pid: number }).pid;
    expect(exe(seeOwner()), 'the network owner').toBe(bin('burrow-monitor'));
    expect(exe(monitorOf(x)), 'the monitor').toBe(bin('burrow-monitor'));
    // Their names as before: the monitor's its own, the owner's the runtime's.
    expect(fs.readFileSync(`/proc/${monitorOf(x)}/comm`, 'utf8').trim()).toBe('burrow:monitor');
    expect(fs.readFileSync(`/proc/${seeOwner()}/comm`, 'utf8').trim()).toBe('burrow-runtime');
    // Its probes are execs into the container, which only the full runtime has (run from its
    // sealed copy, a memfd, where the user could write the binary: selfclone.rs).
    expect([bin('burrow-runtime'), '/memfd:burrow-runtime (deleted)'], 'the monitor of a healthchecked container').toContain(exe(monitorOf(y)));
    expect(fs.readFileSync(`/proc/${monitorOf(y)}/comm`, 'utf8').trim()).toBe('burrow:monitor');
  });

  it('without burrow-monitor, run -d and the network owner fail with an error that names it and the fix', () => {
    netCreate('un-nobin');
    const missing = { BURROW_MONITOR: path.join(env.work, 'no-such-burrow-monitor') };
    const global = ['--root', env.store, '--runroot', env.runroot];
    for (const net of [[], ['--network', 'un-nobin']]) {
      const r = burrow([...global, 'run', '-d', ...net, IMAGE, 'sleep', '60'], { env: missing });
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr).toContain(`burrow-monitor not found at ${missing.BURROW_MONITOR}`);
      expect(r.stderr).toMatch(/npm run build:rust/);
    }
    expect(ownerPid(env.runroot)).toBeUndefined();
  });

  it('bad input: an unknown network, a mode with a network, --ip without a network', () => {
    const unknown = b(['run', '--rm', '--network', 'un-nosuch', IMAGE, 'true']);
    expect(unknown.code).toBe(125);
    expect(unknown.stderr).toMatch(/network un-nosuch not found/);
    netCreate('un-bad');
    const mixed = b(['run', '--rm', '--network', 'host', '--network', 'un-bad', IMAGE, 'true']);
    expect(mixed.code).toBe(125);
    expect(mixed.stderr).toMatch(/host/);
    const ip = b(['run', '--rm', '--ip', '10.1.2.3', IMAGE, 'true']);
    expect(ip.code).toBe(125);
    expect(ip.stderr).toMatch(/--ip/);
    expect(b(['ps', '-aq']).stdout.trim()).toBe('');
  });

  it.skipIf(IS_ROOT)('--userns keep-id cannot be used with a user-defined network, and says why', () => {
    netCreate('un-keep');
    const r = b(['run', '--rm', '--userns', 'keep-id', '--network', 'un-keep', IMAGE, 'true']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/user namespace of your network owner/);
    expect(r.stderr).toMatch(/leave out --userns/);
  });

  it('kill -9 of the owner: its containers are reported (inspect, the next run\'s warning), and the next run gets a new owner', () => {
    netCreate('un-kill');
    const victim = runD('--name', 'un-victim', '--network', 'un-kill', IMAGE, 'sleep', '120');
    const pid = seeOwner();
    process.kill(pid, 'SIGKILL');
    waitFor(() => fs.existsSync(path.join(dirOf(victim), 'network-lost.json')), 10_000, 'the monitor to record the lost owner');
    const st = inspect(victim);
    expect(st.State.Running).toBe(true);
    expect(st.State.Error).toMatch(/network owner lost.*un-kill/);
    expect(st.NetworkSettings.NetworkLost.Networks).toEqual(['un-kill']);
    const next = b(['run', '-d', '--network', 'un-kill', IMAGE, 'sleep', '60']);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toMatch(/network owner went away under un-victim/);
    const fresh = seeOwner();
    expect(fresh).not.toBe(pid);
    // A restart reattaches the reported container, with its address.
    const ip = st.NetworkSettings.Networks['un-kill'].IPAddress as string;
    expect(b(['restart', '-t', '0', victim]).code).toBe(0);
    expect(inspect(victim).State.Error).toBe('');
    expect(b(['exec', victim, 'ip', '-4', '-o', 'addr', 'show', 'eth0']).stdout).toMatch(new RegExp(`inet ${ip.replace(/\./g, '\\.')}/`));
  });
});

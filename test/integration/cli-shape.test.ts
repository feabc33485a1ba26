/**
 * The CLI as Docker users expect it (issue 12, items 7 and 8): every error in one voice
 * (`Error: …`, Docker's exit statuses, never the runtime's name), and Docker's command shapes:
 * the `image` group, `images REPO[:TAG]`, `history`, `--expose`, `-u UID`'s group, Go's
 * rendering in `inspect --format`, "… ago", `rmi`'s names, `save | head`. As root and as the
 * unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import dns from 'node:dns/promises';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT } from './helpers';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import { makeRootfs } from '../harness/bundle.mjs';

let env: Env;
/** An image whose /etc/passwd has app (1000, group 1234) and no user 2000. */
const USERS = 'shape-users';

beforeAll(() => {
  env = setup('cli-shape');
  const rootfs = makeRootfs(path.join(env.work, 'users-src')) as string;
  fs.appendFileSync(path.join(rootfs, 'etc', 'passwd'), 'app:x:1000:1234:app:/home/app:/bin/sh\n');
  fs.appendFileSync(path.join(rootfs, 'etc', 'group'), 'app:x:1234:\n');
  const tarball = path.join(env.work, 'users.tar');
  const t = spawnSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-cf', tarball, '-C', rootfs, '.']);
  if (t.status !== 0) throw new Error(`tar: ${t.stderr}`);
  ok(['import', tarball, USERS, '-c', 'CMD ["sh"]', '-m', 'made by the cli-shape test']);
});
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

const b = (args: string[]) => env.b(args);
const ok = (args: string[]): string => env.ok(args);

/** A failing command: its status, and stderr in the CLI's one voice. */
function fails(args: string[], status: number): string {
  const r = b(args);
  expect(r.code, `burrow ${args.join(' ')}: ${r.stderr}`).toBe(status);
  expect(r.stderr, `burrow ${args.join(' ')}`).toMatch(/^Error: \S/);
  expect(r.stderr).not.toContain('burrow-runtime');
  // Nothing but the error and its fix: no stack trace, no second voice.
  for (const line of r.stderr.split('\n').filter(Boolean)) expect(line, `burrow ${args.join(' ')}`).toMatch(/^(Error|fix): |^\(Did you mean /);
  return r.stderr;
}

describe(`one voice for errors, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('every failing command starts its stderr with `Error: `, never names the runtime, and exits as Docker does', () => {
    ok(['create', '--name', 'stopped', IMAGE, 'true']);
    const cases: [string[], number][] = [
      [['rm', 'nosuch'], 125],
      [['container', 'rm', 'nosuch'], 125],
      [['--bogus'], 125],
      [['run'], 125],
      [['nosuchcommand'], 125],
      [['inspect', 'nosuch'], 125],
      [['rmi', 'nosuch'], 125],
      [['image', 'rm', 'nosuch'], 125],
      [['logs', 'nosuch'], 125],
      [['exec', 'stopped', 'true'], 125],
      [['kill', 'stopped'], 125],
      [['volume', 'rm', 'nosuchvolume'], 125],
      [['run', '--pull', 'never', 'nosuch/image'], 125],
      [['run', '--expose', 'eighty', IMAGE, 'true'], 125],
      [['run', '-u', 'nosuchuser', IMAGE, 'true'], 125],
      // The runtime's own failures, relayed: in the CLI's voice, with Docker's 126/127.
      [['run', '--rm', IMAGE, 'nosuchcmd'], 127],
      [['run', '--rm', IMAGE, '/etc/passwd'], 126],
    ];
    for (const [args, status] of cases) fails(args, status);
    expect(fails(['rm', 'nosuch'], 125)).toBe('Error: no such container: nosuch\n');
    expect(fails(['run', '--rm', IMAGE, 'nosuchcmd'], 127)).toMatch(/^Error: .*nosuchcmd.*not found/);
  });

  it('rm of a running container: 125, and the message says how (-f)', () => {
    ok(['run', '-d', '--name', 'busy', IMAGE, 'sleep', '60']);
    expect(fails(['rm', 'busy'], 125)).toBe('Error: cannot remove container busy: container is running: stop the container before removing or use -f\n');
    // Several at once: the others are still removed, the status is the failure's.
    ok(['create', '--name', 'idle', IMAGE, 'true']);
    const r = b(['rm', 'idle', 'nosuch']);
    expect([r.code, r.stdout, r.stderr]).toEqual([125, 'idle\n', 'Error: no such container: nosuch\n']);
    ok(['rm', '-f', 'busy']);
  });

  it('a pull over TLS from a registry that speaks plain HTTP names the config key and the variable, with no OpenSSL text', async () => {
    // A registry is insecure by default only on a loopback name; this host's own name
    // resolves to a loopback address here but is not one by name, as a LAN registry would not be.
    const host = os.hostname();
    const addr = await dns.lookup(host, { family: 4 }).catch(() => undefined);
    if (!addr || !addr.address.startsWith('127.')) return; // no loopback name for this host: nothing to prove it with
    const server = http.createServer((_q, s) => s.writeHead(404).end());
    await new Promise<void>((r) => server.listen(0, addr.address, r));
    try {
      const where = `${host}:${(server.address() as AddressInfo).port}`;
      const r = await env.bg(['pull', `${where}/x/y:1`]);
      expect(r.code, r.stderr).toBe(125);
      const err = r.stderr.slice(r.stderr.indexOf('Error: '));
      expect(err).toMatch(/^Error: .*plain HTTP/);
      expect(err).toContain('[registries]');
      expect(err).toContain('insecure');
      expect(err).toContain('config.toml');
      expect(err).toContain('BURROW_INSECURE_REGISTRIES');
      expect(r.stderr).not.toMatch(/SSL routines|error:[0-9A-F]{8}|EPROTO|wrong version number/);
    } finally {
      server.close();
    }
  });
});

describe(`Docker's command shapes, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('`image ls|list|inspect|rm|tag|history|save|load|import` are the top-level commands again', () => {
    const help = ok(['image', '--help']);
    for (const c of ['ls|list', 'inspect', 'rm|remove', 'tag', 'pull', 'push', 'save', 'load', 'history', 'import', 'prune']) expect(help).toMatch(new RegExp(`^ {2}${c.replace('|', '\\|')}\\b`, 'm'));
    const fmt = ['--format', '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'];
    expect(ok(['image', 'ls', ...fmt])).toBe(ok(['images', ...fmt]));
    expect(ok(['image', 'list', '-q'])).toBe(ok(['images', '-q']));
    expect(ok(['image', 'inspect', '-f', '{{.Id}}', IMAGE])).toBe(ok(['inspect', '--type', 'image', '-f', '{{.Id}}', IMAGE]));
    ok(['image', 'tag', IMAGE, 'shape/alias:1']);
    expect(ok(['image', 'history', '-q', 'shape/alias:1'])).toBe(ok(['history', '-q', IMAGE]));
    const archive = path.join(env.work, 'alias.tar');
    ok(['image', 'save', '-o', archive, 'shape/alias:1']);
    expect(ok(['image', 'rm', 'shape/alias:1'])).toBe('Untagged: shape/alias:1\n');
    expect(ok(['image', 'load', '-i', archive])).toBe('Loaded image: shape/alias:1\n');
    const tar = path.join(env.work, 'tiny-rootfs.tar');
    fs.mkdirSync(path.join(env.work, 'tiny', 'etc'), { recursive: true });
    fs.writeFileSync(path.join(env.work, 'tiny', 'etc', 'hostname'), 'tiny\n');
    expect(spawnSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-cf', tar, '-C', path.join(env.work, 'tiny'), '.']).status).toBe(0);
    expect(ok(['image', 'import', tar, 'shape/imported:1'])).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    ok(['rmi', 'shape/alias:1', 'shape/imported:1']);
  });

  it('`images REPOSITORY[:TAG]` lists that repository (and tag) only', () => {
    ok(['tag', IMAGE, 'shape/a:1']);
    ok(['tag', IMAGE, 'shape/a:2']);
    ok(['tag', IMAGE, 'localhost:5000/shape/b:latest']);
    const listed = (args: string[]) =>
      ok(['images', '--format', '{{.Repository}}:{{.Tag}}', ...args])
        .split('\n')
        .filter(Boolean)
        .sort();
    expect(listed(['shape/a'])).toEqual(['shape/a:1', 'shape/a:2']);
    expect(listed(['shape/a:2'])).toEqual(['shape/a:2']);
    expect(listed(['docker.io/shape/a:1'])).toEqual(['shape/a:1']);
    expect(listed(['localhost:5000/shape/b'])).toEqual(['localhost:5000/shape/b:latest']);
    expect(listed(['shape/*'])).toEqual(['shape/a:1', 'shape/a:2']);
    expect(listed([IMAGE])).toEqual([`${IMAGE}:latest`]);
    expect(listed(['nosuch'])).toEqual([]);
    expect(ok(['images', 'nosuch'])).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\n$/);
    ok(['rmi', 'shape/a:1', 'shape/a:2', 'localhost:5000/shape/b:latest']);
  });

  it("`history` shows the image config's history in Docker's columns", () => {
    const out = ok(['history', USERS]).split('\n');
    expect(out[0]).toMatch(/^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT$/);
    const id = JSON.parse(ok(['image', 'inspect', USERS]))[0].Id.replace('sha256:', '').slice(0, 12) as string;
    expect(out[1]).toMatch(new RegExp(`^${id}\\s+(Less than a second|\\d+ seconds?|About a minute|\\d+ minutes) ago\\s+burrow import users.tar\\s+\\d[\\d.]*[kM]B\\s+made by the cli-shape test$`));
    expect(out.filter(Boolean)).toHaveLength(2);
  });

  it('`--expose` is recorded in ExposedPorts and `-P` publishes it', () => {
    ok(['create', '--name', 'exposed', '--expose', '8080', '--expose', '9000-9001/udp', IMAGE, 'true']);
    expect(Object.keys(JSON.parse(ok(['inspect', '-f', '{{json .Config.ExposedPorts}}', 'exposed']))).sort()).toEqual(['8080/tcp', '9000/udp', '9001/udp']);
    ok(['create', '--name', 'published', '-P', '--expose', '8080', IMAGE, 'true']);
    expect(Object.keys(JSON.parse(ok(['inspect', '-f', '{{json .HostConfig.PortBindings}}', 'published'])))).toEqual(['8080/tcp']);
  });

  it('`-u UID` takes its group from the image\'s /etc/passwd, or the same number when the uid is not there', () => {
    const ids = (u: string) => ok(['run', '--rm', '-u', u, USERS, 'sh', '-c', 'echo $(id -u):$(id -g)']);
    expect(ids('1000')).toBe('1000:1234\n');
    expect(ids('2000')).toBe('2000:2000\n');
    expect(ids('2000:1234')).toBe('2000:1234\n');
    expect(ids('app')).toBe('1000:1234\n');
  });

  it("`inspect --format` prints values as Go's templates do", () => {
    ok(['create', '--name', 'fmt', '-l', 'b=2', '-l', 'a=1', IMAGE, 'sleep', '5']);
    expect(ok(['inspect', '-f', '{{.Config.Cmd}}', 'fmt'])).toBe('[sleep 5]\n');
    expect(ok(['inspect', '-f', '{{.Config.Labels}}', 'fmt'])).toBe('map[a:1 b:2]\n');
    expect(ok(['inspect', '-f', '{{.State.Running}} {{.Config.Nope}} {{.RestartCount}}', 'fmt'])).toBe('false <no value> 0\n');
    expect(ok(['inspect', '-f', '{{.Config.Cmd}}', IMAGE])).toBe('[sh]\n');
  });

  it('CREATED reads "… ago" in `images` and `ps`', () => {
    ok(['create', '--name', 'young', IMAGE, 'true']);
    const ago = /(Less than a second|\d+ seconds?|About a minute|\d+ minutes) ago/;
    expect(ok(['images']).split('\n').find((l) => l.startsWith(`${IMAGE} `))).toMatch(new RegExp(`^${IMAGE}\\s+latest\\s+[0-9a-f]{12}\\s+${ago.source}\\s+\\S+$`));
    expect(ok(['images', '--format', '{{.Repository}} {{.CreatedSince}}']).split('\n').find((l) => l.startsWith(`${IMAGE} `))).toMatch(new RegExp(`^${IMAGE} ${ago.source}$`));
    expect(ok(['ps', '-a', '--format', '{{.RunningFor}}', '--filter', 'name=young'])).toMatch(new RegExp(`^${ago.source}\n$`));
    expect(ok(['ps', '-a', '--filter', 'name=young']).split('\n')[1]).toMatch(ago);
  });

  it('`rmi` says Untagged: with the name as `images` shows it, then Deleted: sha256:…', () => {
    ok(['tag', USERS, 'localhost:5000/shape/users:latest']);
    ok(['tag', USERS, 'shape/users:v1']);
    const shown = ok(['images', '--format', '{{.Repository}}:{{.Tag}}']).split('\n').find((l) => l.startsWith('shape/users:'));
    expect(shown).toBe('shape/users:v1');
    expect(ok(['rmi', 'shape/users:v1'])).toBe(`Untagged: ${shown}\n`);
    const id = JSON.parse(ok(['image', 'inspect', USERS]))[0].Id as string;
    ok(['tag', USERS, 'shape/users:v2']);
    // By id, with -f: every name goes, then the image.
    const r = b(['rmi', '-f', id.slice(7, 19)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n').filter(Boolean).sort()).toEqual([`Deleted: ${id}`, 'Untagged: localhost:5000/shape/users:latest', `Untagged: ${USERS}:latest`, 'Untagged: shape/users:v2'].sort());
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('`save … | head -c 10` ends quietly on the closed pipe', () => {
    const args = ['--root', env.store, '--runroot', env.runroot, 'save', IMAGE].map((a) => `'${a}'`).join(' ');
    const r = spawnSync('bash', ['-c', `'${process.execPath}' '${BIN}' ${args} | head -c 10 >/dev/null; echo "\${PIPESTATUS[0]}"`], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(['0', '141']).toContain(r.stdout.trim());
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BurrowError } from '../../ts/errors';
import { authFiles, burrowAuthFiles, defaultAuthFile, getCredentials, login, logout, normalizeAuthKey, type AuthEnv } from '../../ts/image/auth';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-auth-test-'));
let n = 0;
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A fresh HOME and XDG_RUNTIME_DIR, and an environment naming only them. */
function sandbox(extra: Record<string, string> = {}): AuthEnv & { home: string; runtime: string } {
  const home = path.join(work, `home-${++n}`);
  const runtime = path.join(work, `run-${n}`);
  fs.mkdirSync(home, { recursive: true });
  fs.mkdirSync(runtime, { recursive: true });
  return { home, runtime, env: { HOME: home, XDG_RUNTIME_DIR: runtime, PATH: process.env.PATH, ...extra } };
}

function writeJson(p: string, v: unknown): void {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, JSON.stringify(v));
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('auth files', () => {
  it('are looked up in order: burrow, REGISTRY_AUTH_FILE, containers, docker', () => {
    const s = sandbox({ REGISTRY_AUTH_FILE: '/x/auth.json' });
    expect(authFiles(s).map((f) => f.file)).toEqual([
      path.join(s.runtime, 'burrow/auth.json'),
      path.join(s.home, '.config/burrow/auth.json'),
      '/x/auth.json',
      path.join(s.runtime, 'containers/auth.json'),
      path.join(s.home, '.config/containers/auth.json'),
      path.join(s.home, '.docker/config.json'),
    ]);
    const noRuntime: AuthEnv = { env: { HOME: s.home, DOCKER_CONFIG: '/dc' } };
    expect(burrowAuthFiles(noRuntime)).toEqual([path.join(s.home, '.config/burrow/auth.json')]);
    expect(authFiles(noRuntime).at(-1)?.file).toBe('/dc/config.json');
    expect(defaultAuthFile(s)).toBe(path.join(s.home, '.config/burrow/auth.json'));
  });

  it('normalises keys: schemes, /v1/ and /v2/, Docker Hub aliases', () => {
    expect(normalizeAuthKey('https://index.docker.io/v1/')).toBe('docker.io');
    expect(normalizeAuthKey('registry-1.docker.io')).toBe('docker.io');
    expect(normalizeAuthKey('http://LOCALHOST:5000/v2/')).toBe('localhost:5000');
    expect(normalizeAuthKey('quay.io/org/repo')).toBe('quay.io/org/repo');
  });

  it('finds credentials in the first file that has the host; a repository key is more specific', async () => {
    const s = sandbox();
    writeJson(path.join(s.home, '.config/containers/auth.json'), { auths: { 'quay.io': { auth: b64('podman:pw1') }, 'quay.io/org': { auth: b64('org:pw2') } } });
    writeJson(path.join(s.home, '.docker/config.json'), { auths: { 'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pw') }, 'quay.io': { auth: b64('docker:pw3') } } });
    expect(await getCredentials('quay.io', 'other/repo', s)).toMatchObject({ username: 'podman', password: 'pw1' });
    expect(await getCredentials('quay.io', 'org/repo', s)).toMatchObject({ username: 'org', password: 'pw2' });
    // A password may contain ':'.
    expect(await getCredentials('docker.io', 'library/alpine', s)).toMatchObject({ username: 'hubuser', password: 'hub:pw' });
    expect(await getCredentials('example.com', undefined, s)).toBeUndefined();
    // burrow's own file wins.
    login('quay.io', 'mine', 'pw4', undefined, s);
    expect(await getCredentials('quay.io', 'org/repo', s)).toMatchObject({ username: 'mine', password: 'pw4', source: path.join(s.home, '.config/burrow/auth.json') });
  });

  it('reads username/password and identitytoken fields', async () => {
    const s = sandbox();
    writeJson(path.join(s.runtime, 'containers/auth.json'), { auths: { 'a.example': { username: 'u', password: 'p' }, 'b.example': { identitytoken: 'refresh' } } });
    expect(await getCredentials('a.example', undefined, s)).toMatchObject({ username: 'u', password: 'p' });
    expect(await getCredentials('b.example', undefined, s)).toMatchObject({ identityToken: 'refresh' });
  });

  it('reports a broken file with its path (EAUTH_FILE)', async () => {
    const s = sandbox();
    const f = path.join(s.home, '.config/burrow/auth.json');
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, '{"auths": ');
    await expect(getCredentials('x.example', undefined, s)).rejects.toMatchObject({ code: 'EAUTH_FILE', message: expect.stringContaining(f) });
  });
});

describe('docker credential helpers', () => {
  function helper(dir: string, name: string, script: string): void {
    fs.mkdirSync(dir, { recursive: true });
    const p = path.join(dir, `docker-credential-${name}`);
    fs.writeFileSync(p, `#!/bin/sh\n${script}\n`);
    fs.chmodSync(p, 0o755);
  }

  it('asks credHelpers[host], then credsStore, with the server URL on stdin', async () => {
    const bin = path.join(work, `bin-${++n}`);
    const log = path.join(bin, 'log');
    helper(bin, 'per', `[ "$1" = get ] || exit 3; read url; echo "per $url" >> ${log}; printf '{"ServerURL":"%s","Username":"per-user","Secret":"per-secret"}' "$url"`);
    helper(bin, 'store', `read url; echo "store $url" >> ${log}; case "$url" in *nothing*) echo "credentials not found in native keychain"; exit 1;; esac; printf '{"Username":"<token>","Secret":"idtok"}'`);
    const s = sandbox({ PATH: `${bin}:${process.env.PATH}` });
    writeJson(path.join(s.home, '.docker/config.json'), { credsStore: 'store', credHelpers: { 'per.example:5000': 'per' }, auths: { 'nothing.example': {} } });
    expect(await getCredentials('per.example:5000', 'x', s)).toMatchObject({ username: 'per-user', password: 'per-secret', source: 'docker-credential-per' });
    expect(await getCredentials('docker.io', 'library/x', s)).toMatchObject({ identityToken: 'idtok' });
    expect(await getCredentials('nothing.example', undefined, s)).toBeUndefined();
    expect(fs.readFileSync(log, 'utf8').split('\n').filter(Boolean)).toEqual(['per per.example:5000', 'store https://index.docker.io/v1/', 'store nothing.example']);
  });

  it('reports a missing or failing helper (ECREDENTIAL_HELPER)', async () => {
    const bin = path.join(work, `bin-${++n}`);
    helper(bin, 'broken', 'echo "the keychain is locked" >&2; exit 2');
    const s = sandbox({ PATH: `${bin}:${process.env.PATH}` });
    writeJson(path.join(s.home, '.docker/config.json'), { credHelpers: { 'a.example': 'broken', 'b.example': 'absent-helper' } });
    await expect(getCredentials('a.example', undefined, s)).rejects.toMatchObject({ code: 'ECREDENTIAL_HELPER', message: expect.stringMatching(/keychain is locked/) });
    await expect(getCredentials('b.example', undefined, s)).rejects.toMatchObject({ code: 'ECREDENTIAL_HELPER', fix: expect.stringMatching(/docker-credential-absent-helper/) });
  });
});

describe('login and logout', () => {
  it('stores 0600 in a 0700 directory, atomically, keeping other entries and keys', () => {
    const s = sandbox();
    const f = path.join(s.home, '.config/burrow/auth.json');
    writeJson(f, { auths: { 'other.example': { auth: b64('o:p') } }, credHelpers: { 'x.example': 'y' } });
    expect(login('localhost:5000', 'me', 'secret', undefined, s)).toBe(f);
    expect(fs.statSync(f).mode & 0o777).toBe(0o600);
    const j = JSON.parse(fs.readFileSync(f, 'utf8'));
    expect(j.auths['localhost:5000'].auth).toBe(b64('me:secret'));
    expect(j.auths['other.example'].auth).toBe(b64('o:p'));
    expect(j.credHelpers).toEqual({ 'x.example': 'y' });
    // No temporary files are left next to it.
    expect(fs.readdirSync(path.dirname(f))).toEqual(['auth.json']);

    const fresh = sandbox();
    const g = login('https://index.docker.io/v1/', 'u', 'p', undefined, fresh);
    expect(fs.statSync(path.dirname(g)).mode & 0o777).toBe(0o700);
    expect(Object.keys(JSON.parse(fs.readFileSync(g, 'utf8')).auths)).toEqual(['docker.io']);
    expect(() => login('x.example', 'a:b', 'p', undefined, fresh)).toThrow(BurrowError);
  });

  it('replaces an older entry in the runtime file, which is looked up first', async () => {
    const s = sandbox();
    login('r.example', 'old', 'old', path.join(s.runtime, 'burrow/auth.json'), s);
    login('r.example', 'new', 'new', undefined, s);
    expect(await getCredentials('r.example', undefined, s)).toMatchObject({ username: 'new' });
  });

  it('logout removes burrow entries and names other tools that still have some', async () => {
    const s = sandbox();
    login('r.example', 'u', 'p', undefined, s);
    writeJson(path.join(s.home, '.docker/config.json'), { auths: { 'r.example': { auth: b64('d:p') } } });
    const r = logout('r.example', undefined, s);
    expect(r.removed).toEqual([path.join(s.home, '.config/burrow/auth.json')]);
    expect(r.remaining).toEqual([path.join(s.home, '.docker/config.json')]);
    expect(await getCredentials('r.example', undefined, s)).toMatchObject({ username: 'd' });
    expect(logout('r.example', undefined, s).removed).toEqual([]);
    expect(fs.statSync(path.join(s.home, '.config/burrow/auth.json')).mode & 0o777).toBe(0o600);
  });
});

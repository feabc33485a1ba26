/**
 * The registry client (ts/image/registry.ts) against Debian's docker-registry in its four test
 * modes (anonymous, htpasswd, token, tls), with images built by the harness from busybox-static
 * and pushed with skopeo. Runs as root and as the unprivileged test user; writes only under
 * os.tmpdir(). Proxies in this file count the bytes a resume downloads and cut a connection
 * to test retries.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BurrowError } from '../../ts/errors';
import { getCredentials, login, logout, type AuthEnv } from '../../ts/image/auth';
import { hostPlatform, MEDIA_TYPES } from '../../ts/image/manifest';
import { parseReference } from '../../ts/image/reference';
import { RegistryClient, type RegistryOptions, type RepoRef } from '../../ts/image/registry';
import { closeAllProxies, startProxy } from './image-helpers';
import { blobDataPath, startRegistry, type Registry, type RegistryByMode } from '../harness/registry.mjs';
import { blobPath, buildHostileImages, buildMainImage, buildMultiPlatformImage, buildSmallImage, pushImage, sha256File } from '../harness/images.mjs';
import type { BuiltImage, HostileImage, HostileName, MainImage, MultiPlatformImage } from '../harness/images.mjs';

const MiB = 1024 * 1024;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-registry-test-'));
/** One per mode, started by beforeAll (no test runs when it fails); afterAll stops those that started. */
const registries = {} as RegistryByMode;
const clients: RegistryClient[] = [];
const closers: (() => Promise<void>)[] = [];
let main: MainImage;
let multi: MultiPlatformImage;
let tamper: BuiltImage;
let pushSource: BuiltImage;
let hostile: Record<HostileName, HostileImage>;
let n = 0;

const HOST_ARCH = hostPlatform().architecture === 'arm64' ? 'arm64' : 'amd64';
const OTHER_ARCH = HOST_ARCH === 'amd64' ? 'arm64' : 'amd64';

beforeAll(async () => {
  main = buildMainImage(path.join(work, 'main'), { tag: 'v1' });
  multi = buildMultiPlatformImage(path.join(work, 'multi'));
  tamper = buildSmallImage(path.join(work, 'tamper'), { tag: 't' });
  pushSource = buildSmallImage(path.join(work, 'push'), { tag: 'p' });
  hostile = buildHostileImages(path.join(work, 'hostile'));
  registries.anonymous = await startRegistry({ mode: 'anonymous' });
  registries.htpasswd = await startRegistry({ mode: 'htpasswd' });
  registries.token = await startRegistry({ mode: 'token' });
  registries.tls = await startRegistry({ mode: 'tls' });
  const { anonymous, htpasswd, token, tls } = registries;
  await Promise.all([
    pushImage(anonymous, main, 'test/main'),
    pushImage(anonymous, multi, 'test/multi'),
    pushImage(anonymous, multi, 'library/burrow-mirrored', '1'),
    pushImage(anonymous, tamper, 'test/tamper'),
    ...Object.values(hostile).map((h) => pushImage(anonymous, h, `hostile/${h.name}`)),
    pushImage(htpasswd, multi, 'test/multi'),
    pushImage(token, multi, 'test/multi'),
    pushImage(token, pushSource, 'test/source'),
    pushImage(tls, multi, 'test/multi'),
  ]);
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const close of closers) await close().catch(() => undefined);
  await closeAllProxies();
  for (const r of Object.values(registries)) await r.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

/** A client that never reads the real user's auth files or certs.d. */
function client(opts: RegistryOptions = {}): RegistryClient {
  const c = new RegistryClient({ credentials: async () => undefined, certDirs: [], ...opts });
  clients.push(c);
  return c;
}

const credsOf = (r: RegistryByMode['htpasswd' | 'token']): RegistryOptions['credentials'] => async () => ({ username: r.user, password: r.password, source: 'the test' });
const ref = (r: Registry | string, rest: string) => parseReference(`${typeof r === 'string' ? r : r.host}/${rest}`);
const repo = (r: Registry | string, repository: string): RepoRef => ({ registry: typeof r === 'string' ? r : r.host, repository });
const dest = (name: string): string => path.join(work, 'dl', `${++n}-${name.replace(/[:/]/g, '_')}`);

async function rejection(p: Promise<unknown>): Promise<BurrowError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(BurrowError);
    return err as BurrowError;
  }
  throw new Error('expected a rejection');
}

function leftovers(file: string): string[] {
  const dir = path.dirname(file);
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.startsWith(path.basename(file))) : [];
}

describe('anonymous registry', () => {
  it('fetches an OCI manifest by tag and by digest, verified, and its config', async () => {
    const c = client();
    const m = await c.getManifest(ref(registries.anonymous, 'test/main:v1'));
    expect(m.digest).toBe(main.manifest.digest);
    expect(m.mediaType).toBe(MEDIA_TYPES.ociManifest);
    expect(m.bytes.equals(main.manifestBytes)).toBe(true);
    expect(m.index).toBeUndefined();
    expect(m.manifest.layers.map((l) => l.mediaType)).toEqual([MEDIA_TYPES.ociLayerGzip, MEDIA_TYPES.ociLayerGzip, MEDIA_TYPES.ociLayerZstd, MEDIA_TYPES.ociLayerGzip]);
    const byDigest = await c.getManifest(ref(registries.anonymous, `test/main@${main.manifest.digest}`));
    expect(byDigest.digest).toBe(main.manifest.digest);
    const { config } = await c.getConfig(repo(registries.anonymous, 'test/main'), m.manifest);
    expect(config.rootfs.diff_ids).toEqual(main.layers.map((l: { diffId: string }) => l.diffId));
    expect(config.config.Cmd).toEqual(['/bin/sh']);
    expect(config.config.WorkingDir).toBe('/data');
    expect(Object.keys(config.config.ExposedPorts ?? {})).toEqual(['8080/tcp']);
  });

  it('resolves an index to this host platform or to the one asked for', async () => {
    const c = client();
    const r = ref(registries.anonymous, 'test/multi:multi');
    const mine = await c.getManifest(r);
    expect(mine.digest).toBe(multi.images[HOST_ARCH].manifest.digest);
    expect(mine.index?.digest).toBe(multi.index.digest);
    expect(mine.index?.manifest.manifests).toHaveLength(2);
    const other = await c.getManifest(r, { platform: OTHER_ARCH === 'arm64' ? { os: 'linux', architecture: 'arm64', variant: 'v8' } : { os: 'linux', architecture: 'amd64' } });
    expect(other.digest).toBe(multi.images[OTHER_ARCH].manifest.digest);
    const { config } = await c.getConfig(repo(registries.anonymous, 'test/multi'), other.manifest);
    expect(config.architecture).toBe(OTHER_ARCH);
    const raw = await c.getRawManifest(r);
    expect(raw.manifest.kind).toBe('index');
    expect(raw.digest).toBe(multi.index.digest);
    const e = await rejection(c.getManifest(r, { platform: { os: 'linux', architecture: 's390x' } }));
    expect(e.code).toBe('EPLATFORM_NOT_FOUND');
  });

  it('downloads layers in parallel, each verified, and leaves no .partial', async () => {
    const c = client();
    const last = new Map<string, number>();
    const results = await Promise.all(
      main.layers.map((l: { digest: string; size: number; mediaType: string }) => {
        const d = dest(l.digest);
        return c.fetchBlob(repo(registries.anonymous, 'test/main'), l, d, { onProgress: (p) => last.set(p.digest, p.completed) }).then((res) => ({ l, d, res }));
      }),
    );
    for (const { l, d, res } of results) {
      expect(res.path).toBe(d);
      expect(res.resumedFrom).toBe(0);
      expect(fs.statSync(d).size).toBe(l.size);
      expect(sha256File(d)).toBe(l.digest);
      expect(last.get(l.digest)).toBe(l.size);
      expect(leftovers(d)).toEqual([path.basename(d)]);
    }
  });

  it('resumes a .partial with a Range request and downloads only the rest', async () => {
    const big = main.layers[3]!;
    const proxy = await startProxy(registries.anonymous.host);
    const d = dest('resume');
    const keep = big.size - 4 * MiB;
    fs.mkdirSync(path.dirname(d), { recursive: true });
    const src = fs.openSync(blobPath(main.layout, big.digest), 'r');
    const buf = Buffer.alloc(keep);
    fs.readSync(src, buf, 0, keep, 0);
    fs.closeSync(src);
    fs.writeFileSync(`${d}.partial`, buf);
    const res = await client().fetchBlob(repo(proxy.host, 'test/main'), big, d);
    expect(res.resumedFrom).toBe(keep);
    expect(sha256File(d)).toBe(big.digest);
    expect(fs.existsSync(`${d}.partial`)).toBe(false);
    expect(proxy.heads.some((h) => new RegExp(`^range: bytes=${keep}-$`, 'im').test(h))).toBe(true);
    expect(proxy.bytesDown).toBeGreaterThan(4 * MiB);
    expect(proxy.bytesDown).toBeLessThan(4 * MiB + 64 * 1024);
  });

  it('continues with Range after a dropped connection', async () => {
    const big = main.layers[3]!;
    const proxy = await startProxy(registries.anonymous.host, { dropAfter: 8 * MiB });
    const d = dest('dropped');
    const res = await client().fetchBlob(repo(proxy.host, 'test/main'), big, d);
    expect(proxy.drops).toBe(1);
    expect(res.requests).toBeGreaterThanOrEqual(2);
    expect(sha256File(d)).toBe(big.digest);
    // What arrived before the cut was kept, not fetched again (a restart would cost 8 MiB more;
    // what was still in socket buffers at the cut is fetched twice).
    expect(proxy.bytesDown).toBeLessThan(big.size + 4 * MiB);
    expect(leftovers(d)).toEqual([path.basename(d)]);
  });

  it('a canceled download leaves only a .partial, which the next download continues', async () => {
    const big = main.layers[3]!;
    const d = dest('canceled');
    const ac = new AbortController();
    const e = await rejection(
      client().fetchBlob(repo(registries.anonymous, 'test/main'), big, d, {
        signal: ac.signal,
        onProgress: (p) => p.completed > 16 * MiB && ac.abort(),
      }),
    );
    expect(e.code).toBe('ECANCELED');
    expect(fs.existsSync(d)).toBe(false);
    const partial = fs.statSync(`${d}.partial`).size;
    expect(partial).toBeGreaterThan(16 * MiB);
    expect(partial).toBeLessThan(big.size);
    const res = await client().fetchBlob(repo(registries.anonymous, 'test/main'), big, d);
    expect(res.resumedFrom).toBe(partial);
    expect(sha256File(d)).toBe(big.digest);
  });

  it('a tampered blob is EDIGEST_MISMATCH and leaves nothing behind', async () => {
    const layer = tamper.layers[0]!;
    const data = blobDataPath(registries.anonymous, layer.digest);
    const bytes = fs.readFileSync(data);
    bytes.writeUInt8(bytes.readUInt8(bytes.length >> 1) ^ 0xff, bytes.length >> 1); // same size, other content
    fs.writeFileSync(data, bytes);
    const d = dest('tampered');
    const e = await rejection(client().fetchBlob(repo(registries.anonymous, 'test/tamper'), layer, d));
    expect(e.code).toBe('EDIGEST_MISMATCH');
    const actual = `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
    expect(e.message).toContain(`expected digest ${layer.digest}`);
    expect(e.message).toContain(`got ${actual}`);
    expect(leftovers(d)).toEqual([]);
    // The same through the in-memory path.
    const e2 = await rejection(client().fetchBlobBytes(repo(registries.anonymous, 'test/tamper'), layer, 1 * MiB));
    expect(e2.code).toBe('EDIGEST_MISMATCH');
  });

  it('a tampered manifest is EDIGEST_MISMATCH, by tag (Docker-Content-Digest) and by digest', async () => {
    const data = blobDataPath(registries.anonymous, tamper.manifest.digest);
    const text = fs.readFileSync(data, 'utf8');
    // Still valid JSON of the same size, so the registry serves it.
    fs.writeFileSync(data, text.replace('tar+gzip', 'tar+gzIp'));
    const c = client();
    for (const r of [ref(registries.anonymous, 'test/tamper:t'), ref(registries.anonymous, `test/tamper@${tamper.manifest.digest}`)]) {
      const e = await rejection(c.getManifest(r));
      expect(e.code).toBe('EDIGEST_MISMATCH');
      expect(e.message).toContain(tamper.manifest.digest);
    }
  });

  it('reports a missing manifest or blob as EREGISTRY_NOT_FOUND', async () => {
    const c = client();
    const e = await rejection(c.getManifest(ref(registries.anonymous, 'test/main:nope')));
    expect(e.code).toBe('EREGISTRY_NOT_FOUND');
    expect(e.message).toMatch(/manifest unknown/);
    const e2 = await rejection(c.getManifest(ref(registries.anonymous, 'test/absent:v1')));
    expect(e2.code).toBe('EREGISTRY_NOT_FOUND');
    const missing = { mediaType: MEDIA_TYPES.ociLayerGzip, digest: `sha256:${'0'.repeat(64)}`, size: 10 };
    const d = dest('missing');
    const e3 = await rejection(c.fetchBlob(repo(registries.anonymous, 'test/main'), missing, d));
    expect(e3.code).toBe('EREGISTRY_NOT_FOUND');
    expect(leftovers(d)).toEqual([]);
  });

  it('reports a size that disagrees with the descriptor as ESIZE_MISMATCH', async () => {
    const l = main.layers[1]!;
    const d = dest('size');
    const e = await rejection(client().fetchBlob(repo(registries.anonymous, 'test/main'), { ...l, size: l.size - 1 }, d));
    expect(e.code).toBe('ESIZE_MISMATCH');
    expect(leftovers(d)).toEqual([]);
  });

  it('reports a registry nobody listens on as EREGISTRY_UNREACHABLE, naming the URL', async () => {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as net.AddressInfo).port;
    await new Promise((r) => s.close(r));
    const e = await rejection(client().getManifest(ref(`127.0.0.1:${port}`, 'x:y')));
    expect(e.code).toBe('EREGISTRY_UNREACHABLE');
    expect(e.message).toContain(`127.0.0.1:${port}/v2/x/manifests/y`);
  });

  it('pulls docker.io images from a mirror, trying the next mirror when one is down', async () => {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const dead = `127.0.0.1:${(s.address() as net.AddressInfo).port}`;
    await new Promise((r) => s.close(r));
    const c = client({ mirrors: { 'docker.io': [dead, `http://${registries.anonymous.host}`] } });
    const r = parseReference('burrow-mirrored:1');
    const m = await c.getManifest(r);
    expect(m.source).toBe(registries.anonymous.host);
    expect(m.digest).toBe(multi.images[HOST_ARCH].manifest.digest);
    const l = m.manifest.layers[0]!;
    const d = dest('mirrored');
    const res = await c.fetchBlob(r, l, d);
    expect(res.source).toBe(`${registries.anonymous.host}/library/burrow-mirrored`);
    expect(sha256File(d)).toBe(l.digest);
  });

  it('pushes a blob and a manifest to another repository, mounting what it can', async () => {
    const c = client();
    const target = ref(registries.anonymous, 'test/pushed-anon:x');
    const layer = main.layers[1]!;
    expect(await c.blobExists(target, layer.digest)).toBe(false);
    expect(await c.mountBlob(target, layer.digest, 'test/main')).toBe(true);
    expect(await c.blobExists(target, layer.digest)).toBe(true);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [main.layers[1]!.diffId] } }));
    const cfgFile = path.join(work, `cfg-${++n}.json`);
    fs.writeFileSync(cfgFile, config);
    const cfgDesc = { mediaType: MEDIA_TYPES.ociConfig, digest: `sha256:${crypto.createHash('sha256').update(config).digest('hex')}`, size: config.length };
    await c.uploadBlob(target, cfgFile, cfgDesc);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: cfgDesc, layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }] }));
    const digest = await c.putManifest(target, manifest, MEDIA_TYPES.ociManifest);
    const back = await client().getManifest(target);
    expect(back.digest).toBe(digest);
    expect(back.bytes.equals(manifest)).toBe(true);
  });
});

/** Entry names of a tar (ustar/pax, as the harness writes them). */
function tarNames(tar: Buffer): string[] {
  const names: string[] = [];
  let paxPath: string | undefined;
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const field = (a: number, l: number): string => h.subarray(a, a + l).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = field(156, 1);
    const body = tar.subarray(off + 512, off + 512 + size);
    if (type === 'x') paxPath = /\d+ path=(.*)\n/.exec(body.toString('utf8'))?.[1];
    else {
      const prefix = field(345, 155);
      names.push(paxPath ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100)));
      paxPath = undefined;
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

describe('hostile test images', () => {
  it('are served unchanged, hostile entries included', async () => {
    const c = client();
    for (const h of Object.values(hostile)) {
      const m = await c.getManifest(ref(registries.anonymous, `hostile/${h.name}:latest`));
      expect(m.digest).toBe(h.manifest.digest);
      const layer = await c.fetchBlobBytes(repo(registries.anonymous, `hostile/${h.name}`), m.manifest.layers[0]!, 1 * MiB);
      expect(tarNames(zlib.gunzipSync(layer))).toEqual(h.entries.map((e: { name: string }) => e.name));
    }
    expect(hostile.dotdot.entries.map((e: { name: string }) => e.name)).toContain('../escape-dotdot.txt');
    expect(hostile.symlink.entries.map((e: { name: string }) => e.name)).toEqual(['link', 'link/evil', 'rel', 'rel/burrow-hostile-evil2']);
  });
});

describe('htpasswd registry (Basic)', () => {
  const r = () => registries.htpasswd;

  it('refuses anonymous pulls with EREGISTRY_AUTH and the login fix', async () => {
    const e = await rejection(client().getManifest(ref(r(), 'test/multi:multi')));
    expect(e.code).toBe('EREGISTRY_AUTH');
    expect(e.fix).toBe(`burrow login ${r().host}`);
    expect(e.message).toMatch(/requires authentication/);
  });

  it('refuses a wrong password, naming where it came from', async () => {
    const e = await rejection(client({ credentials: async () => ({ username: r().user, password: 'wrong', source: '/some/auth.json' }) }).getManifest(ref(r(), 'test/multi:multi')));
    expect(e.code).toBe('EREGISTRY_AUTH');
    expect(e.message).toContain('/some/auth.json');
    expect(e.fix).toBe(`burrow login ${r().host}`);
  });

  it('pulls with credentials', async () => {
    const c = client({ credentials: credsOf(r()) });
    const m = await c.getManifest(ref(r(), 'test/multi:multi'));
    expect(m.digest).toBe(multi.images[HOST_ARCH].manifest.digest);
    const l = m.manifest.layers[0]!;
    const d = dest('basic');
    await c.fetchBlob(ref(r(), 'test/multi:multi'), l, d);
    expect(sha256File(d)).toBe(l.digest);
  });

  it('login and logout round trip through the auth file', async () => {
    const home = fs.mkdtempSync(path.join(work, 'home-'));
    const authEnv: AuthEnv = { env: { HOME: home, PATH: process.env.PATH } };
    const c = client();
    expect((await rejection(c.checkLogin(r().host, { username: r().user, password: 'wrong' }))).code).toBe('EREGISTRY_AUTH');
    await c.checkLogin(r().host, { username: r().user, password: r().password });
    const file = login(r().host, r().user, r().password, undefined, authEnv);
    expect(file).toBe(path.join(home, '.config', 'burrow', 'auth.json'));
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(await getCredentials(r().host, 'test/multi', authEnv)).toMatchObject({ username: r().user });
    const m = await client({ credentials: undefined, authEnv }).getManifest(ref(r(), 'test/multi:multi'));
    expect(m.digest).toBe(multi.images[HOST_ARCH].manifest.digest);
    expect(logout(r().host, undefined, authEnv).removed).toEqual([file]);
    const e = await rejection(client({ credentials: undefined, authEnv }).getManifest(ref(r(), 'test/multi:multi')));
    expect(e.code).toBe('EREGISTRY_AUTH');
    expect(e.fix).toBe(`burrow login ${r().host}`);
  });
});

describe('token registry (Bearer)', () => {
  const r = () => registries.token;

  it('refuses anonymous pulls with EREGISTRY_AUTH and the login fix', async () => {
    const e = await rejection(client().getManifest(ref(r(), 'test/multi:multi')));
    expect(e.code).toBe('EREGISTRY_AUTH');
    expect(e.fix).toBe(`burrow login ${r().host}`);
  });

  it('refuses wrong credentials at the token server', async () => {
    const e = await rejection(client({ credentials: async () => ({ username: r().user, password: 'wrong', source: 'the test' }) }).getManifest(ref(r(), 'test/multi:multi')));
    expect(e.code).toBe('EREGISTRY_AUTH');
    expect(e.message).toMatch(/token server/);
  });

  it('pulls with one token per scope, shared by parallel downloads', async () => {
    const c = client({ credentials: credsOf(r()) });
    const before = r().stats.tokenRequests;
    const mref = ref(r(), 'test/multi:multi');
    const m = await c.getManifest(mref);
    expect(m.digest).toBe(multi.images[HOST_ARCH].manifest.digest);
    const other = await c.getManifest(mref, { platform: { os: 'linux', architecture: OTHER_ARCH } });
    const layers = [m.manifest.layers[0]!, other.manifest.layers[0]!, m.manifest.config, other.manifest.config];
    const ds = layers.map((l) => dest(l.digest));
    await Promise.all(layers.map((l, i) => c.fetchBlob(mref, l, ds[i]!)));
    layers.forEach((l, i) => expect(sha256File(ds[i]!)).toBe(l.digest));
    expect(r().stats.tokenRequests - before).toBe(1);
    // A fresh client whose first requests run in parallel also asks only once.
    const c2 = client({ credentials: credsOf(r()) });
    const before2 = r().stats.tokenRequests;
    await Promise.all(layers.map((l) => c2.fetchBlobBytes(mref, l, 1 * MiB)));
    expect(r().stats.tokenRequests - before2).toBe(1);
  });

  it('checks a login with a token request', async () => {
    const c = client();
    await c.checkLogin(r().host, { username: r().user, password: r().password });
    expect((await rejection(c.checkLogin(r().host, { username: r().user, password: 'nope' }))).code).toBe('EREGISTRY_AUTH');
  });

  it('pushes to another repository with a cross-repository mount', async () => {
    const c = client({ credentials: credsOf(r()) });
    const target = ref(r(), 'test/pushed:v1');
    const layer = pushSource.layers[0]!;
    expect(await c.blobExists(target, layer.digest)).toBe(false);
    expect(await c.mountBlob(target, layer.digest, 'test/source')).toBe(true);
    expect(await c.blobExists(target, layer.digest)).toBe(true);
    // The mount asked for pull on the source and push on the target in one token.
    expect(r().stats.scopes.some((s: string[]) => s.includes('repository:test/source:pull') && s.includes('repository:test/pushed:pull,push'))).toBe(true);
    // A config that is not in the registry yet is uploaded.
    const cfg = { ...pushSource.configJson, config: { Cmd: ['/bin/true'] } };
    const bytes = Buffer.from(JSON.stringify(cfg));
    const cfgFile = path.join(work, `cfg-${++n}.json`);
    fs.writeFileSync(cfgFile, bytes);
    const cfgDesc = { mediaType: MEDIA_TYPES.ociConfig, digest: `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length };
    expect(await c.blobExists(target, cfgDesc.digest)).toBe(false);
    await c.uploadBlob(target, cfgFile, cfgDesc);
    expect(await c.blobExists(target, cfgDesc.digest)).toBe(true);
    // A mount that cannot happen (the source lacks the blob) is refused quietly.
    expect(await c.mountBlob(ref(r(), 'test/other:v1'), `sha256:${'1'.repeat(64)}`, 'test/source')).toBe(false);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: cfgDesc, layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }] }));
    const digest = await c.putManifest(target, manifest, MEDIA_TYPES.ociManifest);
    const back = await client({ credentials: credsOf(r()) }).getManifest(target);
    expect(back.digest).toBe(digest);
    const { config } = await c.getConfig(target, back.manifest);
    expect(config.config.Cmd).toEqual(['/bin/true']);
  });

  it('asks for a new token when the registry stops accepting a cached one', async () => {
    // A stand-in registry whose accepted token changes, as when a token is revoked early.
    let generation = 1;
    let tokenRequests = 0;
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: { mediaType: MEDIA_TYPES.ociConfig, digest: `sha256:${'a'.repeat(64)}`, size: 2 }, layers: [] }));
    const digest = `sha256:${crypto.createHash('sha256').update(body).digest('hex')}`;
    const server = http.createServer((req, res) => {
      if (req.url?.startsWith('/token')) {
        tokenRequests++;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `t${generation}`, expires_in: 300 }));
        return;
      }
      if (req.url === '/v2/broken/manifests/x') {
        res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: 'the disk is on fire', detail: {} }] }));
        return;
      }
      if (req.headers.authorization !== `Bearer t${generation}`) {
        const port = (server.address() as net.AddressInfo).port;
        res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="fake",scope="repository:x:pull"` }).end();
        return;
      }
      res.writeHead(200, { 'content-type': MEDIA_TYPES.ociManifest, 'docker-content-digest': digest }).end(body);
    });
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    closers.push(() => new Promise((res) => server.close(() => res())));
    const host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const c = client();
    expect((await c.getRawManifest(ref(host, 'x:latest'))).digest).toBe(digest);
    expect((await c.getRawManifest(ref(host, 'x:latest'))).digest).toBe(digest);
    expect(tokenRequests).toBe(1);
    generation = 2;
    expect((await c.getRawManifest(ref(host, 'x:latest'))).digest).toBe(digest);
    expect(tokenRequests).toBe(2);
    // Other HTTP errors are EREGISTRY with the status and the registry's own message.
    const e = await rejection(c.getRawManifest(ref(host, 'broken:x')));
    expect(e.code).toBe('EREGISTRY');
    expect(e.message).toMatch(/500 Internal Server Error: UNKNOWN: the disk is on fire/);
    // An empty blob needs no request at all.
    const d = dest('empty');
    const empty = { mediaType: MEDIA_TYPES.ociLayer, digest: `sha256:${crypto.createHash('sha256').digest('hex')}`, size: 0 };
    await c.fetchBlob(repo(host, 'x'), empty, d);
    expect(fs.statSync(d).size).toBe(0);
  });
});

describe('TLS registry', () => {
  const r = () => registries.tls;

  it('refuses a certificate from an unknown CA with EREGISTRY_TLS and says where the CA goes', async () => {
    const e = await rejection(client().getManifest(ref(r(), 'test/multi:multi')));
    expect(e.code).toBe('EREGISTRY_TLS');
    expect(e.fix).toContain(`certs.d/${r().host}/ca.crt`);
    // The other way out names where a registry is marked insecure; no OpenSSL wording.
    expect(e.fix).toMatch(/\[registries\].*config\.toml.*BURROW_INSECURE_REGISTRIES/);
    expect(e.message).toMatch(/: it is (self-signed|signed) by a CA this host does not trust$/);
  });

  it('trusts the CA from a certs.d directory', async () => {
    const c = client({ certDirs: [path.join(work, 'no-such-dir'), r().certsDir] });
    const mref = ref(r(), 'test/multi:multi');
    const m = await c.getManifest(mref);
    expect(m.digest).toBe(multi.images[HOST_ARCH].manifest.digest);
    const l = m.manifest.layers[0]!;
    const d = dest('tls');
    await c.fetchBlob(mref, l, d);
    expect(sha256File(d)).toBe(l.digest);
  });

  it('skips verification with tlsVerify: false', async () => {
    const m = await client({ tlsVerify: false }).getManifest(ref(r(), 'test/multi:multi'));
    expect(m.digest).toBe(multi.images[HOST_ARCH].manifest.digest);
  });
});

/**
 * `burrow push`: within a registry by cross-repository mounts (no blob bytes sent), skipping
 * what the repository has, and to another registry with token authentication, uploading; the
 * result is checked with skopeo and by pulling it back. Registries and images from the test
 * harness; every test has its own store and HOME under os.tmpdir().
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endImageTest, exec, sandbox, sha256, tmpdir } from './image-helpers';
import { startRegistry, type Registry, type RegistryByMode } from '../harness/registry.mjs';
import { buildMainImage, pushImage, ustar, type MainImage } from '../harness/images.mjs';

const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-push-test-'));
let anon: Registry;
let token: RegistryByMode['token'];
let main: MainImage;
let ref: string;

beforeAll(async () => {
  main = buildMainImage(path.join(work, 'main'), { tag: 'v1', bigSize: 8 * 1024 * 1024 });
  anon = await startRegistry({ mode: 'anonymous' });
  token = await startRegistry({ mode: 'token' });
  ref = await pushImage(anon, main, 'test/main');
}, 60_000);

afterAll(() => endImageTest(work, [anon, token]));

/** Blob uploads the registry saw for a repository (from its access log). */
const uploads = (r: Registry, repo: string): number => r.log().split('\n').filter((l) => l.includes(`"POST /v2/${repo}/blobs/uploads/ `) || new RegExp(`"(PUT|PATCH) /v2/${repo}/blobs/uploads/`).test(l)).length;

const blobs = (): string[] => [...main.layers.map((l: { digest: string }) => l.digest), main.config.digest];

describe('burrow push', () => {
  it('pushes inside a registry by mounting every blob, skips them all the next time, and keeps the manifest digest', async () => {
    const sb = sandbox(work, 'mount');
    await sb.ok(['pull', '-q', ref]);
    const dest = `${anon.host}/test/copy:v1`;
    const first = await sb.ok(['push', ref, dest]);
    for (const d of blobs()) expect(first.stderr).toContain(`${d.slice(7, 19)}: Mounted from test/main`);
    expect(first.stderr).toContain(`v1: digest: ${main.manifest.digest} size: ${main.manifest.size}`);
    expect(uploads(anon, 'test/copy')).toBe(0);
    const raw = await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${dest}`], { env: { ...sb.env, TMPDIR: sb.dir } });
    expect(sha256(raw.stdout)).toBe(main.manifest.digest);

    const second = await sb.ok(['push', '-q', ref, dest]);
    expect(second.stdout).toBe(`${main.manifest.digest}\n`);
    expect(uploads(anon, 'test/copy')).toBe(0);
    const again = await sb.ok(['push', ref, dest]);
    for (const d of blobs()) expect(again.stderr).toContain(`${d.slice(7, 19)}: Layer already exists`);
    // The image now knows the digest it has there.
    const digests = (await sb.ok(['images', '--digests', '--format', '{{.Repository}} {{.Digest}}'])).stdout;
    expect(digests).toBe(`${anon.host}/test/main ${main.manifest.digest}\n`);
    const rec = JSON.parse(fs.readFileSync(path.join(sb.root, 'images', `${main.config.digest.slice(7)}.json`), 'utf8'));
    expect(rec.repoDigests).toEqual(expect.arrayContaining([`${anon.host}/test/main@${main.manifest.digest}`, `${anon.host}/test/copy@${main.manifest.digest}`]));
  });

  it('pushes to a token registry after login, uploading, and the image pulls back the same', async () => {
    const sb = sandbox(work, 'token');
    await sb.ok(['pull', '-q', ref]);
    const dest = `${token.host}/pushed/main:v2`;
    const denied = await sb.burrow(['push', ref, dest]);
    expect(denied.code).toBe(125);
    expect(denied.stderr).toContain(`fix: burrow login ${token.host}`);
    await sb.ok(['login', token.host, '-u', token.user, '--password-stdin'], { input: token.password });
    const r = await sb.ok(['push', ref, dest]);
    for (const d of blobs()) expect(r.stderr).toContain(`${d.slice(7, 19)}: Pushed`);
    expect(r.stderr).toContain(`v2: digest: ${main.manifest.digest}`);
    expect(token.stats.scopes.flat()).toContain('repository:pushed/main:pull,push');
    // One upload per blob (this is what the mount test expects none of).
    expect(uploads(token, 'pushed/main')).toBeGreaterThanOrEqual(blobs().length);

    const back = sandbox(work, 'token-back');
    fs.cpSync(path.join(sb.home, '.config'), path.join(back.home, '.config'), { recursive: true });
    expect((await back.ok(['pull', '-q', dest])).stdout.trim()).toBe(main.config.digest);
    const run = await back.burrow(['run', '--rm', dest, 'sh', '-c', 'cat /zstd/hello.txt; ls -A /opaque']);
    expect(run.stdout).toBe('from a zstd layer\nnew.txt\n');
  });

  it('pushes an imported image, and refuses to push what is not there', async () => {
    const sb = sandbox(work, 'imported');
    const tarball = path.join(sb.dir, 'rootfs.tar.gz');
    fs.writeFileSync(tarball, zlib.gzipSync(ustar([{ name: 'hello.txt', type: 'file', content: 'imported\n' }])));
    const id = (await sb.ok(['import', tarball, 'local/imported:1'])).stdout.trim();
    const dest = `${anon.host}/test/imported:1`;
    await sb.ok(['push', 'local/imported:1', dest]);
    const back = sandbox(work, 'imported-back');
    expect((await back.ok(['pull', '-q', dest])).stdout.trim()).toBe(id);
    const diff = JSON.parse(fs.readFileSync(path.join(back.root, 'images', `${id.slice(7)}.json`), 'utf8')).layers[0].diffId;
    expect(fs.readFileSync(path.join(back.root, 'layers', diff.slice(7), 'hello.txt'), 'utf8')).toBe('imported\n');

    const missing = await sb.burrow(['push', 'local/nothing:1', dest]);
    expect(missing.code).toBe(125);
    expect(missing.stderr).toMatch(/no such image: local\/nothing:1/);
    const noDest = await sb.burrow(['push', id.slice(7, 19)]);
    expect(noDest.code).toBe(125);
    expect(noDest.stderr).toMatch(/give a destination/);
  });
});

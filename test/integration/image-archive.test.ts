/**
 * `burrow save` and `burrow load`: docker-archive and oci-archive, checked against skopeo in
 * both directions (skopeo reads what burrow writes, burrow loads what skopeo writes), plus
 * damaged and hostile archives. Images come from the harness (busybox-static, whiteouts, a
 * zstd layer) through a test registry; every test has its own store under os.tmpdir().
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endImageTest, exec, layerRecords, sandbox, sha256, tmpdir, type Sandbox } from './image-helpers';
import { startRegistry, type Registry } from '../harness/registry.mjs';
import { buildMainImage, HOSTILE, pushImage, ustar, type MainImage, type UstarEntry } from '../harness/images.mjs';

const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-archive-test-'));
let registry: Registry;
let main: MainImage;
let ref: string;

beforeAll(async () => {
  main = buildMainImage(path.join(work, 'main'), { tag: 'v1', bigSize: 8 * 1024 * 1024 });
  registry = await startRegistry({ mode: 'anonymous' });
  ref = await pushImage(registry, main, 'test/main');
}, 60_000);

afterAll(() => endImageTest(work, [registry]));

const skopeo = (sb: Sandbox, args: string[]) => exec('skopeo', ['--insecure-policy', ...args], { env: { ...sb.env, TMPDIR: sb.dir }, timeoutMs: 60_000 });

/** A container of the image shows the layers applied: every layer kind of the main image. */
async function checkRootfs(sb: Sandbox, image: string): Promise<void> {
  const r = await sb.burrow(['run', '--rm', image, 'sh', '-c', 'cat /zstd/hello.txt /etc/motd; ls -A /opaque; ls /todelete.txt /deldir 2>&1; stat -c "%u %h" /home/user/notes.txt /data/hard1; readlink /data/chain1; sha256sum /big/random.bin']);
  expect(r.code, r.stderr).toBe(0);
  const lines = r.stdout.trim().split('\n');
  expect(lines.slice(0, 3)).toEqual(['from a zstd layer', 'layer 2', 'new.txt']);
  expect(lines[3]).toMatch(/todelete\.txt: No such file/);
  expect(lines[4]).toMatch(/deldir: No such file/);
  expect(lines.slice(5, 8)).toEqual(['1000 1', '0 2', 'chain2']);
  expect(`sha256:${lines[8]!.split(' ')[0]}`).toBe(main.expect.big.digest);
}

/** Names and sizes of a tar's entries, read with GNU tar (an independent reader). */
async function tarList(file: string): Promise<string[]> {
  const r = await exec('tar', ['-tf', file]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim().split('\n');
}

describe('burrow save / load', () => {
  it('writes a docker-archive that skopeo reads and burrow loads back as the same image', async () => {
    const sb = sandbox(work, 'docker-archive');
    await sb.ok(['pull', '-q', ref]);
    const file = path.join(sb.dir, 'main.tar');
    await sb.ok(['save', '-o', file, ref]);
    const names = await tarList(file);
    const diffs = main.layers.map((l: { diffId: string }) => l.diffId.slice(7));
    // Layers uncompressed and named by diff id, as `docker save` has them (the zstd one stays
    // compressed: see ts/image/archive.ts).
    expect(names.sort()).toEqual([`${main.config.digest.slice(7)}.json`, `${diffs[0]}.tar`, `${diffs[1]}.tar`, `${diffs[2]}.tar.zst`, `${diffs[3]}.tar`, 'manifest.json'].sort());
    const x = await exec('tar', ['-xOf', file, 'manifest.json']);
    expect(JSON.parse(x.stdout)).toEqual([{ Config: `${main.config.digest.slice(7)}.json`, RepoTags: [ref], Layers: [`${diffs[0]}.tar`, `${diffs[1]}.tar`, `${diffs[2]}.tar.zst`, `${diffs[3]}.tar`] }]);
    // The same images saved twice are the same bytes.
    const again = path.join(sb.dir, 'again.tar');
    await sb.ok(['save', '-o', again, ref]);
    expect(sha256(fs.readFileSync(again))).toBe(sha256(fs.readFileSync(file)));

    // skopeo finds the same config and layers in it, and reads every layer (decompressing the
    // zstd one) when it copies the image to an OCI layout.
    const config = await skopeo(sb, ['inspect', '--raw', '--config', `docker-archive:${file}`]);
    expect(sha256(config.stdout)).toBe(main.config.digest);
    expect(JSON.parse((await skopeo(sb, ['inspect', `docker-archive:${file}`])).stdout).Layers).toEqual(main.layers.map((l: { diffId: string }) => l.diffId));
    const layout = path.join(sb.dir, 'oci');
    const copy = await skopeo(sb, ['copy', '--quiet', `docker-archive:${file}`, `oci:${layout}:x`]);
    expect(copy.code, copy.stderr).toBe(0);
    const idx = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8'));
    const m = JSON.parse(fs.readFileSync(path.join(layout, 'blobs', 'sha256', idx.manifests[0].digest.slice(7)), 'utf8'));
    expect(m.layers).toHaveLength(4);

    const other = sandbox(work, 'docker-archive-load');
    const load = await other.ok(['load', '-i', file]);
    expect(load.stdout).toBe(`Loaded image: ${ref}\n`);
    expect((await other.ok(['images', '-q', '--no-trunc'])).stdout).toBe(`${main.config.digest}\n`);
    expect(Object.keys(layerRecords(other.root)).sort()).toEqual([...diffs].sort());
    expect(fs.readdirSync(path.join(other.root, 'tmp'))).toEqual([]);
    await checkRootfs(other, ref);
    // Loading it again changes nothing.
    const recs = layerRecords(other.root);
    expect((await other.ok(['load', '-q', '-i', file])).stdout).toBe(`${main.config.digest}\n`);
    expect(layerRecords(other.root)).toEqual(recs);
  });

  it('writes an oci-archive with the blobs as they are: skopeo pushes it with the same manifest digest', async () => {
    const sb = sandbox(work, 'oci-archive');
    await sb.ok(['pull', '-q', ref]);
    const file = path.join(sb.dir, 'main.oci.tar');
    await sb.ok(['save', '--format', 'oci-archive', '-o', file, ref]);
    const names = await tarList(file);
    expect(names).toEqual(expect.arrayContaining(['oci-layout', 'index.json', `blobs/sha256/${main.manifest.digest.slice(7)}`, ...main.layers.map((l: { digest: string }) => `blobs/sha256/${l.digest.slice(7)}`)]));
    const dest = `${registry.host}/test/from-oci:v1`;
    const copy = await skopeo(sb, ['copy', '--quiet', '--dest-tls-verify=false', '--preserve-digests', `oci-archive:${file}:${ref}`, `docker://${dest}`]);
    expect(copy.code, copy.stderr).toBe(0);
    const raw = await skopeo(sb, ['inspect', '--raw', '--tls-verify=false', `docker://${dest}`]);
    expect(sha256(raw.stdout)).toBe(main.manifest.digest);

    const other = sandbox(work, 'oci-archive-load');
    expect((await other.ok(['load'], { stdinFile: file })).stdout).toBe(`Loaded image: ${ref}\n`);
    const rec = JSON.parse(fs.readFileSync(path.join(other.root, 'images', `${main.config.digest.slice(7)}.json`), 'utf8'));
    expect(rec.manifestDigest).toBe(main.manifest.digest);
    expect(rec.layers.map((l: { digest: string }) => l.digest)).toEqual(main.layers.map((l: { digest: string }) => l.digest));
    await checkRootfs(other, ref);
    // An image named by id only is saved without a name, and loads untagged.
    const byId = path.join(sb.dir, 'by-id.tar');
    await sb.ok(['save', '--format', 'oci-archive', '-o', byId, main.config.digest.slice(7, 19)]);
    const third = sandbox(work, 'oci-archive-id');
    expect((await third.ok(['load', '-i', byId])).stdout).toBe(`Loaded image ID: ${main.config.digest}\n`);
    expect((await third.ok(['images', '--format', '{{.Repository}}:{{.Tag}}'])).stdout).toBe('<none>:<none>\n');
  });

  it('loads the docker-archive and oci-archive skopeo writes, gzip-compressed too', async () => {
    const sb = sandbox(work, 'from-skopeo');
    const da = path.join(sb.dir, 'sk.tar');
    const oa = path.join(sb.dir, 'sk.oci.tar');
    const oa0 = await skopeo(sb, ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci-archive:${oa}:example.com/x/main:o`]);
    expect(oa0.code, oa0.stderr).toBe(0);
    // skopeo will not write a zstd layer into a Docker format: recompress it to gzip first.
    const gz = path.join(sb.dir, 'gz');
    const re = await skopeo(sb, ['copy', '--quiet', '--src-tls-verify=false', '--dest-compress', '--dest-compress-format', 'gzip', `docker://${ref}`, `oci:${gz}:x`]);
    expect(re.code, re.stderr).toBe(0);
    const da0 = await skopeo(sb, ['copy', '--quiet', `oci:${gz}:x`, `docker-archive:${da}:example.com/x/main:d`]);
    expect(da0.code, da0.stderr).toBe(0);
    fs.writeFileSync(`${oa}.gz`, zlib.gzipSync(fs.readFileSync(oa), { level: 1 }));
    expect((await sb.ok(['load', '-i', da])).stdout).toBe('Loaded image: example.com/x/main:d\n');
    expect((await sb.ok(['load'], { stdinFile: `${oa}.gz` })).stdout).toBe('Loaded image: example.com/x/main:o\n');
    const rows = (await sb.ok(['images', '--no-trunc', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}'])).stdout.trim().split('\n').sort();
    expect(rows).toEqual([`example.com/x/main:d ${main.config.digest}`, `example.com/x/main:o ${main.config.digest}`]);
    await checkRootfs(sb, 'example.com/x/main:o');
  });

  it('refuses damaged and hostile archives, writing nothing outside the store and keeping nothing', async () => {
    const sb = sandbox(work, 'bad');
    fs.writeFileSync(path.join(sb.dir, 'canary.txt'), 'untouched\n');
    const layer = ustar(HOSTILE.dotdot.entries);
    const good = ustar([{ name: 'ok.txt', type: 'file', content: 'fine\n' }]);
    const config = (diffIds: string[]): Buffer => Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: diffIds } }));
    const archive = (name: string, entries: { name: string; content?: Buffer | string; type?: UstarEntry['type']; linkname?: string }[]): string => {
      const f = path.join(sb.dir, `${name}.tar`);
      fs.writeFileSync(f, ustar(entries.map((e) => ({ type: 'file', ...e }))));
      return f;
    };
    const manifest = (cfg: string, layers: string[]): string => JSON.stringify([{ Config: cfg, RepoTags: ['evil/x:1'], Layers: layers }]);
    const cases: [string, string, RegExp][] = [
      // A layer that is not what the config says.
      ['altered', archive('altered', [{ name: 'c.json', content: config([sha256(good)]) }, { name: 'l.tar', content: ustar([{ name: 'ok.txt', type: 'file', content: 'FINE\n' }]) }, { name: 'manifest.json', content: manifest('c.json', ['l.tar']) }]), /layer 1 \(l\.tar\) of the archive has digest sha256:[a-f0-9]{64}, not the diff id/],
      // Paths that climb out: looked up in the archive, never opened on disk.
      ['climbing', archive('climbing', [{ name: '../../canary.txt', content: 'overwritten\n' }, { name: 'manifest.json', content: manifest('../../../../etc/passwd', ['../canary.txt']) }]), /config "\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd" is not in the archive/],
      // A symlink in the archive pointing at a host file.
      ['symlink', archive('symlink', [{ name: 'c.json', type: 'symlink', linkname: '/etc/passwd' }, { name: 'manifest.json', content: manifest('c.json', []) }]), /config "c\.json" is not in the archive/],
      // A layer with a hostile entry but the right diff id: the unpacker refuses it.
      ['hostile-layer', archive('hostile-layer', [{ name: 'c.json', content: config([sha256(layer)]) }, { name: 'l.tar', content: layer }, { name: 'manifest.json', content: manifest('c.json', ['l.tar']) }]), /layer entry "\.\.\/escape-dotdot\.txt" is unsafe/],
      ['not-a-tar', (() => {
        const f = path.join(sb.dir, 'junk.tar');
        fs.writeFileSync(f, Buffer.alloc(4096, 'x'));
        return f;
      })(), /not a valid tar archive: a header checksum is wrong/],
      ['empty', archive('empty', [{ name: 'README', content: 'hello\n' }]), /has neither manifest\.json \(docker-archive\) nor index\.json \(oci-archive\)/],
    ];
    for (const [name, file, message] of cases) {
      const r = await sb.burrow(['load', '-i', file]);
      expect(r.code, `${name}: ${r.stderr}`).toBe(125);
      expect(r.stderr, name).toMatch(message);
    }
    expect(fs.readFileSync(path.join(sb.dir, 'canary.txt'), 'utf8')).toBe('untouched\n');
    expect(fs.readdirSync(sb.dir).sort()).toEqual(['canary.txt', 'home', 'store', 'xdg', ...cases.map(([n]) => (n === 'not-a-tar' ? 'junk.tar' : `${n}.tar`))].sort());
    expect((await sb.ok(['images', '-q'])).stdout).toBe('');
    expect(fs.readdirSync(path.join(sb.root, 'layers'))).toEqual([]);
    expect(fs.readdirSync(path.join(sb.root, 'tmp'))).toEqual([]);
    // The good layer alone loads.
    const ok = archive('ok', [{ name: 'c.json', content: config([sha256(good)]) }, { name: 'l.tar', content: good }, { name: 'manifest.json', content: manifest('c.json', ['l.tar']) }]);
    expect((await sb.ok(['load', '-i', ok])).stdout).toBe('Loaded image: evil/x:1\n');
  });
});

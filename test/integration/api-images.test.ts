/**
 * The Engine API's image routes and /auth against real registries (Debian's docker-registry from
 * the test harness: anonymous, token and htpasswd) and test images: pull with Docker's JSON
 * progress stream, errors before and after the stream started, inspect, history, tag, delete
 * and its conflicts, push with X-Registry-Auth, get/load, import, prune, auth; then the real
 * docker CLI on the same socket. The service runs as whoever runs the tests (root, then the
 * unprivileged test user).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeTrees } from '../../ts/storage/unpack';
import type { StorageSettings } from '../../ts/storage/store';
import { closeAllProxies, startProxy } from './image-helpers';
import { IMAGE, setup, sleep, type Env } from './lifecycle.helpers';
import { startService, type Service } from './api.helpers';
import { blobDataPath, startRegistry, type RegistryByMode } from '../harness/registry.mjs';
import { buildMainImage, buildMultiPlatformImage, buildSmallImage, pushImage, type BuiltImage, type MainImage, type MultiPlatformImage } from '../harness/images.mjs';

let env: Env;
let svc: Service;
let anon: RegistryByMode['anonymous'];
let token: RegistryByMode['token'];
let htpasswd: RegistryByMode['htpasswd'];
let main: MainImage;
let small: BuiltImage;
let slow: BuiltImage;
let multi: MultiPlatformImage;
let mainRef: string;

interface Msg {
  status?: string;
  id?: string;
  progressDetail?: { current?: number; total?: number };
  progress?: string;
  aux?: { Tag: string; Digest: string; Size: number };
  error?: string;
  errorDetail?: { message: string };
  stream?: string;
}

/** A JSON-lines body: every line one object, CRLF-terminated as dockerd writes them. */
function lines(text: string): Msg[] {
  expect(text.endsWith('\r\n')).toBe(true);
  return text
    .split('\r\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Msg);
}

const short = (d: string): string => d.slice(7, 19);
const auth = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const enc = (name: string): string => name.split('/').map(encodeURIComponent).join('/');

beforeAll(async () => {
  env = setup('api-images');
  main = buildMainImage(path.join(env.work, 'main'), { tag: 'v1', bigSize: 4 * 1024 * 1024 });
  small = buildSmallImage(path.join(env.work, 'small'), { tag: 'v1' });
  slow = buildSmallImage(path.join(env.work, 'slow'), { tag: 'v1', size: 4 * 1024 * 1024 });
  multi = buildMultiPlatformImage(path.join(env.work, 'multi'));
  anon = await startRegistry({ mode: 'anonymous' });
  token = await startRegistry({ mode: 'token' });
  htpasswd = await startRegistry({ mode: 'htpasswd' });
  mainRef = await pushImage(anon, main, 'test/main');
  await pushImage(anon, small, 'test/broken');
  await pushImage(anon, slow, 'test/slow');
  await pushImage(anon, multi, 'test/multi');
  // The service must not find credentials of the user running the tests.
  const home = path.join(env.work, 'home');
  fs.mkdirSync(home, { recursive: true });
  svc = await startService(env, { envVars: { HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), DOCKER_CONFIG: path.join(home, '.docker'), REGISTRY_AUTH_FILE: path.join(home, 'auth.json'), XDG_RUNTIME_DIR: path.join(env.work, 'xdg') } });
}, 120_000);

afterAll(async () => {
  await closeAllProxies();
  await svc?.stop();
  await anon?.stop();
  await token?.stop();
  await htpasswd?.stop();
  // Rootless, the store holds files of subordinate ids (the main image's user's): only the
  // store's user namespace may delete them.
  const settings = env && path.join(env.store, 'storage.json');
  if (settings && fs.existsSync(settings)) {
    const s = JSON.parse(fs.readFileSync(settings, 'utf8')) as StorageSettings;
    if (s.idMode !== 'root') {
      env.cleanup();
      await removeTrees(s, [env.store]).catch(() => undefined);
    }
  }
  env?.dispose();
});

describe('images through the Engine API', () => {
  it("pulls with Docker's JSON progress stream, then says the image is up to date", async () => {
    const r = await svc.request('POST', `/v1.41/images/create?fromImage=${encodeURIComponent(`${anon.host}/test/main`)}&tag=v1`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/json');
    const m = lines(r.text);
    expect(m[0]).toEqual({ status: 'Pulling from test/main', id: 'v1' });
    for (const l of main.layers as { digest: string; size: number }[]) {
      const id = short(l.digest);
      const mine = m.filter((x) => x.id === id).map((x) => x.status);
      // Each layer's states in Docker's order.
      const order = ['Pulling fs layer', 'Downloading', 'Verifying Checksum', 'Download complete', 'Extracting', 'Pull complete'];
      expect(order.map((s) => mine.indexOf(s))).toEqual([...order.map((s) => mine.indexOf(s))].sort((a, b) => a - b));
      for (const s of order) expect(mine, `${id} ${s}`).toContain(s);
      const dl = m.filter((x) => x.id === id && x.status === 'Downloading');
      const last = dl[dl.length - 1]!;
      expect(last.progressDetail).toEqual({ current: l.size, total: l.size });
      expect(last.progress).toMatch(/^\[=+>\s*\]\s+\S+B\/\S+B$/);
    }
    expect(m).toContainEqual({ status: `Digest: ${main.manifest.digest}` });
    expect(m[m.length - 1]).toEqual({ status: `Status: Downloaded newer image for ${mainRef}` });

    const again = lines((await svc.request('POST', `/images/create?fromImage=${encodeURIComponent(mainRef)}`)).text);
    for (const l of main.layers as { digest: string }[]) expect(again).toContainEqual({ status: 'Already exists', progressDetail: {}, id: short(l.digest) });
    expect(again[again.length - 1]).toEqual({ status: `Status: Image is up to date for ${mainRef}` });

    const list = (await svc.request('GET', '/v1.41/images/json')).json<Record<string, unknown>[]>();
    const mine = list.find((i) => i.Id === main.config.digest)!;
    expect(mine).toMatchObject({ ParentId: '', RepoTags: [mainRef], RepoDigests: [`${anon.host}/test/main@${main.manifest.digest}`], SharedSize: -1, Containers: -1 });
    expect(typeof mine.Created).toBe('number');
    expect(mine.Size).toBeGreaterThan(4 * 1024 * 1024);
    expect(mine.VirtualSize).toBe(mine.Size);
    const filtered = (await svc.request('GET', `/images/json?filters=${encodeURIComponent(JSON.stringify({ reference: { [`${anon.host}/test/*`]: true } }))}`)).json<{ Id: string }[]>();
    expect(filtered.map((i) => i.Id)).toEqual([main.config.digest]);
    const dangling = (await svc.request('GET', `/images/json?filters=${encodeURIComponent(JSON.stringify({ dangling: ['true'] }))}`)).json<{ Id: string }[]>();
    expect(dangling.map((i) => i.Id)).not.toContain(main.config.digest);
    expect((await svc.request('GET', `/images/json?filters=${encodeURIComponent(JSON.stringify({ nonsense: ['x'] }))}`)).status).toBe(400);
  });

  it('pulls the platform asked for from a multi-platform image, under the digest of its index', async () => {
    const ref = `${anon.host}/test/multi:multi`;
    const r = lines((await svc.request('POST', `/images/create?fromImage=${encodeURIComponent(`${anon.host}/test/multi`)}&tag=multi&platform=linux/arm64`)).text);
    expect(r).toContainEqual({ status: `Digest: ${multi.index.digest}` });
    expect(r[r.length - 1]).toEqual({ status: `Status: Downloaded newer image for ${ref}` });
    expect((await svc.request('GET', `/images/${ref}/json`)).json()).toMatchObject({ Id: multi.images.arm64.config.digest, Architecture: 'arm64', RepoDigests: [`${anon.host}/test/multi@${multi.index.digest}`] });
  });

  it('answers a missing image or an unreachable registry with a status, and a failure after the stream started with an errorDetail line, leaving no image', async () => {
    const missing = await svc.request('POST', `/images/create?fromImage=${encodeURIComponent(`${anon.host}/test/nothing`)}&tag=v1`);
    expect(missing.status).toBe(404);
    expect(missing.json<{ message: string }>().message).toMatch(/test\/nothing/);
    const unreachable = await svc.request('POST', `/images/create?fromImage=${encodeURIComponent('127.0.0.1:1/test/x')}&tag=v1`);
    expect(unreachable.status).toBe(500);
    expect(unreachable.json<{ message: string }>().message).toMatch(/127\.0\.0\.1:1/);
    // The manifest is there, a layer blob is not: the stream has started when that shows.
    fs.rmSync(blobDataPath(anon, small.layers[0]!.digest));
    const broken = await svc.request('POST', `/images/create?fromImage=${encodeURIComponent(`${anon.host}/test/broken`)}&tag=v1`);
    expect(broken.status).toBe(200);
    const m = lines(broken.text);
    expect(m[0]).toEqual({ status: 'Pulling from test/broken', id: 'v1' });
    const last = m[m.length - 1]!;
    expect(last.error).toBeTruthy();
    expect(last.errorDetail).toEqual({ message: last.error });
    expect((await svc.request('GET', `/images/${anon.host}/test/broken:v1/json`)).status).toBe(404);
    expect(fs.existsSync(path.join(env.store, 'images', `${small.config.digest.slice(7)}.json`))).toBe(false);
  });

  it('cancels a pull whose client went away: no image, the download stopped, and the next pull completes it', async () => {
    const proxy = await startProxy(anon.host, { rate: 256 * 1024 });
    const ref = `${proxy.host}/test/slow:v1`;
    const marker = path.join(env.store, 'tmp', `pull-${svc.child.pid}`);
    // Read the stream until the layer is downloading, then hang up.
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ socketPath: svc.sock, method: 'POST', path: `/images/create?fromImage=${encodeURIComponent(ref)}` }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d;
          if (text.includes('"Downloading"')) {
            req.destroy();
            resolve();
          }
        });
        res.on('end', () => reject(new Error(`the pull ended before it was cancelled: ${text}`)));
      });
      req.on('error', () => undefined);
      req.end();
    });
    // The service's pull ends (its marker goes) once it saw the client leave.
    for (let i = 0; fs.existsSync(marker); i++) {
      if (i > 600) throw new Error('the pull did not stop after its client went away');
      await sleep(50);
    }
    expect(proxy.bytesDown).toBeLessThan(slow.layers[0]!.size);
    expect(fs.existsSync(path.join(env.store, 'images', `${slow.config.digest.slice(7)}.json`))).toBe(false);
    expect((await svc.request('GET', `/images/${ref}/json`)).status).toBe(404);
    proxy.rate = undefined;
    const again = lines((await svc.request('POST', `/images/create?fromImage=${encodeURIComponent(ref)}`)).text);
    expect(again[again.length - 1]).toEqual({ status: `Status: Downloaded newer image for ${ref}` });
    expect((await svc.request('GET', `/images/${ref}/json`)).json()).toMatchObject({ Id: slow.config.digest });
  });

  it('inspects, shows the history, tags and deletes; a used image is a 409, a missing one a 404', async () => {
    const ins = await svc.request('GET', `/v1.41/images/${mainRef}/json`);
    expect(ins.status).toBe(200);
    expect(ins.json()).toMatchObject({ Id: main.config.digest, RepoTags: [mainRef], Os: 'linux', RootFS: { Type: 'layers' } });
    const none = await svc.request('GET', '/images/no/such:image/json');
    expect(none.status).toBe(404);
    expect(none.json()).toEqual({ message: 'No such image: no/such:image' });

    const hist = (await svc.request('GET', `/images/${mainRef}/history`)).json<{ Id: string; Created: number; CreatedBy: string; Tags: string[] | null; Size: number }[]>();
    expect(hist[0]).toMatchObject({ Id: main.config.digest, Tags: [mainRef] });
    expect(hist.slice(1).every((h) => h.Id === '<missing>' && h.Tags === null)).toBe(true);
    expect(hist.filter((h) => h.Size > 0)).toHaveLength(main.layers.length);

    const tagged = await svc.request('POST', `/images/${mainRef}/tag?repo=team/app&tag=1`);
    expect(tagged.status).toBe(201);
    expect((await svc.request('GET', '/images/team/app:1/json')).json()).toMatchObject({ Id: main.config.digest });
    expect((await svc.request('POST', '/images/no/such:image/tag?repo=x&tag=1')).status).toBe(404);
    const untag = await svc.request('DELETE', '/images/team/app:1');
    expect(untag.status).toBe(200);
    expect(untag.json()).toEqual([{ Untagged: 'team/app:1' }]);
    expect((await svc.request('DELETE', '/images/team/app:1')).status).toBe(404);

    // A stopped container uses IMAGE: refused by name and by id, unless forced.
    const c = env.b(['create', '--name', 'api-images-user', IMAGE, 'true']);
    expect(c.code, c.stderr).toBe(0);
    const ctr = c.stdout.trim();
    const id = (await svc.request('GET', `/images/${IMAGE}/json`)).json<{ Id: string }>().Id;
    const byName = await svc.request('DELETE', `/images/${IMAGE}`);
    expect(byName.status).toBe(409);
    expect(byName.json<{ message: string }>().message).toBe(`conflict: unable to remove repository reference "${IMAGE}" (must force) - container ${ctr.slice(0, 12)} is using its referenced image ${id.slice(7, 19)}`);
    const byId = await svc.request('DELETE', `/images/${id.slice(7, 19)}`);
    expect(byId.status).toBe(409);
    expect(byId.json<{ message: string }>().message).toBe(`conflict: unable to delete ${id.slice(7, 19)} (must be forced) - image is being used by stopped container ${ctr.slice(0, 12)}`);
    env.b(['rm', ctr]);
  });

  it('pushes with the credentials of X-Registry-Auth, and fails in the stream without them', async () => {
    const dest = `${token.host}/pushed/main`;
    expect((await svc.request('POST', `/images/${mainRef}/tag?repo=${encodeURIComponent(dest)}&tag=v2`)).status).toBe(201);
    const denied = await svc.request('POST', `/images/${dest}/push?tag=v2`, undefined, { 'X-Registry-Auth': auth({}) });
    expect(denied.status).toBe(200);
    const d = lines(denied.text);
    expect(d[0]).toEqual({ status: `The push refers to repository [${dest}]` });
    expect(d[d.length - 1]!.errorDetail?.message).toMatch(/pushed\/main/);

    const r = await svc.request('POST', `/images/${dest}/push?tag=v2`, undefined, { 'X-Registry-Auth': auth({ username: token.user, password: token.password, serveraddress: token.host }) });
    expect(r.status).toBe(200);
    const m = lines(r.text);
    expect(m.filter((x) => x.error)).toEqual([]);
    for (const l of main.layers as { digest: string }[]) {
      expect(m).toContainEqual({ status: 'Preparing', progressDetail: {}, id: short(l.digest) });
      expect(m).toContainEqual({ status: 'Pushed', progressDetail: {}, id: short(l.digest) });
    }
    expect(m).toContainEqual({ status: `v2: digest: ${main.manifest.digest} size: ${main.manifest.size}` });
    expect(m[m.length - 1]).toEqual({ progressDetail: {}, aux: { Tag: 'v2', Digest: main.manifest.digest, Size: main.manifest.size } });
    expect(token.stats.scopes.flat()).toContain('repository:pushed/main:pull,push');
    const nothing = await svc.request('POST', `/images/${token.host}/nothing/push?tag=v1`);
    expect(nothing.status).toBe(404);
  });

  it('saves with get and loads the archive back: the same image, and a truncated archive leaves none', async () => {
    const tar = await svc.request('GET', `/images/${mainRef}/get`);
    expect(tar.status).toBe(200);
    expect(tar.headers['content-type']).toBe('application/x-tar');
    expect(tar.body.subarray(257, 262).toString()).toBe('ustar');
    const both = await svc.request('GET', `/images/get?names=${encodeURIComponent(mainRef)}&names=${IMAGE}`);
    expect(both.status).toBe(200);
    expect((await svc.request('GET', '/images/get?names=no/such:image')).status).toBe(404);

    for (const t of [mainRef, 'team/app:1', `${token.host}/pushed/main:v2`]) await svc.request('DELETE', `/images/${enc(t)}?force=1`);
    expect((await svc.request('GET', `/images/${main.config.digest}/json`)).status).toBe(404);

    const cut = await svc.request('POST', '/images/load', tar.body.subarray(0, Math.floor(tar.body.length / 2)), { 'Content-Type': 'application/x-tar' });
    // A truncated archive is the client's fault: 400, with what was wrong.
    expect(cut.status).toBe(400);
    expect(cut.json<{ message: string }>().message).toMatch(/request body/);
    expect((await svc.request('GET', `/images/${main.config.digest}/json`)).status).toBe(404);

    // A client that hangs up halfway through the upload: the load stops, its work goes, no image.
    const loads = (): string[] => fs.readdirSync(path.join(env.store, 'tmp')).filter((n) => n.startsWith(`load-${svc.child.pid}-`));
    const upload = http.request({ socketPath: svc.sock, method: 'POST', path: '/images/load', headers: { 'Content-Type': 'application/x-tar', 'Content-Length': String(tar.body.length) } });
    upload.on('error', () => undefined);
    upload.write(tar.body.subarray(0, Math.floor(tar.body.length / 2)));
    // Hung up once the service is at work on it.
    for (let i = 0; !loads().length; i++) {
      if (i > 600) throw new Error('the load never started');
      await sleep(50);
    }
    upload.destroy();
    for (let i = 0; loads().length; i++) {
      if (i > 600) throw new Error(`the load's work stayed after its client went away: ${loads().join(' ')}`);
      await sleep(50);
    }
    expect((await svc.request('GET', `/images/${main.config.digest}/json`)).status).toBe(404);

    const load = await svc.request('POST', '/images/load?quiet=1', tar.body, { 'Content-Type': 'application/x-tar' });
    expect(load.status).toBe(200);
    expect(lines(load.text)).toEqual([{ stream: `Loaded image: ${mainRef}\n` }]);
    expect((await svc.request('GET', `/images/${mainRef}/json`)).json()).toMatchObject({ Id: main.config.digest });
    // Pulled again over the loaded image (same layers, other blobs): the registry's blobs are
    // fetched, so that the record's blobs are all there for the next save or push.
    const pulled = lines((await svc.request('POST', `/images/create?fromImage=${encodeURIComponent(mainRef)}`)).text);
    expect(pulled.filter((x) => x.error)).toEqual([]);
    const resaved = await svc.request('GET', `/images/${mainRef}/get`);
    expect(resaved.status, resaved.text.slice(0, 300)).toBe(200);
  });

  it('imports a tarball from the body with changes, and prunes it once it is dangling', async () => {
    const body = fs.readFileSync(path.join(env.work, 'busybox.tar.gz'));
    const q = new URLSearchParams([['fromSrc', '-'], ['repo', 'imported/box'], ['tag', '1'], ['changes', 'CMD ["/bin/echo", "hi"]'], ['changes', 'ENV A=b'], ['changes', 'LABEL team=api "the.note"="two words"']]);
    const r = await svc.request('POST', `/images/create?${q}`, body, { 'Content-Type': 'application/x-tar' });
    expect(r.status).toBe(200);
    const [status] = lines(r.text);
    expect(status!.status).toMatch(/^sha256:[a-f0-9]{64}$/);
    const ins = (await svc.request('GET', '/images/imported/box:1/json')).json<{ Id: string; Config: { Cmd: string[]; Env: string[] } }>();
    expect(ins.Id).toBe(status!.status);
    expect(ins.Config.Cmd).toEqual(['/bin/echo', 'hi']);
    expect(ins.Config.Env).toContain('A=b');
    const ids = async (filters: object): Promise<string[]> => (await svc.request('GET', `/images/json?filters=${encodeURIComponent(JSON.stringify(filters))}`)).json<{ Id: string }[]>().map((i) => i.Id);
    expect(await ids({ label: ['team=api'] })).toEqual([ins.Id]);
    expect(await ids({ label: ['team=api', 'the.note=two words'] })).toEqual([ins.Id]);
    expect(await ids({ label: ['team=other'] })).toEqual([]);
    // The harness's images are dated long ago, the import now.
    expect(await ids({ since: [mainRef] })).toContain(ins.Id);
    expect(await ids({ since: [mainRef] })).not.toContain(main.config.digest);
    expect(await ids({ before: ['imported/box:1'] })).toContain(main.config.digest);
    expect(await ids({ before: ['imported/box:1'] })).not.toContain(ins.Id);
    const labels = (await svc.request('GET', '/images/json')).json<{ Id: string; Labels: Record<string, string> | null }[]>();
    expect(labels.find((i) => i.Id === ins.Id)?.Labels).toEqual({ team: 'api', 'the.note': 'two words' });
    const bad = await svc.request('POST', `/images/create?fromSrc=-&changes=${encodeURIComponent('USER nobody')}`, body);
    expect(bad.status).toBe(400);

    const kept = await svc.request('POST', '/images/prune');
    expect(kept.json<{ ImagesDeleted: unknown[] }>().ImagesDeleted).not.toContainEqual({ Deleted: ins.Id });
    // Untagged, it is dangling: prune takes it.
    expect((await svc.request('DELETE', '/images/imported/box:1?noprune=1')).json()).toEqual([{ Untagged: 'imported/box:1' }, { Deleted: ins.Id }]);
    const again = await svc.request('POST', `/images/create?fromSrc=-`, body);
    const id = lines(again.text)[0]!.status!;
    const list = (await svc.request('GET', `/images/json?filters=${encodeURIComponent(JSON.stringify({ dangling: ['true'] }))}`)).json<{ Id: string; RepoTags: string[] }[]>();
    expect(list.find((i) => i.Id === id)?.RepoTags).toEqual(['<none>:<none>']);
    const pruned = await svc.request('POST', '/images/prune');
    expect(pruned.status).toBe(200);
    const p = pruned.json<{ ImagesDeleted: { Deleted?: string }[]; SpaceReclaimed: number }>();
    expect(p.ImagesDeleted).toContainEqual({ Deleted: id });
    expect(p.SpaceReclaimed).toBeGreaterThan(0);
    expect((await svc.request('GET', `/images/${id}/json`)).status).toBe(404);
  });

  it('checks credentials with POST /auth as login does: 200 for good ones, 401 for bad ones', async () => {
    // As docker-py sends it: email null.
    const good = await svc.request('POST', '/v1.41/auth', { username: htpasswd.user, password: htpasswd.password, email: null, serveraddress: htpasswd.host });
    expect(good.status).toBe(200);
    expect(good.json()).toEqual({ Status: 'Login Succeeded', IdentityToken: '' });
    const bad = await svc.request('POST', '/v1.41/auth', { username: htpasswd.user, password: 'wrong', serveraddress: `http://${htpasswd.host}` });
    expect(bad.status).toBe(401);
    expect(bad.json<{ message: string }>().message).toMatch(/rejected/);
    expect((await svc.request('POST', '/auth', '{"username": 1}')).status).toBe(400);
  });

  it('records image events for what it changed', () => {
    const events = fs
      .readFileSync(path.join(env.runroot, 'events.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { Type: string; Action: string; Actor: { ID: string } });
    const actions = new Set(events.filter((e) => e.Type === 'image').map((e) => e.Action));
    for (const a of ['pull', 'push', 'tag', 'untag', 'delete', 'import', 'load', 'save']) expect(actions, a).toContain(a);
    expect(events).toContainEqual(expect.objectContaining({ Type: 'image', Action: 'pull', Actor: expect.objectContaining({ ID: mainRef }) }));
  });
});

const DOCKER = '/usr/local/bin/docker';

describe.skipIf(!fs.existsSync(DOCKER))('the docker CLI on the service', () => {
  it('pulls, lists, saves, removes and loads an image; logs in and pushes; shows history, inspects and prunes', async () => {
    const cfg = path.join(env.work, 'docker-cli');
    fs.mkdirSync(cfg, { recursive: true });
    // Not spawnSync: the token registry's token server runs in this process and must answer.
    const docker = (args: string[], input?: Buffer): Promise<{ code: number | null; stdout: Buffer; stderr: string }> =>
      new Promise((resolve, reject) => {
        const child = spawn(DOCKER, ['-H', svc.host, ...args], { env: { PATH: process.env.PATH, HOME: cfg, DOCKER_CONFIG: cfg } });
        const out: Buffer[] = [];
        let err = '';
        child.stdout.on('data', (d: Buffer) => out.push(d));
        child.stderr.on('data', (d: Buffer) => (err += d));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
        child.stdin.on('error', () => undefined);
        child.stdin.end(input);
      });
    const pulled = await docker(['pull', mainRef]);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(pulled.stdout.toString()).toMatch(/Image is up to date|Downloaded newer image/);
    const images = await docker(['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']);
    expect(images.code, images.stderr).toBe(0);
    expect(images.stdout.toString()).toContain(`${mainRef} ${main.config.digest.slice(7, 19)}`);
    const saved = await docker(['save', mainRef]);
    expect(saved.code, saved.stderr).toBe(0);
    const rmi = await docker(['rmi', mainRef]);
    expect(rmi.code, rmi.stderr).toBe(0);
    expect(rmi.stdout.toString()).toContain(`Untagged: ${mainRef}`);
    expect(rmi.stdout.toString()).toContain(`Deleted: ${main.config.digest}`);
    const loaded = await docker(['load'], saved.stdout);
    expect(loaded.code, loaded.stderr).toBe(0);
    expect(loaded.stdout.toString()).toContain(`Loaded image: ${mainRef}`);
    const missing = await docker(['rmi', 'no/such:image']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('No such image: no/such:image');

    // login goes through POST /auth; push sends what login stored as X-Registry-Auth.
    const badLogin = await docker(['login', '-u', token.user, '--password-stdin', token.host], Buffer.from('wrong\n'));
    expect(badLogin.code).not.toBe(0);
    const login = await docker(['login', '-u', token.user, '--password-stdin', token.host], Buffer.from(`${token.password}\n`));
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout.toString()).toContain('Login Succeeded');
    const dest = `${token.host}/cli/main:v3`;
    expect((await docker(['tag', mainRef, dest])).code).toBe(0);
    const pushed = await docker(['push', dest]);
    expect(pushed.code, pushed.stderr).toBe(0);
    // Loaded from a docker-archive, the image has a manifest of its own (uncompressed layers).
    expect(pushed.stdout.toString()).toMatch(/\nv3: digest: sha256:[a-f0-9]{64} size: \d+\n/);
    const hist = await docker(['history', '--format', '{{.ID}} {{.Size}}', mainRef]);
    expect(hist.code, hist.stderr).toBe(0);
    expect(hist.stdout.toString().split('\n')[0]).toMatch(new RegExp(`^${main.config.digest.slice(7, 19)} `));
    const inspected = await docker(['image', 'inspect', '--format', '{{.Id}} {{.Os}}', mainRef]);
    expect(inspected.stdout.toString().trim()).toBe(`${main.config.digest} linux`);
    const pruned = await docker(['image', 'prune', '-f']);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(pruned.stdout.toString()).toContain('Total reclaimed space');
  });
});

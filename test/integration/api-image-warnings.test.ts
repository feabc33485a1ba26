/**
 * The engine's warnings in the Engine API's image streams: with the store keeping images as
 * squashfs (BURROW_IMAGE_FORMAT=squashfs) and a mksquashfs that fails, the CLI's pull, load and
 * import warn that the image's squashfs could not be made; through the API the same warning is a
 * status line of the stream (`{"status": "WARNING: …"}`), as Docker's daemon sends its notes.
 * Real service, registry and runtime; as root and as the unprivileged test user.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import { startService, type Service } from './api.helpers';
import { startRegistry, type Registry } from '../harness/registry.mjs';
import { buildSmallImage, pushImage } from '../harness/images.mjs';

let env: Env;
let svc: Service;
let registry: Registry;
let ref: string;

const WARNING = /^WARNING: the store keeps images as squashfs, but the one of .* could not be made \(mksquashfs failed \(exit 1\): fake mksquashfs: disk full\): it runs from its layers$/;

beforeAll(async () => {
  env = setup('api-image-warnings');
  // A mksquashfs (first on the service's PATH) that fails as a full disk would.
  const fake = path.join(env.work, 'fake-bin');
  fs.mkdirSync(fake, { recursive: true, mode: 0o755 });
  fs.writeFileSync(path.join(fake, 'mksquashfs'), '#!/bin/sh\necho "fake mksquashfs: disk full" >&2\nexit 1\n', { mode: 0o755 });
  registry = await startRegistry({ mode: 'anonymous' });
  ref = await pushImage(registry, buildSmallImage(path.join(env.work, 'small'), { tag: 'v1' }), 'test/warned');
  svc = await startService(env, { envVars: { BURROW_IMAGE_FORMAT: 'squashfs', PATH: `${fake}:${process.env.PATH}` } });
}, 120_000);

afterAll(async () => {
  await svc?.stop();
  await registry?.stop();
  env?.dispose();
});

const lines = (text: string): Record<string, unknown>[] =>
  text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

const warnings = (text: string): string[] =>
  lines(text)
    .map((l) => l.status)
    .filter((s): s is string => typeof s === 'string' && s.startsWith('WARNING:'));

describe(`image streams carry the engine's warnings, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('pull (/images/create?fromImage): the warning as a status line before the last one', async () => {
    const r = await svc.request('POST', `/images/create?fromImage=${encodeURIComponent(ref)}`);
    expect(r.status).toBe(200);
    const ws = warnings(r.text);
    expect(ws, r.text).toHaveLength(1);
    expect(ws[0]).toMatch(WARNING);
    expect(lines(r.text).at(-1)!.status).toMatch(/^Status: Downloaded newer image for /);
  });

  it('load (/images/load): the warning, then the loaded image', async () => {
    const tar = path.join(env.work, 'img.tar');
    env.ok(['save', '-o', tar, IMAGE]);
    env.ok(['rmi', IMAGE]);
    const r = await svc.request('POST', '/images/load', fs.readFileSync(tar), { 'Content-Type': 'application/x-tar' });
    expect(r.status).toBe(200);
    expect(warnings(r.text), r.text).toHaveLength(1);
    expect(warnings(r.text)[0]).toMatch(WARNING);
    expect(lines(r.text).at(-1)).toEqual({ stream: `Loaded image: ${IMAGE}:latest\n` });
  });

  it('import (/images/create?fromSrc=-): the warning, then the image id', async () => {
    const tar = path.join(env.work, 'rootfs.tar');
    const id = env.ok(['create', IMAGE, 'true']).trim();
    env.ok(['export', '-o', tar, id]);
    env.ok(['rm', id]);
    const r = await svc.request('POST', '/images/create?fromSrc=-&repo=imported/warned&tag=1', fs.readFileSync(tar));
    expect(r.status).toBe(200);
    expect(warnings(r.text), r.text).toHaveLength(1);
    expect(warnings(r.text)[0]).toMatch(WARNING);
    expect(lines(r.text).at(-1)!.status).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

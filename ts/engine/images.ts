/**
 * The image operations of the engine, shared by the CLI (ts/cli/commands/images.ts) and the
 * Engine API (ts/api/routes/images.ts): pull, push, tag, remove, list, inspect, history, save,
 * load, import, prune and registry login. Typed requests in, typed reports out; progress through
 * callbacks (TransferEvent), never text on stderr; every change recorded with emitEvent under
 * Docker's action names (pull, push, tag, untag, delete, import, load, save).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { BurrowError } from '../errors';
import type { Credentials } from '../image/auth';
import type { TransferHook } from '../image/progress';
import { parseReference } from '../image/reference';
import type { CredentialLookup, RegistryOptions } from '../image/registry';
import { findImage, requireImage } from '../image/resolve';
import type { ImagePruneResult } from '../storage/prune';
import type { ImageRecord } from '../storage/store';
import type { EngineContext, Hooks } from './context';
import { emitEvent } from './events';
import { referenceFilter, shownTag } from './image-names';
import { registryOptions } from './registry';

export { referenceFilter, shownRepository, shownTag } from './image-names';

export interface ImageHooks extends Hooks {
  /** Pull and push progress. */
  progress?: TransferHook;
}

// ---- names ---------------------------------------------------------------------------------

const splitTag = (t: string): [string, string] => [t.slice(0, t.lastIndexOf(':')), t.slice(t.lastIndexOf(':') + 1)];

function imageEvent(ctx: EngineContext, action: string, id: string, name: string, extra: Record<string, string> = {}): void {
  emitEvent(ctx, { Type: 'image', Action: action, Actor: { ID: id, Attributes: { name, ...extra } } });
}

/** The image's labels (its config's), empty when it has none or the config cannot be read. */
export function imageLabels(ctx: EngineContext, img: ImageRecord): Record<string, string> {
  try {
    const cfg = JSON.parse(fs.readFileSync(ctx.store.blobPath(img.configDigest), 'utf8')) as { config?: { Labels?: unknown } };
    const l = cfg.config?.Labels;
    return l && typeof l === 'object' ? (l as Record<string, string>) : {};
  } catch {
    return {};
  }
}

// ---- registry authentication ---------------------------------------------------------------

/** Credentials a request brings (the API's X-Registry-Auth, a login's body). */
export interface AuthConfig {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token, used instead of the password by token servers. */
  identityToken?: string;
  serverAddress?: string;
}

/** A credential lookup that answers with the request's own credentials, when it has some. */
function credentialsOf(auth: AuthConfig | undefined): CredentialLookup | undefined {
  if (!auth?.username || (!auth.password && !auth.identityToken)) return undefined;
  const c: Credentials = { username: auth.username, password: auth.password ?? '', ...(auth.identityToken ? { identityToken: auth.identityToken } : {}), source: 'the request (X-Registry-Auth)' };
  return () => Promise.resolve(c);
}

function requestRegistry(req: { registry?: RegistryOptions; auth?: AuthConfig }): RegistryOptions {
  const creds = credentialsOf(req.auth);
  return registryOptions({ ...req.registry, ...(creds ? { credentials: creds } : {}) });
}

/** A registry's address as clients give it (`https://index.docker.io/v1/`, `http://h:5000`) as a reference's registry. */
export function registryHost(serverAddress: string): string {
  const s = serverAddress.trim().replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
  if (!s || s === 'index.docker.io' || s === 'registry-1.docker.io') return 'docker.io';
  return s;
}

export interface LoginRequest {
  serverAddress: string;
  username: string;
  password: string;
  registry?: RegistryOptions;
  signal?: AbortSignal;
}

/** Checks credentials against a registry as `docker login` does (EREGISTRY_AUTH when refused); stores nothing. */
export async function checkLogin(req: LoginRequest): Promise<{ registry: string }> {
  const registry = registryHost(req.serverAddress);
  const { RegistryClient } = await import('../image/registry');
  const client = new RegistryClient(registryOptions(req.registry));
  try {
    await client.checkLogin(registry, { username: req.username, password: req.password }, req.signal ? { signal: req.signal } : {});
  } finally {
    client.close();
  }
  return { registry };
}

// ---- pull and push -------------------------------------------------------------------------

export interface PullRequest {
  reference: string;
  platform?: string;
  registry?: RegistryOptions;
  auth?: AuthConfig;
  signal?: AbortSignal;
  /** Ctrl-C stops it and says what was kept (the CLI). */
  interruptible?: boolean;
}

export interface PullReport {
  id: string;
  /** The reference as Docker shows it: `busybox:latest`, `host:5000/team/app@sha256:…`. */
  reference: string;
  digest: string;
  /** Nothing changed: the image was here under this name already. */
  upToDate: boolean;
}

export async function pullImage(ctx: EngineContext, req: PullRequest, hooks: ImageHooks = {}): Promise<PullReport> {
  const ref = parseReference(req.reference);
  const settings = await ctx.settings();
  const { pull } = await import('../image/pull');
  const r = await pull(ctx.store, settings, req.reference, {
    ...(req.platform ? { platform: req.platform } : {}),
    registry: requestRegistry(req),
    ...(req.signal ? { signal: req.signal } : {}),
    interruptible: !!req.interruptible,
    onEvent: hooks.progress ?? (() => undefined),
  });
  imageEvent(ctx, 'pull', ref.familiar(), ref.familiarName());
  await keepSquashes(ctx, [r.image.id], hooks);
  return { id: r.image.id, reference: ref.familiar(), digest: r.digest, upToDate: r.upToDate };
}

export interface PushRequest {
  /** A local image: name or id. */
  image: string;
  /** registry/repository[:tag]; default: the image's name. */
  destination?: string;
  registry?: RegistryOptions;
  auth?: AuthConfig;
  signal?: AbortSignal;
}

export interface PushReport {
  destination: string;
  tag?: string;
  digest: string;
  size: number;
  blobs: Record<string, { action: 'exists' | 'mounted' | 'pushed'; from?: string }>;
}

export async function pushImage(ctx: EngineContext, req: PushRequest, hooks: ImageHooks = {}): Promise<PushReport> {
  const { pushImage: push } = await import('../image/push');
  const r = await push(ctx.store, req.image, req.destination, {
    registry: requestRegistry(req),
    ...(req.signal ? { signal: req.signal } : {}),
    onEvent: hooks.progress ?? (() => undefined),
  });
  const dest = parseReference(r.destination);
  imageEvent(ctx, 'push', dest.familiar(), dest.familiarName());
  return r;
}

/** The local tags of a repository (`host:5000/team/app`), for a push of all of them. */
export function repositoryTags(ctx: EngineContext, repository: string): string[] {
  const name = parseReference(repository).name;
  return Object.keys(ctx.store.tags())
    .filter((t) => splitTag(t)[0] === name)
    .sort();
}

// ---- tag, untag, remove --------------------------------------------------------------------

export function tagImage(ctx: EngineContext, source: string, target: string): { id: string; tag: string } {
  const img = requireImage(ctx.store, source);
  const ref = parseReference(target);
  if (ref.digest) throw new BurrowError('EUSAGE', `invalid tag ${target}: a tag cannot name a digest`, 'give REPOSITORY[:TAG]');
  ctx.store.tag(img.id, ref.canonical());
  imageEvent(ctx, 'tag', img.id, ref.familiar());
  return { id: img.id, tag: ref.canonical() };
}

/**
 * An image that cannot be removed as asked: `message` in the CLI's words, `dockerMessage` in
 * Docker's (the API's 409 body, which clients show as it is).
 */
export class ImageConflictError extends BurrowError {
  constructor(
    message: string,
    readonly dockerMessage: string,
  ) {
    super('EIMAGE_IN_USE', message);
    this.name = 'ImageConflictError';
  }
}

export type RemoveItem = { Untagged: string } | { Deleted: string };

export interface RemoveReport {
  /** What happened, in order, as Docker reports it (`Untagged: busybox:latest`, `Deleted: sha256:…`). */
  items: RemoveItem[];
  /** Layers or blobs left because a pull, load or import runs (a later prune takes them). */
  kept: number;
}

/**
 * `rmi` / `DELETE /images/{name}`: a name of an image with several names only loses that name;
 * otherwise the image goes with all its names, unless a container uses it or (given by id) it
 * has several names — both need `force`. Its layers and blobs nothing else uses go too, unless
 * `noprune`.
 */
export async function removeImage(ctx: EngineContext, ref: string, o: { force?: boolean; noprune?: boolean } = {}): Promise<RemoveReport> {
  const img = findImage(ctx.store, ref);
  if (!img) throw new BurrowError('EIMAGE_NOT_FOUND', `no such image: ${ref}`);
  const short = img.id.replace(/^sha256:/, '').slice(0, 12);
  const { Containers } = await import('../container/records');
  const { containerState } = await import('../container/state');
  const ctrs = new Containers(ctx.store);
  const users = ctrs.all().filter((c) => c.image === img.id);
  let byTag: string | undefined;
  try {
    const r = parseReference(ref);
    if (img.repoTags.includes(r.canonical())) byTag = r.canonical();
  } catch {
    /* an id */
  }
  if (byTag && img.repoTags.length > 1) {
    ctx.store.untag(byTag);
    imageEvent(ctx, 'untag', img.id, img.id);
    return { items: [{ Untagged: shownTag(byTag) }], kept: 0 };
  }
  if (!byTag && img.repoTags.length > 1 && !o.force) {
    throw new ImageConflictError(
      `image ${ref} is referenced by several names (${img.repoTags.map(shownTag).join(', ')}): remove them by name, or use -f`,
      `conflict: unable to delete ${short} (must be forced) - image is referenced in multiple repositories`,
    );
  }
  if (users.length && !o.force) {
    const u = users[0]!;
    const running = (() => {
      try {
        return containerState(u, ctrs.dir(u.id)).status === 'running';
      } catch {
        return false;
      }
    })();
    throw new ImageConflictError(
      `image ${ref} is in use by container ${u.id.slice(0, 12)} (${u.name}): remove the container first, or use -f`,
      byTag
        ? `conflict: unable to remove repository reference "${ref}" (must force) - container ${u.id.slice(0, 12)} is using its referenced image ${short}`
        : `conflict: unable to delete ${short} (must be forced) - image is being used by ${running ? 'running' : 'stopped'} container ${u.id.slice(0, 12)}`,
    );
  }
  const items: RemoveItem[] = img.repoTags.map((t) => ({ Untagged: shownTag(t) }));
  ctx.store.deleteImage(img.id);
  if (img.repoTags.length) imageEvent(ctx, 'untag', img.id, img.id);
  items.push({ Deleted: img.id });
  imageEvent(ctx, 'delete', img.id, img.id);
  if (o.noprune) return { items, kept: 0 };
  const { reclaimImage } = await import('../storage/prune');
  const gc = await reclaimImage(ctx.store, await ctx.settings(), img);
  return { items, kept: gc.kept };
}

/**
 * The squashfs of images just put in the store, when the store keeps them (ts/engine/squash.ts):
 * loaded only then, so that stores of unpacked layers pay nothing.
 */
async function keepSquashes(ctx: EngineContext, ids: string[], hooks: Hooks): Promise<void> {
  const { imageFormat } = await import('../storage/image-format');
  if (imageFormat(ctx.store).format === 'squashfs') await (await import('./squash')).keepStoreSquashes(ctx, ids, hooks);
}

// ---- list, inspect, history ----------------------------------------------------------------

/** Docker's `images` filters: reference, dangling, label, before, since. */
export interface ImageFilters {
  reference?: string[];
  dangling?: boolean;
  /** `KEY` or `KEY=VALUE`; every one must match. */
  label?: string[];
  /** Images created before (since: after) this image. */
  before?: string;
  since?: string;
}

export interface ImageSummary {
  record: ImageRecord;
  id: string;
  /** Canonical `repository:tag`s; with a reference filter, only those it matches. */
  repoTags: string[];
  repoDigests: string[];
  /**
   * The rows `images` shows: [repository in full, tag], one per tag; an untagged image pulled by
   * digest shows its repository with tag `<none>` (as in Docker), one with neither [undefined,
   * `<none>`]. With a reference filter, only the rows it matches.
   */
  names: [string | undefined, string][];
  created?: string;
  /** What the image's content takes in the store (shared content counted in each image); 0 when not asked for. */
  size: number;
  /** Its config's labels; empty when not asked for. */
  labels: Record<string, string>;
}

const FILTER_KEYS = new Set(['reference', 'dangling', 'label', 'before', 'since']);

/** Docker's `filters` map as typed filters; an unknown key or a bad value is EUSAGE. */
export function imageFiltersFrom(f: Record<string, string[]>): ImageFilters {
  const out: ImageFilters = {};
  for (const [k, v] of Object.entries(f)) {
    if (!FILTER_KEYS.has(k)) throw new BurrowError('EUSAGE', `invalid filter '${k}'`);
    if (k === 'reference' || k === 'label') out[k] = v;
    else if (k === 'dangling') {
      const d = v[v.length - 1];
      if (d !== undefined && !/^(true|false|1|0)$/i.test(d)) throw new BurrowError('EUSAGE', `invalid filter 'dangling=${d}'`);
      if (d !== undefined) out.dangling = /^(true|1)$/i.test(d);
    } else if (v.length) out[k as 'before' | 'since'] = v[v.length - 1]!;
  }
  return out;
}

function labelMatches(want: string, labels: Record<string, string>): boolean {
  const i = want.indexOf('=');
  if (i < 0) return want in labels;
  return labels[want.slice(0, i)] === want.slice(i + 1);
}

/** Images, newest first, filtered as Docker filters them. */
export async function listImages(ctx: EngineContext, f: ImageFilters = {}, o: { sizes?: boolean; labels?: boolean } = {}): Promise<ImageSummary[]> {
  const { imageDiskSize } = await import('../storage/refs');
  const cache = new Map<string, number>();
  const time = (img: ImageRecord): number => Date.parse(img.created ?? img.pulledAt) || 0;
  const bound = (ref: string | undefined): number | undefined => (ref === undefined ? undefined : time(requireImage(ctx.store, ref)));
  const before = bound(f.before);
  const since = bound(f.since);
  const refs = f.reference?.map(referenceFilter);
  const out: ImageSummary[] = [];
  // Newest first, as strings (not localeCompare: its first call loads ICU's collator, 5-20 ms).
  const newest = (a: ImageRecord, b: ImageRecord): number => ((a.created ?? '') < (b.created ?? '') ? 1 : (a.created ?? '') > (b.created ?? '') ? -1 : 0);
  for (const img of ctx.store.images().sort(newest)) {
    if (f.dangling !== undefined && (img.repoTags.length === 0) !== f.dangling) continue;
    if (before !== undefined && !(time(img) < before)) continue;
    if (since !== undefined && !(time(img) > since)) continue;
    let names: [string | undefined, string][] = img.repoTags.length
      ? img.repoTags.map(splitTag)
      : img.repoDigests.length
        ? [...new Set(img.repoDigests.map((d) => d.slice(0, d.indexOf('@'))))].map((r) => [r, '<none>'])
        : [[undefined, '<none>']];
    if (refs) {
      names = names.filter(([full, tag]) => full !== undefined && refs.some((m) => m(full, tag)));
      if (!names.length) continue;
    }
    // Read from the config only when asked for or filtered on (`images` shows none).
    const labels = o.labels !== false || f.label ? imageLabels(ctx, img) : {};
    if (f.label && !f.label.every((l) => labelMatches(l, labels))) continue;
    const repoTags = names.filter(([full, tag]) => full !== undefined && tag !== '<none>').map(([full, tag]) => `${full}:${tag}`);
    out.push({ record: img, id: img.id, repoTags, repoDigests: img.repoDigests, names, ...(img.created ? { created: img.created } : {}), size: o.sizes === false ? 0 : imageDiskSize(ctx.store, img, cache), labels });
  }
  return out;
}

/** Docker's image inspect object (ts/container/inspect.ts), or EIMAGE_NOT_FOUND. */
export async function inspectImage(ctx: EngineContext, ref: string): Promise<Record<string, unknown>> {
  const img = requireImage(ctx.store, ref);
  const { inspectImage: inspect } = await import('../container/inspect');
  return inspect(ctx.store, img) as Record<string, unknown>;
}

export interface HistoryReport {
  id: string;
  repoTags: string[];
  /** Oldest first, as in the config; `size` is the unpacked size of the layer the entry made. */
  entries: { created?: string; createdBy: string; comment: string; emptyLayer: boolean; size: number }[];
}

export async function imageHistory(ctx: EngineContext, ref: string): Promise<HistoryReport> {
  const img = requireImage(ctx.store, ref);
  const { imageConfig } = await import('../container/create');
  const { layerBytes } = await import('../storage/refs');
  // Each layer's size unpacked, as Docker shows it (the compressed size for one not unpacked).
  const sizes = img.layers.map((l) => {
    const record = ctx.store.layer(l.diffId);
    return record ? layerBytes(ctx.store, { hex: l.diffId.replace(/^sha256:/, ''), record, hasDir: true, mtimeMs: 0 }) : l.size;
  });
  let layer = 0;
  const entries = imageConfig(ctx.store, img).history.map((h) => ({
    ...(h.created ? { created: h.created } : {}),
    createdBy: h.created_by ?? '',
    comment: h.comment ?? '',
    emptyLayer: !!h.empty_layer,
    size: h.empty_layer ? 0 : (sizes[layer++] ?? 0),
  }));
  return { id: img.id, repoTags: img.repoTags, entries };
}

// ---- save, load, import --------------------------------------------------------------------

export type ArchiveFormat = 'docker-archive' | 'oci-archive';

/** Writes the images as one archive to `out`; an unknown image fails before a byte is written. */
export async function saveImages(ctx: EngineContext, refs: string[], out: Writable, format: ArchiveFormat = 'docker-archive'): Promise<void> {
  const { saveImages: save } = await import('../image/archive');
  await save(ctx.store, refs, out, format);
  for (const r of refs) {
    const img = findImage(ctx.store, r);
    if (img) imageEvent(ctx, 'save', img.id, img.id);
  }
}

/** The lines Docker prints for a load: `Loaded image: NAME` per name, `Loaded image ID: ID` for an unnamed image, the ids alone with `quiet`. */
export function loadedLines(r: LoadReport, quiet: boolean): string[] {
  return r.images.flatMap((l) => (quiet ? [`${l.id}\n`] : l.names.length ? l.names.map((n) => `Loaded image: ${n}\n`) : [`Loaded image ID: ${l.id}\n`]));
}

export interface LoadReport {
  images: { id: string; /** Familiar names: `busybox:latest`. */ names: string[] }[];
}

/**
 * Loads every image of an archive (docker-archive or oci-archive, plain or gzip). An archive
 * that ends early or is refused leaves no image: records are written after their content.
 */
export async function loadImages(ctx: EngineContext, input: AsyncIterable<Buffer>, what = 'the archive', hooks: Hooks = {}): Promise<LoadReport> {
  const settings = await ctx.settings();
  const { archiveInput, loadArchive } = await import('../image/archive');
  const loaded = await loadArchive(ctx.store, settings, archiveInput(input), what);
  for (const l of loaded) imageEvent(ctx, 'load', l.id, l.id);
  await keepSquashes(ctx, loaded.map((l) => l.id), hooks);
  return { images: loaded.map((l) => ({ id: l.id, names: l.names.map((n) => parseReference(n).familiar()) })) };
}

/** What `--change` (import, commit) sets in an image's config. */
export interface ImageChanges {
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  exposedPorts?: string[];
  labels?: Record<string, string>;
}

/**
 * `LABEL k=v k2="v 2"` as the Dockerfile has it: pairs, values optionally double-quoted (with
 * backslash escapes); the old `LABEL k v` form is one pair.
 */
function keyValuePairs(kw: 'LABEL' | 'ENV', arg: string, change: string): [string, string][] {
  const s = arg.trim();
  if (!s.includes('=')) {
    const m = /^(\S+)\s+(.*)$/s.exec(s);
    if (!m) throw new BurrowError('EUSAGE', `invalid --change ${change}: want ${kw} KEY=VALUE …`);
    return [[m[1]!, m[2]!]];
  }
  const out: [string, string][] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|[^=\s]+)=("(?:[^"\\]|\\.)*"|\S*)/gy;
  const unquote = (v: string): string => (v.startsWith('"') ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v);
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(s)) !== null && m[0] !== '') {
    out.push([unquote(m[1]!), unquote(m[2]!)]);
    end = re.lastIndex;
  }
  if (s.slice(end).trim()) throw new BurrowError('EUSAGE', `invalid --change ${change}: want ${kw} KEY=VALUE …`);
  return out;
}

/** Dockerfile-like `--change` instructions: CMD, ENV, WORKDIR, EXPOSE, LABEL. */
export function parseChanges(changes: string[]): ImageChanges {
  const out: ImageChanges = {};
  for (const c of changes) {
    const m = /^(\w+)\s+(.*)$/s.exec(c.trim());
    if (!m) throw new BurrowError('EUSAGE', `invalid --change ${c}`);
    const [, kw = '', arg = ''] = m;
    const list = (): string[] => {
      if (!arg.trim().startsWith('[')) return ['/bin/sh', '-c', arg];
      let v: unknown;
      try {
        v = JSON.parse(arg);
      } catch {
        throw new BurrowError('EUSAGE', `invalid --change ${c}: not a JSON list`);
      }
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new BurrowError('EUSAGE', `invalid --change ${c}: want a JSON list of strings`);
      return v;
    };
    switch (kw.toUpperCase()) {
      case 'CMD':
        out.cmd = list();
        break;
      case 'ENV':
        // As a Dockerfile's ENV: `K=V K2="V 2"` sets each, the older `K V W` sets K to `V W`;
        // a name set again replaces its value.
        for (const [k, v] of keyValuePairs('ENV', arg, c)) {
          const env = (out.env ??= ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
          const at = env.findIndex((e) => e.slice(0, e.indexOf('=')) === k);
          if (at >= 0) env[at] = `${k}=${v}`;
          else env.push(`${k}=${v}`);
        }
        break;
      case 'WORKDIR':
        out.workingDir = arg;
        break;
      case 'EXPOSE':
        for (const p of arg.trim().split(/\s+/)) {
          if (!/^\d+(-\d+)?(\/(tcp|udp))?$/.test(p)) throw new BurrowError('EUSAGE', `invalid --change EXPOSE ${p}: want PORT[/tcp|/udp]`);
          (out.exposedPorts ??= []).push(p);
        }
        break;
      case 'LABEL':
        for (const [k, v] of keyValuePairs('LABEL', arg, c)) (out.labels ??= {})[k] = v;
        break;
      default:
        throw new BurrowError('EUSAGE', `--change ${kw} is not supported (CMD, ENV, WORKDIR, EXPOSE, LABEL)`);
    }
  }
  return out;
}

export interface ImportRequest {
  /** A tarball on disk, or its bytes (a request body), stored aside first. */
  source: { file: string } | { stream: AsyncIterable<Buffer>; name?: string };
  reference?: string;
  changes?: string[];
  message?: string;
}

/** A root filesystem tarball (plain, gzip or zstd) as a one-layer image. */
export async function importImage(ctx: EngineContext, req: ImportRequest, hooks: Hooks = {}): Promise<{ id: string }> {
  // An Apptainer/Singularity image: its system partition as the layer (ts/engine/squash.ts).
  if ('file' in req.source && (await import('../storage/squash')).isSifFile(req.source.file)) {
    if (req.changes?.length) throw new BurrowError('EUSAGE', '--change is not supported with a SIF: its environment and runscript are the image\'s');
    const r = await (await import('./squash')).importSif(ctx, req.source.file, req.reference);
    imageEvent(ctx, 'import', r.id, r.id);
    await keepSquashes(ctx, [r.id], hooks);
    return r;
  }
  // Bad changes and a bad name fail before anything is read or written.
  const changes = parseChanges(req.changes ?? []);
  if (req.reference) parseReference(req.reference);
  const settings = await ctx.settings();
  const { importTarball } = await import('../image/importer');
  const opts = { ...changes, ...(req.message ? { message: req.message } : {}) };
  let img: ImageRecord;
  if ('file' in req.source) img = await importTarball(ctx.store, settings, req.source.file, req.reference, opts);
  else {
    ctx.store.init();
    const tmp = path.join(ctx.store.p('tmp'), `import-body-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
    try {
      const { pipeline } = await import('node:stream/promises');
      const { Readable } = await import('node:stream');
      await pipeline(Readable.from(req.source.stream), fs.createWriteStream(tmp, { mode: 0o600 }));
      img = await importTarball(ctx.store, settings, tmp, req.reference, { ...opts, source: req.source.name ?? '-' });
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  imageEvent(ctx, 'import', img.id, img.id);
  await keepSquashes(ctx, [img.id], hooks);
  return { id: img.id };
}

// ---- prune ---------------------------------------------------------------------------------

/** `image prune`: dangling images (`all`: every image no container uses), then unreferenced content. */
export async function pruneImages(ctx: EngineContext, o: { all: boolean; filters: string[] }): Promise<ImagePruneResult> {
  const { pruneImages: prune } = await import('../storage/prune');
  const r = await prune(ctx.store, await ctx.settings(), o);
  for (const i of r.images) {
    if (i.untagged.length) imageEvent(ctx, 'untag', i.id, i.id);
    imageEvent(ctx, 'delete', i.id, i.id);
  }
  return r;
}

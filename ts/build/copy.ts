/**
 * COPY and ADD: a layer packed straight from the sources (ts/storage/pack.ts `packEntries`), no
 * container. Sources are checked and hashed before the step runs (the cache key holds their
 * content): from the context (resolved inside it, .dockerignore applied, globs), from a stage or
 * an image (`--from`, read in the merged view of its layers), heredocs, and for ADD a local tar
 * (extracted) or an http(s) URL (downloaded, `--checksum` checked).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { lookupId } from '../container/spec';
import { archiveKind, fileHead, type ArchiveKind } from '../image/tar';
import { packEntries, type PackEntry } from '../storage/pack';
import type { LayerRef, StorageSettings, Store } from '../storage/store';
import type { CopyInstruction } from './dockerfile/ast';
import { globRegExp, hashTree, matchSources, resolveInRoot, type BuildContext } from './context';
import { adoptLayer, type BuildState } from './state';

function inputError(msg: string, fix?: string): BurrowError {
  return new BurrowError('EBUILD_INPUT', msg, fix);
}

/** `--chown` and WORKDIR's owner: `user[:group]`, names looked up in the stage's passwd and group. */
export function resolveChown(spec: string, layerDirs: string[]): { uid: number; gid: number } {
  const [u = '', g] = spec.split(':');
  const num = (s: string) => (/^\d+$/.test(s) ? Number(s) : undefined);
  let uid = num(u);
  let gid: number | undefined;
  if (uid === undefined) {
    const found = lookupId(layerDirs, 'passwd', u);
    if (!found) throw new BurrowError('EBUILD_STEP', `unable to find user ${u}: no matching entries in the stage's /etc/passwd`);
    uid = found.id;
    gid = found.gid;
  }
  if (g !== undefined && g !== '') {
    gid = num(g);
    if (gid === undefined) {
      const found = lookupId(layerDirs, 'group', g);
      if (!found) throw new BurrowError('EBUILD_STEP', `unable to find group ${g}: no matching entries in the stage's /etc/group`);
      gid = found.id;
    }
  } else if (g === undefined && gid === undefined) gid = uid;
  return { uid, gid: gid ?? uid };
}

async function pack(store: Store, settings: StorageSettings, entries: PackEntry[], tmpDir: string, signal?: AbortSignal): Promise<LayerRef> {
  const file = path.join(tmpDir, `copy-${Math.random().toString(16).slice(2)}.layer`);
  const r = await packEntries(settings, entries, file, signal ? { signal } : {});
  return adoptLayer(store, settings, file, r);
}

/** WORKDIR's directory as a layer of its own. */
export async function mkdirLayer(store: Store, settings: StorageSettings, dir: string, owner: { uid: number; gid: number } | undefined, tmpDir: string, signal?: AbortSignal): Promise<LayerRef> {
  const empty = fs.mkdtempSync(path.join(tmpDir, 'workdir-'));
  fs.chmodSync(empty, 0o755);
  return pack(store, settings, [{ source: { path: empty }, dest: dir, ...(owner ? owner : {}) }], tmpDir, signal);
}

export interface CopyPlan {
  /** What the cache key holds beyond the parent: sources' content, destinations, options. */
  keyParts: unknown[];
  /** The instruction's arguments as history shows them. */
  shown: string;
  run(settings: StorageSettings): Promise<LayerRef>;
}

const isUrl = (s: string) => /^https?:\/\//i.test(s);

/**
 * Extracts a local archive for ADD with the layer unpacker, in the store's user namespace: the
 * entries keep the owners the archive gives them (as Docker's ADD keeps them), and what a hostile
 * archive tries (`..`, absolute names, writing through a symlink, links out) is refused as it is
 * for image layers. bzip2 and xz, which the unpacker does not read, are decompressed first.
 */
async function extractArchive(settings: StorageSettings, file: string, kind: ArchiveKind, out: string, tmpDir: string, shown: string): Promise<void> {
  let tar = file;
  if (kind === 'bzip2' || kind === 'xz') {
    const { spawnSync } = await import('node:child_process');
    tar = path.join(tmpDir, `add-${Math.random().toString(16).slice(2)}.tar`);
    const fd = fs.openSync(tar, 'w', 0o600);
    try {
      const r = spawnSync(kind, ['-dc', file], { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8' });
      if (r.error || r.status !== 0) throw new BurrowError('EBUILD_STEP', `ADD ${shown}: ${kind} cannot decompress it: ${r.error?.message ?? r.stderr.trim()}`);
    } finally {
      fs.closeSync(fd);
    }
  }
  const { runInUserns } = await import('../storage/unpack');
  const [r] = await runInUserns(settings, [{ blob: tar, dest: out }], 'apply');
  if (!r?.ok) throw new BurrowError(r?.code === 'ELAYER_UNSAFE' ? 'ELAYER_UNSAFE' : 'EBUILD_STEP', `ADD ${shown}: extracting the archive failed: ${r?.error ?? 'no report'}`);
}

async function download(url: string, tmpDir: string, checksum: string | undefined, signal?: AbortSignal): Promise<{ file: string; digest: string }> {
  const res = await fetch(url, signal ? { signal } : {}).catch((e: Error) => {
    throw inputError(`ADD ${url}: ${e.message}`);
  });
  if (!res.ok) throw inputError(`ADD ${url}: the server answered ${res.status} ${res.statusText}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (checksum && checksum !== digest) throw inputError(`ADD ${url}: checksum mismatch: want ${checksum}, got ${digest}`);
  const file = path.join(tmpDir, `add-${Math.random().toString(16).slice(2)}`);
  fs.writeFileSync(file, bytes, { mode: 0o600 });
  return { file, digest };
}

/**
 * The names in directory `rel` of a stage as its merged view shows them: the union over its layer
 * directories (`tops`, top layer first), without whiteouts (`.wh.NAME` files, 0:0 character
 * devices) and without the names they hide in the layers below.
 */
function mergedNames(tops: string[], rel: string): string[] {
  const seen = new Set<string>();
  const hidden = new Set<string>();
  for (const d of tops) {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(path.join(d, rel), { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of ents) {
      if (e.name.startsWith('.wh.')) {
        if (e.name !== '.wh..wh..opq') hidden.add(e.name.slice(4));
        continue;
      }
      if (e.isCharacterDevice() && fs.lstatSync(path.join(d, rel, e.name)).rdev === 0) {
        hidden.add(e.name);
        continue;
      }
      if (!hidden.has(e.name)) seen.add(e.name);
    }
  }
  return [...seen].sort();
}

/** `COPY --from=stage` sources with wildcards (`/out/*.so`), matched in the stage's merged view, component by component. */
function matchInLayers(tops: string[], pattern: string): string[] {
  let cur = [''];
  for (const comp of pattern.split('/').filter(Boolean)) {
    const next: string[] = [];
    for (const base of cur) {
      if (!/[*?[]/.test(comp)) {
        next.push(`${base}/${comp}`);
        continue;
      }
      const re = globRegExp(comp);
      for (const n of mergedNames(tops, base)) if (re.test(n)) next.push(`${base}/${n}`);
    }
    cur = next;
  }
  return cur.filter((p) => tops.some((d) => fs.lstatSync(path.join(d, p), { throwIfNoEntry: false })));
}

/**
 * Checks and hashes a COPY/ADD's sources (EBUILD_INPUT before any work when one is missing or
 * outside the context) and returns how to make its layer.
 */
export async function copyStep(
  store: Store,
  ctx: BuildContext,
  ins: CopyInstruction,
  state: BuildState,
  x: (w: string) => string,
  xHeredoc: (body: string) => string,
  fromSource: (ref: string) => Promise<BuildState>,
  chown: typeof resolveChown,
  tmpDir: string,
  signal?: AbortSignal,
): Promise<CopyPlan> {
  const sources = ins.sources.map(x);
  let dest = x(ins.dest);
  const workdir = state.config.config.WorkingDir || '/';
  const dirDest = dest.endsWith('/') || dest.endsWith('/.') || dest === '.';
  dest = path.posix.resolve(workdir, dest);
  const layerDirs = [...state.layers].reverse().map((l) => store.layerDir(l.diffId));
  const owner = ins.chown ? chown(x(ins.chown), layerDirs) : undefined;
  let mode: number | undefined;
  if (ins.chmod) {
    const m = x(ins.chmod);
    if (!/^[0-7]{3,4}$/.test(m)) throw inputError(`invalid --chmod=${m}: want octal digits such as 755`);
    mode = parseInt(m, 8);
  }
  const opts = { ...(owner ?? {}), ...(mode !== undefined ? { mode } : {}) };
  const keyParts: unknown[] = [dest, dirDest, owner ?? null, mode ?? null, ins.link];
  const entries: PackEntry[] = [];
  const many = sources.length + ins.heredocs.length > 1 || sources.some((s) => /[*?[]/.test(s));
  if (many && !dirDest) throw inputError(`${ins.kind} ${ins.original}: with more than one source the destination must be a directory and end with a /`);
  const fileDest = (name: string) => (dirDest || many ? path.posix.join(dest, name) : dest);
  const later: Array<(settings: StorageSettings) => Promise<void>> = [];
  // COPY --exclude=PATTERN: .dockerignore's syntax, relative to each source.
  let excluded: ((rel: string, isDir: boolean) => boolean) | undefined;
  if (ins.exclude.length) {
    const { IgnoreMatcher } = await import('./ignore');
    const m = new IgnoreMatcher(ins.exclude.map(x));
    excluded = (rel, isDir) => m.excluded(rel, isDir);
    keyParts.push('exclude', ins.exclude.map(x));
  }

  if (ins.from) {
    const ref = x(ins.from);
    const src = await fromSource(ref);
    keyParts.push('from', src.key);
    const dirs = src.layers.map((l) => store.layerDir(l.diffId));
    const top = [...dirs].reverse();
    for (const s of sources) {
      const abs = path.posix.resolve('/', s);
      const paths = /[*?[]/.test(abs) ? matchInLayers(top, abs) : [abs];
      if (!paths.length) throw inputError(`${ins.kind} --from=${ref}: ${s} matches nothing there`);
      for (const p of paths) {
        const hit = top.map((d) => fs.lstatSync(path.join(d, p), { throwIfNoEntry: false })).find((st) => st);
        if (!hit) throw inputError(`${ins.kind} --from=${ref}: ${s} does not exist there`);
        keyParts.push(p);
        entries.push({ source: { layers: dirs, path: p }, dest: hit.isDirectory() ? dest : fileDest(path.posix.basename(p)), ...opts });
      }
    }
  } else {
    for (const s of sources) {
      if (ins.kind === 'ADD' && isUrl(s)) {
        const checksum = ins.checksum ? x(ins.checksum) : undefined;
        keyParts.push('url', s, checksum ?? null);
        const name = path.posix.basename(new URL(s).pathname) || 'index.html';
        // Downloaded when the step runs (the checksum, when given, is the cache key's content).
        const entry: PackEntry = { source: { content: '' }, dest: fileDest(name), ...opts, ...(mode === undefined ? { mode: 0o600 } : {}) };
        entries.push(entry);
        later.push(async () => {
          const d = await download(s, tmpDir, checksum, signal);
          entry.source = { path: d.file };
        });
        continue;
      }
      for (const rel of matchSources(ctx, s)) {
        if (excluded?.(path.posix.basename(rel), false)) continue;
        const host = resolveInRoot(ctx.dir, rel).host;
        const h = hashTree(ctx, rel, excluded);
        keyParts.push(rel, h.digest);
        const kind = ins.kind === 'ADD' && !h.isDir ? archiveKind(fileHead(host)) : undefined;
        if (h.isDir) entries.push({ source: { path: host, root: ctx.dir }, dest, ...opts, ...(h.exclude.length ? { exclude: h.exclude } : {}) });
        else if (kind) {
          const out = fs.mkdtempSync(path.join(tmpDir, 'add-'));
          // Read back as a one-layer view: its owners are kept (a --chown still overrides them).
          entries.push({ source: { layers: [out], path: '/' }, dest, ...opts });
          later.push((settings) => extractArchive(settings, host, kind, out, tmpDir, s));
        } else entries.push({ source: { path: host, root: ctx.dir }, dest: fileDest(path.posix.basename(rel)), ...opts });
      }
    }
  }
  for (const h of ins.heredocs) {
    const content = h.expand ? xHeredoc(h.content) : h.content;
    keyParts.push('heredoc', h.name, content);
    entries.push({ source: { content: Buffer.from(content).toString('base64') }, dest: fileDest(h.name), ...opts });
  }
  const shown = [...sources, ...ins.heredocs.map((h) => `<<${h.name}`), x(ins.dest)].join(' ');
  return {
    keyParts,
    shown,
    async run(settings) {
      for (const f of later) await f(settings);
      return pack(store, settings, entries, tmpDir, signal);
    },
  };
}

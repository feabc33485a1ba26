/**
 * A build context that arrives as a tar stream (the Engine API's `POST /build` body, `burrow build
 * -` with a tar on stdin, a context URL): saved to a file, then extracted by the layer unpacker
 * (`burrow-runtime unpack`), which already refuses what a hostile archive tries (`..`, absolute
 * names, writing through a symlink, hard links out of the tree, device nodes) and reads gzip, zstd
 * or plain tar. The tree lands in the store's tmp as `context-PID-…`, so that what a killed
 * build leaves is removed by the next command that cleans (cleanStaleTmp).
 *
 * A context's owners are not kept (the docker CLI sends 0:0 anyway): rootless, it is extracted
 * with only the user mapped, so every chown to another id is skipped and the files are the
 * user's, which the build reads (hashes) and removes without a namespace.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { BurrowError } from '../errors';
import { layerTmp, runInUserns } from '../storage/unpack';
import type { StorageSettings, Store } from '../storage/store';

export interface ExtractedContext {
  /** The context directory. */
  dir: string;
  /** Removes the directory (and the saved archive); safe to call twice. */
  cleanup(): Promise<void>;
}

/**
 * Extracts `input` (a tar, optionally gzip or zstd) into a fresh directory of the store's tmp.
 * `signal` stops the copy (the client went away): nothing is left behind.
 */
export async function extractContextTar(store: Store, settings: StorageSettings, input: Readable | AsyncIterable<Buffer>, signal?: AbortSignal): Promise<ExtractedContext> {
  store.init();
  const tmp = layerTmp(store);
  fs.mkdirSync(tmp, { recursive: true });
  const base = path.join(tmp, `context-${process.pid}-${randomBytes(6).toString('hex')}`);
  const archive = `${base}.tar`;
  const dir = base;
  let done = false;
  const cleanup = (): Promise<void> => {
    if (!done) {
      done = true;
      fs.rmSync(archive, { force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
    return Promise.resolve();
  };
  try {
    const src = input instanceof Readable ? input : Readable.from(input);
    await pipeline(src, fs.createWriteStream(archive, { mode: 0o600 }), { signal });
    if (fs.statSync(archive).size === 0) throw new BurrowError('EBUILD_INPUT', 'the build context is empty: want a tar archive of the context directory');
    fs.mkdirSync(dir, { mode: 0o700 });
    const asUser: StorageSettings = settings.idMode === 'root' ? settings : { ...settings, idMode: 'single', uidMap: [[0, process.getuid!(), 1]], gidMap: [[0, process.getgid!(), 1]] };
    const [r] = await runInUserns(asUser, [{ blob: archive, dest: dir }], 'apply');
    if (!r?.ok) {
      const unsafe = r?.code === 'ELAYER_UNSAFE';
      throw new BurrowError(unsafe ? 'ELAYER_UNSAFE' : 'EBUILD_INPUT', `the build context archive: ${r?.error ?? 'cannot be extracted'}`, unsafe ? 'the archive tries to write outside its own tree; burrow refuses it' : 'send a tar (plain, gzip or zstd) of the context directory');
    }
    fs.rmSync(archive, { force: true });
    return { dir, cleanup };
  } catch (err) {
    await cleanup();
    if (signal?.aborted) throw new BurrowError('ECANCELED', 'the build context upload was interrupted');
    throw err;
  }
}

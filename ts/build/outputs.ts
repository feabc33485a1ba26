/**
 * `--output`: the built image written out beside (or instead of) the store's image: an OCI
 * layout archive or a docker archive (ts/image/archive.ts, as `save`), a tar of the final root
 * filesystem (the layers merged by the packer, owners as the image has them, as `export`), or
 * that tree as a local directory.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Writable } from 'node:stream';
import { BurrowError } from '../errors';
import type { BuildOutput } from '../engine/build';
import { packEntries } from '../storage/pack';
import type { ImageRecord, StorageSettings, Store } from '../storage/store';

function sink(dest: string): Writable {
  return dest === '-' ? process.stdout : fs.createWriteStream(dest);
}

async function finished(w: Writable): Promise<void> {
  if (w === process.stdout) return;
  await new Promise<void>((resolve, reject) => {
    w.on('error', reject);
    w.end(() => resolve());
  });
}

export async function writeOutputs(store: Store, settings: StorageSettings, img: ImageRecord, outputs: BuildOutput[], tmpDir: string): Promise<void> {
  for (const o of outputs) {
    if (o.type === 'image') continue;
    if (o.type === 'oci' || o.type === 'docker') {
      const { saveImages } = await import('../image/archive');
      const w = sink(o.dest);
      await saveImages(store, [img.id], w, o.type === 'oci' ? 'oci-archive' : 'docker-archive');
      await finished(w);
      continue;
    }
    const tar = path.join(tmpDir, 'rootfs.tar');
    await packEntries(settings, [{ source: { layers: img.layers.map((l) => store.layerDir(l.diffId)), path: '/' }, dest: '/' }], tar, { compress: 'none' });
    if (o.type === 'tar') {
      if (o.dest === '-') {
        for await (const chunk of fs.createReadStream(tar)) process.stdout.write(chunk as Buffer);
      } else fs.copyFileSync(tar, o.dest);
    } else {
      fs.mkdirSync(o.dest, { recursive: true });
      const r = spawnSync('tar', ['-xf', tar, '-C', o.dest, '--no-same-owner', '--no-same-permissions'], { encoding: 'utf8' });
      if (r.status !== 0) throw new BurrowError('EBUILD_STEP', `--output type=local,dest=${o.dest}: ${r.stderr.trim()}`);
    }
    fs.rmSync(tar, { force: true });
  }
}

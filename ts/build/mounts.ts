/**
 * RUN --mount, prepared on the host as OCI mounts of the step's container:
 *   cache   a directory of the store (ROOT/build-cache-mounts/HASH, keyed by id, else target),
 *           kept between builds; shared by concurrent steps (sharing=locked is taken as shared)
 *   bind    a context path (resolved inside the context) or a path of a stage or image (its
 *           layers merged into a temporary directory); read-only unless rw, where writes go to
 *           a copy and are dropped, as BuildKit does
 *   tmpfs   a tmpfs
 *   secret  a --secret file bound read-only at /run/secrets/ID (or target), never in the layer
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import type { OciMount } from '../container/spec';
import type { BuildSecret } from '../engine/build';
import { BUILD_CACHE_MOUNTS_DIR } from '../storage/refs';
import { runInUserns } from '../storage/unpack';
import type { StorageSettings, Store } from '../storage/store';
import type { RunMount } from './dockerfile/ast';
import { resolveInRoot, type BuildContext } from './context';
import type { BuildState } from './state';

export interface PreparedMounts {
  oci: OciMount[];
  targets: string[];
  release(): void;
}

export async function prepareMounts(
  store: Store,
  settings: StorageSettings,
  ctx: BuildContext,
  mounts: RunMount[],
  secrets: BuildSecret[],
  workdir: string,
  fromSource: (ref: string) => Promise<BuildState>,
  tmpDir: string,
): Promise<PreparedMounts> {
  const oci: OciMount[] = [];
  const targets: string[] = [];
  const temps: string[] = [];
  for (const m of mounts) {
    const target = m.target ? path.posix.resolve(workdir, m.target) : undefined;
    switch (m.type) {
      case 'cache': {
        if (!target) throw new BurrowError('EBUILD_INPUT', 'RUN --mount=type=cache needs a target');
        const id = m.id ?? target;
        const dir = store.p(BUILD_CACHE_MOUNTS_DIR, createHash('sha256').update(id).digest('hex').slice(0, 32));
        fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
        oci.push({ destination: target, type: 'bind', source: dir, options: ['rbind', m.readonly ? 'ro' : 'rw'] });
        targets.push(target);
        break;
      }
      case 'tmpfs':
        if (!target) throw new BurrowError('EBUILD_INPUT', 'RUN --mount=type=tmpfs needs a target');
        oci.push({ destination: target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', ...(m.size ? [`size=${m.size}`] : [])] });
        targets.push(target);
        break;
      case 'secret': {
        const id = m.id ?? (m.target ? path.posix.basename(m.target) : undefined);
        const s = secrets.find((x) => x.id === id);
        if (!s) {
          if (m.required) throw new BurrowError('EBUILD_INPUT', `secret ${id} is required but was not given`, `give it: --secret id=${id},src=FILE`);
          break;
        }
        let file = s.src;
        if (!file && s.env !== undefined) {
          file = path.join(tmpDir, `secret-${Math.random().toString(16).slice(2)}`);
          fs.writeFileSync(file, process.env[s.env] ?? '', { mode: 0o600 });
        }
        if (!file || !fs.existsSync(file)) throw new BurrowError('EBUILD_INPUT', `secret ${id}: ${file ?? '(no source)'} does not exist`);
        const dst = target ?? `/run/secrets/${id}`;
        oci.push({ destination: dst, type: 'bind', source: path.resolve(file), options: ['rbind', 'ro'] });
        targets.push(dst);
        break;
      }
      case 'bind': {
        if (!target) throw new BurrowError('EBUILD_INPUT', 'RUN --mount=type=bind needs a target');
        let src: string;
        if (m.from) {
          const st = await fromSource(m.from);
          const dir = fs.mkdtempSync(path.join(tmpDir, 'bind-'));
          temps.push(dir);
          const [r] = await runInUserns(settings, [{ layers: st.layers.map((l) => store.layerDir(l.diffId)), dest: path.join(dir, 'root') }]);
          if (!r?.ok) throw new BurrowError('EBUILD_STEP', `RUN --mount from=${m.from}: ${r?.error ?? 'copy failed'}`);
          src = resolveInRoot(path.join(dir, 'root'), m.source ?? '').host;
        } else {
          src = resolveInRoot(ctx.dir, m.source ?? '').host;
          if (!fs.existsSync(src)) throw new BurrowError('EBUILD_INPUT', `RUN --mount=type=bind: ${m.source ?? '.'} does not exist in the build context`);
          if (m.readonly === false) {
            // Writes to a rw bind of the context are the step's own, dropped afterwards.
            const dir = fs.mkdtempSync(path.join(tmpDir, 'bind-'));
            fs.cpSync(src, path.join(dir, 'c'), { recursive: true, verbatimSymlinks: true });
            src = path.join(dir, 'c');
          }
        }
        oci.push({ destination: target, type: 'bind', source: src, options: ['rbind', m.readonly === false ? 'rw' : 'ro'] });
        targets.push(target);
        break;
      }
      case 'ssh':
        throw new BurrowError('EBUILD_INPUT', 'RUN --mount=type=ssh is not supported by burrow build', 'copy what the step needs, or use a secret: --secret id=ID,src=FILE');
    }
  }
  return {
    oci,
    targets,
    release() {
      for (const t of temps) fs.rmSync(t, { recursive: true, force: true });
    },
  };
}

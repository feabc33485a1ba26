/**
 * `burrow system migrate`: makes a store's saved settings those of this host again, as
 * `podman system migrate` does. The probe runs, the settings are rewritten from it (driver, id
 * mapping, the host they were checked on; drivers remembered for other hosts are forgotten),
 * and when the id mapping changes (a subordinate range added after the store was made, or gone)
 * the unpacked layers, whose owners were written for the old mapping, are unpacked again from
 * their blobs for the new one. Containers must be stopped: their processes, writable layers and
 * mounts use the old settings.
 */
import * as fs from 'node:fs';
import { BurrowError } from '../errors';
import type { HostReport } from '../host/report';
import { hostKey, localRoot, settingsFromReport } from './settings';
import type { IdMap, StorageSettings, Store } from './store';

export interface MigrateResult {
  before: StorageSettings;
  after: StorageSettings;
  idmapChanged: boolean;
  /** Layers unpacked again for the new mapping. */
  relaid: number;
  /** Layers dropped whose blob is gone (a later pull brings them back). */
  dropped: number;
}

const sameMaps = (a: StorageSettings, b: StorageSettings) => a.idMode === b.idMode && JSON.stringify(a.uidMap) === JSON.stringify(b.uidMap) && JSON.stringify(a.gidMap) === JSON.stringify(b.gidMap);

/** An id map as people read it: `0→1001, 1-65536→100000-165535`. */
export function describeMap(m: IdMap[]): string {
  if (m.length === 1 && m[0]![2] === 4294967295) return 'identity';
  return m.map(([c, h, n]) => (n === 1 ? `${c}→${h}` : `${c}-${c + n - 1}→${h}-${h + n - 1}`)).join(', ');
}

export async function migrateStore(store: Store, root: string | undefined, probe: (local?: string) => HostReport): Promise<MigrateResult | undefined> {
  const before = store.settings();
  if (!before) return undefined;
  const { Containers } = await import('../container/records');
  const { stateOf } = await import('../container/lifecycle');
  const running = new Containers(store).all().filter((r) => stateOf(store, r).status === 'running');
  if (running.length) {
    throw new BurrowError(
      'ECONTAINER_STATE',
      `${running.length} container(s) still running (${running.map((r) => r.name).join(', ')}): a store cannot change its driver or id mapping under running containers`,
      `stop them first (burrow stop ${running.map((r) => r.name).join(' ')}), then run \`burrow system migrate\` again`,
    );
  }
  const local = localRoot(before);
  const report = probe(local);
  if (!report.canRunContainers) {
    const fails = report.checks.filter((c) => c.verdict === 'fail').map((c) => `${c.title}: ${c.evidence}`);
    throw new BurrowError('EUSAGE', `containers cannot run on this host: ${fails.join('; ')}`, 'run `burrow info` for the details and fixes');
  }
  const after = { ...settingsFromReport(report), ...(local ? { local } : {}), host: hostKey(local ?? store.root, report.uid) } as StorageSettings;
  const idmapChanged = !sameMaps(before, after);
  let relaid = 0;
  let dropped = 0;
  if (idmapChanged) {
    const { removeTrees, unpackLayer } = await import('./unpack');
    const records = fs
      .readdirSync(store.p('layers'))
      .filter((n) => /^[a-f0-9]{64}\.json$/.test(n))
      .map((n) => store.layer(`sha256:${n.slice(0, 64)}`))
      .filter((r): r is NonNullable<typeof r> => r !== undefined);
    // Records first: a migration stopped half-way leaves layers that are not committed, which
    // the next command unpacks again (rootfs.ts, ensureLayers), never layers of the wrong owners.
    for (const r of records) fs.rmSync(store.p('layers', `${r.diffId.replace(/^sha256:/, '')}.json`), { force: true });
    const trees = records.map((r) => store.layerDir(r.diffId)).filter((d) => fs.existsSync(d));
    // Under the old mapping, whose ids own the files; without it (a range gone), as ourselves.
    await removeTrees(before, trees).catch(() => {
      for (const d of trees) {
        try {
          fs.rmSync(d, { recursive: true, force: true });
        } catch (err) {
          throw new BurrowError(
            'ESTORE_MISMATCH',
            `cannot remove the unpacked layer ${d}: ${(err as Error).message}; its files belong to ids of the store's old mapping, which this host no longer lets you use`,
            'restore the subordinate range and run `burrow system migrate` there, or have an administrator remove the directory, then run `burrow system migrate` again',
          );
        }
      }
    });
    store.saveSettings(after);
    for (const r of records) {
      if (!store.hasBlob(r.digest)) {
        dropped++;
        continue;
      }
      await unpackLayer(store, after, r.digest, r.diffId, r.size);
      relaid++;
    }
  } else {
    store.saveSettings(after);
  }
  return { before, after, idmapChanged, relaid, dropped };
}

/**
 * The store's fixed settings, decided once from the host probe when the store is first used:
 * the rootfs driver and the id mapping that layers are unpacked and containers run with.
 */
import { BurrowError } from '../errors';
import { Store, type IdMap, type StorageSettings } from './store';
import type { HostReport } from '../host/report';

export function settingsFromReport(r: HostReport): StorageSettings {
  const uid = r.uid;
  const gid = r.gid;
  if (uid === 0) {
    // Root maps every id to itself: images unpack with their real owners.
    return { version: 1, driver: r.storage.driver, idMode: 'root', uidMap: [[0, 0, 4294967295]], gidMap: [[0, 0, 4294967295]] };
  }
  const first = (ranges: { start: number; count: number }[]): IdMap[] => (ranges[0] ? [[1, ranges[0].start, ranges[0].count]] : []);
  if (r.idmap.mode === 'subuid') {
    return { version: 1, driver: r.storage.driver, idMode: 'subuid', uidMap: [[0, uid, 1], ...first(r.idmap.subuid)], gidMap: [[0, gid, 1], ...first(r.idmap.subgid)] };
  }
  return { version: 1, driver: r.storage.driver, idMode: 'single', uidMap: [[0, uid, 1]], gidMap: [[0, gid, 1]] };
}

/** The store's settings, probing the host the first time. */
export async function storeSettings(store: Store, root: string | undefined): Promise<StorageSettings> {
  const s = store.settings();
  if (s) return s;
  const { probeHost } = await import('../host/probe');
  const report = probeHost({ root });
  if (!report.canRunContainers) {
    const fails = report.checks.filter((c) => c.verdict === 'fail').map((c) => `${c.title}: ${c.evidence}`);
    throw new BurrowError('EUSAGE', `containers cannot run on this host: ${fails.join('; ')}`, 'run `burrow info` for the details and fixes');
  }
  const settings = settingsFromReport(report);
  store.saveSettings(settings);
  if (settings.idMode === 'single') {
    process.stderr.write(`burrow: note: no subordinate id range for this user (${report.idmap.reason}); files owned by other users in images will belong to container root. See \`burrow info\`.\n`);
  }
  return settings;
}

/** `burrow info` / `burrow doctor`: the host probe. Exit 0 when a container can run at all, 1 otherwise. */
import type { GlobalOptions } from '../../host/paths';

export interface InfoOptions {
  format?: string;
}

export async function infoCommand(opts: InfoOptions, globals: GlobalOptions): Promise<number> {
  const { probeHost } = await import('../../host/probe');
  const { storeRoot } = await import('../../host/paths');
  const { Store } = await import('../../storage/store');
  const { layoutOf } = await import('../../storage/settings');
  // A store on a network filesystem is probed as `run` uses it: its layers on this machine's
  // disk, where the overlay test runs; the store's own check then says where they go.
  const root = storeRoot(globals);
  let saved;
  try {
    saved = new Store(root).settings();
  } catch {
    saved = undefined; // unreadable settings are the store commands' to report, not the probe's
  }
  const layout = layoutOf(root, saved, process.getuid?.() ?? 0);
  // What the store keeps of each image for `run`: its layers, or a squashfs (image-format.ts).
  const { withImageFormat } = await import('../../storage/image-format');
  const { withBinaries } = await import('../../host/binaries');
  // burrow-runtime's version, and burrow-monitor, which the probe does not run.
  const report = withBinaries(withImageFormat(probeHost(globals, layout.kind === 'redirect' ? layout.local : undefined), new Store(root)));
  if (opts.format === 'json') {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    const { renderInfo } = await import('../format/info');
    process.stdout.write(renderInfo(report, process.stdout.isTTY === true && !process.env.NO_COLOR));
  }
  return report.canRunContainers ? 0 : 1;
}

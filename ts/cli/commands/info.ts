/** `burrow info` / `burrow doctor`: the host probe. Exit 0 when a container can run at all, 1 otherwise. */
import type { GlobalOptions } from '../../host/paths';

export interface InfoOptions {
  format?: string;
}

export async function infoCommand(opts: InfoOptions, globals: GlobalOptions): Promise<number> {
  const { probeHost } = await import('../../host/probe');
  const report = probeHost(globals);
  if (opts.format === 'json') {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    const { renderInfo } = await import('../format/info');
    process.stdout.write(renderInfo(report, process.stdout.isTTY === true && !process.env.NO_COLOR));
  }
  return report.canRunContainers ? 0 : 1;
}

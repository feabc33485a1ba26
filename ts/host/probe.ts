/** Runs the host probe in the Rust core and returns the checked report. */
import { native } from '../native';
import { parseHostReport, type HostReport } from './report';
import { runtimeBinary } from '../runtime/client';
import { storeRootOverride, type GlobalOptions } from './paths';

/**
 * `localRoot`: where a store on a network filesystem keeps its layers and writable layers
 * (storage/settings.ts, storeLayout); the overlay test and the driver are then about it.
 */
export function probeHost(opts: GlobalOptions, localRoot?: string): HostReport {
  const json = native().probeHost({ storeRoot: storeRootOverride(opts), runtimeBin: runtimeBinary(), ...(localRoot ? { localRoot } : {}) });
  return parseHostReport(json);
}

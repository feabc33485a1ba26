/** Runs the host probe in the Rust core and returns the checked report. */
import { native } from '../native';
import { parseHostReport, type HostReport } from './report';
import { runtimeBinary, storeRootOverride, type GlobalOptions } from './paths';

export function probeHost(opts: GlobalOptions): HostReport {
  const json = native().probeHost({ storeRoot: storeRootOverride(opts), runtimeBin: runtimeBinary() });
  return parseHostReport(json);
}

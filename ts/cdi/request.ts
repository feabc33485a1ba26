/**
 * A create request's `--device` and `--gpus` split into host devices and CDI devices, the CDI
 * ones resolved and planned (registry.ts, edits.ts). The spec directories are read only when a
 * CDI device or `--gpus` is asked for: a plain `run` never touches them.
 */
import { gpuDevices } from './gpus';
import { looksQualified } from './names';
import { resolve, scan } from './registry';
import { plan, type CdiPlan } from './edits';

export function cdiRequest(devices: string[], gpus: string | undefined, warn: (m: string) => void): { host: string[]; plan?: CdiPlan } {
  const host = devices.filter((d) => !looksQualified(d));
  const cdi = devices.filter(looksQualified);
  if (!cdi.length && gpus === undefined) return { host };
  const reg = scan();
  if (gpus !== undefined) cdi.push(...gpuDevices(gpus, reg));
  return { host, plan: plan(resolve(reg, cdi, warn), warn) };
}

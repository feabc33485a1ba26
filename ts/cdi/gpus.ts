/**
 * Docker's `--gpus` as CDI devices of kind nvidia.com/gpu, the spec `nvidia-ctk cdi generate`
 * writes: `all` is nvidia.com/gpu=all; `device=0,1` (or `"device=GPU-uuid"`) those devices; a
 * count N the first N devices by name. Without such a spec there is nothing burrow could do
 * (no nvidia-container-runtime behind it): the error names the command that makes one.
 */
import { BurrowError } from '../errors';
import type { Registry } from './registry';

export const GPU_KIND = 'nvidia.com/gpu';

export function gpuDevices(value: string, reg: Registry): string[] {
  const specs = reg.specs.filter((s) => s.spec.kind === GPU_KIND);
  const broken = reg.broken.find((b) => b.kind === GPU_KIND);
  if (broken) throw broken.error;
  if (!specs.length) {
    throw new BurrowError(
      'ECDI_NO_GPU_SPEC',
      `--gpus ${value}: no CDI spec of kind ${GPU_KIND} in ${reg.dirs.join(', ')} (from ${reg.from}); burrow gives a container GPUs through CDI`,
      `make one with the NVIDIA Container Toolkit: nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml (as root), or write it elsewhere and set BURROW_CDI_SPEC_DIRS to that directory; then --gpus all or --device ${GPU_KIND}=all`,
    );
  }
  const v = value.replace(/^"|"$/g, '');
  if (v === 'all') return [`${GPU_KIND}=all`];
  const dev = /^device=(.+)$/.exec(v);
  if (dev) return dev[1]!.split(',').map((d) => `${GPU_KIND}=${d.trim()}`);
  if (/^\d+$/.test(v) || /^count=\d+$/.test(v)) {
    const n = Number(v.replace('count=', ''));
    const names = [...new Set(specs.flatMap((s) => s.spec.devices.map((d) => d.name)))].filter((d) => d !== 'all').sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    if (n > names.length) throw new BurrowError('ECDI_UNKNOWN_DEVICE', `--gpus ${value}: the CDI specs of kind ${GPU_KIND} define ${names.length} GPU${names.length === 1 ? '' : 's'} (${names.join(', ')})`, `ask for at most ${names.length}, or --gpus all`);
    return names.slice(0, n).map((d) => `${GPU_KIND}=${d}`);
  }
  throw new BurrowError('EUSAGE', `invalid --gpus ${value}: want all, a count, or device=NAME[,NAME…]`);
}

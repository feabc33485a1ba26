/**
 * Registry options every engine operation that talks to a registry starts from: the config
 * file's registries (insecure, mirrors) and BURROW_INSECURE_REGISTRIES, under what a request adds.
 */
import { loadConfig } from '../config/config';
import type { RegistryOptions } from '../image/registry';

export function registryOptions(extra: RegistryOptions = {}): RegistryOptions {
  const r = loadConfig().registries;
  const insecure = [...r.insecure, ...(process.env.BURROW_INSECURE_REGISTRIES ?? '').split(',').map((s) => s.trim()).filter(Boolean)];
  return {
    ...(insecure.length ? { insecureRegistries: insecure } : {}),
    ...(Object.keys(r.mirrors).length ? { mirrors: r.mirrors } : {}),
    ...extra,
  };
}

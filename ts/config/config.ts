/**
 * burrow's config file, `$XDG_CONFIG_HOME/burrow/config.toml` (default `~/.config/burrow/`;
 * `BURROW_CONFIG` names another file). Every setting has a `BURROW_*` variable and most a flag;
 * the order is flag, then environment, then this file, then the built-in default, so a script
 * can always override what a user's file says.
 *
 *   [storage]     root, runroot, image_format (ts/storage/image-format.ts)
 *   [containers]  network, userns, log_driver, init_path, port_handler, user_fallback, cdi_spec_dirs
 *   [registries]  insecure = ["host:port", …]; [registries.mirrors] "docker.io" = ["mirror", …]
 *
 * The file is read at most once per process, and only when a value is asked for that no flag or
 * variable already gave: `burrow run --root … --runroot …` with every default given never opens
 * it. A missing file is an empty config; a malformed one stops burrow (exit 125) with the file
 * and line, rather than running with settings the user did not mean.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';

export interface BurrowConfig {
  /** The file the values came from (it may not exist). */
  file: string;
  storage: { root?: string; runroot?: string; imageFormat?: string };
  containers: { network?: string; userns?: string; logDriver?: string; initPath?: string; portHandler?: string; userFallback?: string; cdiSpecDirs?: string[] };
  registries: { insecure: string[]; mirrors: Record<string, string[]> };
}

/** `[storage] image_format` (ts/storage/image-format.ts, which reads it). */
export const IMAGE_FORMATS = ['auto', 'layers', 'squashfs'];
export const NETWORK_MODES = ['none', 'host', 'slirp4netns', 'pasta'];
export const USERNS_MODES = ['subuid', 'keep-id', 'single', 'host'];
export const LOG_DRIVERS = ['k8s-file', 'json-file', 'none'];
/** What a user the container's id map lacks (single-id mode, `-u 1000`) becomes: container root with a warning, or an error. */
export const USER_FALLBACKS = ['root', 'error'];
/** The handlers that work with every network mode (slirp4netns's own is an option of that mode). */
export const PORT_HANDLER_DEFAULTS = ['burrow', 'bypass'];

type Env = Record<string, string | undefined>;

export function configFile(env: Env = process.env): string {
  if (env.BURROW_CONFIG) return path.resolve(env.BURROW_CONFIG);
  // node:os only without $HOME (a cold path: start-up loads no more than it needs).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const home = env.HOME || (require('node:os') as typeof import('node:os')).homedir();
  return path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'burrow', 'config.toml');
}

let loaded: BurrowConfig | undefined;

/** The user's config, read once; an empty one when the file does not exist. */
export function loadConfig(env: Env = process.env): BurrowConfig {
  if (loaded) return loaded;
  const file = configFile(env);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const missing = code === 'ENOENT' || code === 'ENOTDIR';
    // No file is the normal case; a file asked for by name that is not there is a mistake.
    if (missing && !env.BURROW_CONFIG) return (loaded = { file, storage: {}, containers: {}, registries: { insecure: [], mirrors: {} } });
    throw new BurrowError('ECONFIG', missing ? `BURROW_CONFIG=${env.BURROW_CONFIG}: no such file` : `${file}: ${(err as Error).message}`);
  }
  // The parser is loaded only when there is a file to parse (most runs have none).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (loaded = (require('./parse') as typeof import('./parse')).parseConfig(text, file));
}

/**
 * A setting in order of precedence: the flag's value, the variable, the file, the default.
 * `check` validates values from the variable (flags are checked by their commands).
 */
export function setting<T extends string>(flag: T | undefined, envName: string, fromFile: (c: BurrowConfig) => T | undefined, fallback: T, allowed?: readonly string[]): T {
  if (flag !== undefined) return flag;
  const e = process.env[envName];
  if (e) {
    if (allowed && !allowed.includes(e)) throw new BurrowError('EUSAGE', `${envName}=${e} is not one of ${allowed.join(', ')}`);
    return e as T;
  }
  return fromFile(loadConfig()) ?? fallback;
}

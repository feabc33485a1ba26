/**
 * burrow's config file, `$XDG_CONFIG_HOME/burrow/config.toml` (default `~/.config/burrow/`;
 * `BURROW_CONFIG` names another file). Every setting has a `BURROW_*` variable and most a flag;
 * the order is flag, then environment, then this file, then the built-in default, so a script
 * can always override what a user's file says.
 *
 *   [storage]     root, runroot
 *   [containers]  network, userns, log_driver, init_path
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
import { parseToml, TomlError, type KeyLines, type TomlTable, type TomlValue } from './toml';

export interface BurrowConfig {
  /** The file the values came from (it may not exist). */
  file: string;
  storage: { root?: string; runroot?: string };
  containers: { network?: string; userns?: string; logDriver?: string; initPath?: string };
  registries: { insecure: string[]; mirrors: Record<string, string[]> };
}

export const NETWORK_MODES = ['none', 'host', 'slirp4netns', 'pasta'];
export const USERNS_MODES = ['subuid', 'keep-id', 'single', 'host'];
export const LOG_DRIVERS = ['k8s-file', 'json-file', 'none'];

type Env = Record<string, string | undefined>;

export function configFile(env: Env = process.env): string {
  if (env.BURROW_CONFIG) return path.resolve(env.BURROW_CONFIG);
  const home = env.HOME || require('node:os').homedir();
  return path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'burrow', 'config.toml');
}

/** Known keys per table and what each accepts. */
const SCHEMA: Record<string, Record<string, 'path' | 'string' | 'strings' | { oneOf: string[] }>> = {
  storage: { root: 'path', runroot: 'path' },
  containers: { network: { oneOf: NETWORK_MODES }, userns: { oneOf: USERNS_MODES }, log_driver: { oneOf: LOG_DRIVERS }, init_path: 'path' },
  registries: { insecure: 'strings' },
};

/** Parses and checks a config file's text; `file` names it in errors. */
export function parseConfig(text: string, file: string): BurrowConfig {
  let doc: { value: TomlTable; lines: KeyLines };
  try {
    doc = parseToml(text);
  } catch (err) {
    if (err instanceof TomlError) throw configError(file, err.line, err.message);
    throw err;
  }
  const { value, lines } = doc;
  const lineOf = (k: string) => lines.get(k) ?? 0;
  const cfg: BurrowConfig = { file, storage: {}, containers: {}, registries: { insecure: [], mirrors: {} } };
  const base = path.dirname(file);
  for (const [table, body] of Object.entries(value)) {
    const known = SCHEMA[table];
    if (!known) throw configError(file, lineOf(table), `unknown table [${table}] (known: ${Object.keys(SCHEMA).map((t) => `[${t}]`).join(', ')})`);
    if (!isTable(body)) throw configError(file, lineOf(table), `${table} must be a [${table}] table, not a value`);
    for (const [k, v] of Object.entries(body)) {
      const at = `${table}.${k}`;
      if (table === 'registries' && k === 'mirrors') {
        if (!isTable(v)) throw configError(file, lineOf(at), 'registries.mirrors must be a table: [registries.mirrors] then "registry" = ["mirror", …]');
        for (const [reg, list] of Object.entries(v)) {
          if (!Array.isArray(list)) throw configError(file, lineOf(`${at}.${reg}`), `mirrors of ${reg} must be an array of strings`);
          cfg.registries.mirrors[reg] = list;
        }
        continue;
      }
      const kind = known[k];
      if (!kind) throw configError(file, lineOf(at), `unknown key ${k} in [${table}] (known: ${[...Object.keys(known), ...(table === 'registries' ? ['mirrors'] : [])].join(', ')})`);
      if (kind === 'strings') {
        if (!Array.isArray(v)) throw configError(file, lineOf(at), `${at} must be an array of strings`);
        cfg.registries.insecure = v;
        continue;
      }
      if (typeof v !== 'string') throw configError(file, lineOf(at), `${at} must be a string`);
      if (typeof kind === 'object' && !kind.oneOf.includes(v)) throw configError(file, lineOf(at), `${at} = "${v}" is not one of ${kind.oneOf.join(', ')}`);
      if (kind === 'path' && v === '') throw configError(file, lineOf(at), `${at} is empty`);
      // Relative paths are relative to the file, not to wherever burrow happens to run.
      const val = kind === 'path' ? path.resolve(base, expandHome(v)) : v;
      if (table === 'storage') cfg.storage[k as 'root' | 'runroot'] = val;
      else if (table === 'containers') {
        const field = ({ network: 'network', userns: 'userns', log_driver: 'logDriver', init_path: 'initPath' } as const)[k as 'network'];
        cfg.containers[field] = val;
      }
    }
  }
  return cfg;
}

function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(process.env.HOME || require('node:os').homedir(), p.slice(1)) : p;
}

function configError(file: string, line: number, msg: string): BurrowError {
  return new BurrowError('ECONFIG', `${file}${line ? `:${line}` : ''}: ${msg}`, 'fix the file (see "Config" in README.md), or point BURROW_CONFIG at another one');
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
  return (loaded = parseConfig(text, file));
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

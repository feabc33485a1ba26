/**
 * The config file's contents checked against what burrow knows (ts/config/config.ts loads it):
 * unknown tables and keys, wrong types and values not in a setting's list are errors that name
 * the line, like syntax errors, so that a typo never silently falls back to a default.
 */
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { IMAGE_FORMATS, LOG_DRIVERS, NETWORK_MODES, PORT_HANDLER_DEFAULTS, USER_FALLBACKS, USERNS_MODES, type BurrowConfig } from './config';
import { parseToml, TomlError, type KeyLines, type TomlTable, type TomlValue } from './toml';

/** Known keys per table and what each accepts. */
const SCHEMA: Record<string, Record<string, 'path' | 'string' | 'strings' | { oneOf: string[] }>> = {
  storage: { root: 'path', runroot: 'path', image_format: { oneOf: IMAGE_FORMATS } },
  containers: { network: { oneOf: NETWORK_MODES }, userns: { oneOf: USERNS_MODES }, log_driver: { oneOf: LOG_DRIVERS }, init_path: 'path', port_handler: { oneOf: PORT_HANDLER_DEFAULTS }, user_fallback: { oneOf: USER_FALLBACKS }, cdi_spec_dirs: 'strings' },
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
        if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw configError(file, lineOf(at), `${at} must be an array of strings`);
        // [containers] cdi_spec_dirs: directories, relative to the file like every path here.
        if (table === 'containers') cfg.containers.cdiSpecDirs = (v).map((d) => path.resolve(base, expandHome(d)));
        else cfg.registries.insecure = v;
        continue;
      }
      if (typeof v !== 'string') throw configError(file, lineOf(at), `${at} must be a string`);
      if (typeof kind === 'object' && !kind.oneOf.includes(v)) throw configError(file, lineOf(at), `${at} = "${v}" is not one of ${kind.oneOf.join(', ')}`);
      if (kind === 'path' && v === '') throw configError(file, lineOf(at), `${at} is empty`);
      // Relative paths are relative to the file, not to wherever burrow happens to run.
      const val = kind === 'path' ? path.resolve(base, expandHome(v)) : v;
      if (table === 'storage') {
        if (k === 'image_format') cfg.storage.imageFormat = val;
        else cfg.storage[k as 'root' | 'runroot'] = val;
      } else if (table === 'containers') {
        const field = ({ network: 'network', userns: 'userns', log_driver: 'logDriver', init_path: 'initPath', port_handler: 'portHandler', user_fallback: 'userFallback' } as const)[k as 'network'];
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
  // node:os only when a path starts with `~` (a cold path: start-up loads no more than it needs).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return p === '~' || p.startsWith('~/') ? path.join(process.env.HOME || (require('node:os') as typeof import('node:os')).homedir(), p.slice(1)) : p;
}

function configError(file: string, line: number, msg: string): BurrowError {
  return new BurrowError('ECONFIG', `${file}${line ? `:${line}` : ''}: ${msg}`, 'fix the file (see "Config" in README.md), or point BURROW_CONFIG at another one');
}


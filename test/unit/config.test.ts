import { describe, expect, it } from 'vitest';
import { parseToml, TomlError } from '../../ts/config/toml';
import { parseConfig } from '../../ts/config/parse';
import { keepIdMap, identityFor } from '../../ts/container/userns';
import { BurrowError } from '../../ts/errors';
import type { StorageSettings } from '../../ts/storage/store';

function tomlErr(text: string): TomlError {
  try {
    parseToml(text);
  } catch (e) {
    if (e instanceof TomlError) return e;
    throw e;
  }
  throw new Error(`parsed: ${text}`);
}

describe('the TOML subset', () => {
  it('tables, dotted and quoted keys, strings, integers, booleans, arrays of strings', () => {
    const { value, lines } = parseToml(
      [
        '# comment',
        'top = "t"',
        '',
        '[a]',
        'str = "x\\ty \\"q\\" \\u00e9"   # trailing comment',
        "lit = 'C:\\path'",
        'int = -1_000',
        'hex = 0x1F',
        'yes = true',
        'no = false',
        'arr = [ "one", \'two\',',
        '  # inside',
        '  "three", ]',
        'empty = []',
        'dot.ted = "d"',
        '[a.sub]',
        '"docker.io" = ["m"]',
      ].join('\n'),
    );
    expect(value).toEqual({
      top: 't',
      a: { str: 'x\ty "q" é', lit: 'C:\\path', int: -1000, hex: 31, yes: true, no: false, arr: ['one', 'two', 'three'], empty: [], dot: { ted: 'd' }, sub: { 'docker.io': ['m'] } },
    });
    expect(lines.get('a.arr')).toBe(11);
    expect(lines.get('a.sub.docker.io')).toBe(17);
  });

  it('CRLF line ends', () => {
    expect(parseToml('[s]\r\nk = "v"\r\n').value).toEqual({ s: { k: 'v' } });
  });

  it('refuses what it does not support, naming the line', () => {
    const cases: [string, number, RegExp][] = [
      ['a = 1\nb = bare', 2, /must be quoted/],
      ['[t]\nk = "unterminated', 2, /unterminated string/],
      ['k = "a"\nk = "b"', 2, /defined twice/],
      ['[t]\n[t]', 2, /defined twice/],
      ['x = 1.5', 1, /invalid value/],
      ['x = {a = 1}', 1, /inline tables/],
      ['[[t]]', 1, /arrays of tables/],
      ['x = [1, 2]', 1, /arrays of strings/],
      ['x = "a" "b"', 1, /after the value/],
      ['\n\nx = ["a"\n"b"]', 4, /expected , or \]/],
      ['x = ["a",\n', 2, /unterminated array/],
      ['x = """a"""', 1, /multi-line/],
      ['= 1', 1, /invalid key/],
      ['k "v"', 1, /expected =/],
      ['s = "\\q"', 1, /invalid escape/],
      ['a = "x"\na.b = "y"', 2, /already a value/],
      ['n = 99999999999999999999', 1, /too large/],
    ];
    for (const [text, line, msg] of cases) {
      const e = tomlErr(text);
      expect([e.line, e.message], text).toEqual([line, expect.stringMatching(msg)]);
    }
  });
});

describe('the config file', () => {
  it('reads storage, containers and registries; relative paths are relative to the file', () => {
    const c = parseConfig(
      '[storage]\nroot = "data"\nrunroot = "/run/b"\n[containers]\nnetwork = "host"\nuserns = "keep-id"\nlog_driver = "none"\ninit_path = "/usr/bin/tini-static"\nport_handler = "bypass"\n[registries]\ninsecure = ["r:5000"]\n[registries.mirrors]\n"docker.io" = ["m:5000", "http://m2"]\n',
      '/etc/b/config.toml',
    );
    expect(c).toEqual({
      file: '/etc/b/config.toml',
      storage: { root: '/etc/b/data', runroot: '/run/b' },
      containers: { network: 'host', userns: 'keep-id', logDriver: 'none', initPath: '/usr/bin/tini-static', portHandler: 'bypass' },
      registries: { insecure: ['r:5000'], mirrors: { 'docker.io': ['m:5000', 'http://m2'] } },
    });
  });

  it('unknown tables and keys, wrong types and values are errors with file and line (exit 125)', () => {
    const cases: [string, RegExp][] = [
      ['[storage]\n\nrot = "/x"', /^\/c\.toml:3: unknown key rot in \[storage\]/],
      ['[store]\nroot = "/x"', /^\/c\.toml:1: unknown table \[store\]/],
      ['[containers]\nuserns = "keepid"', /^\/c\.toml:2: containers\.userns = "keepid" is not one of subuid, keep-id, single, host/],
      // slirp4netns's own handler is an option of that mode, not a default for every mode.
      ['[containers]\nport_handler = "slirp4netns"', /^\/c\.toml:2: containers\.port_handler = "slirp4netns" is not one of burrow, bypass/],
      ['[storage]\nroot = 1', /^\/c\.toml:2: storage\.root must be a string/],
      ['[registries]\ninsecure = "r"', /^\/c\.toml:2: registries\.insecure must be an array/],
      ['storage = "x"', /^\/c\.toml:1: storage must be a \[storage\] table/],
      ['[storage]\nroot = /x', /^\/c\.toml:2: invalid value/],
    ];
    for (const [text, msg] of cases) {
      let err: unknown;
      try {
        parseConfig(text, '/c.toml');
      } catch (e) {
        err = e;
      }
      expect(err, text).toBeInstanceOf(BurrowError);
      expect((err as BurrowError).message, text).toMatch(msg);
      expect((err as BurrowError).code).toBe('ECONFIG');
      expect((err as BurrowError).exitCode).toBe(125);
    }
  });
});

describe('--userns id maps', () => {
  const subuid: StorageSettings = { version: 1, driver: 'overlay', idMode: 'subuid', uidMap: [[0, 1001, 1], [1, 200000, 65536]], gidMap: [[0, 1001, 1], [1, 200000, 65536]] };

  it('keep-id maps the user to themselves and keeps every other image id where the store put it', () => {
    const m = keepIdMap(subuid.uidMap, 1001);
    expect(m).toEqual([[0, 201000, 1], [1, 200000, 1000], [1001, 1001, 1], [1002, 201001, 64535]]);
    // Every container id but 0 and 1001 lands on the host id the store's mapping gave it.
    const host = (map: [number, number, number][], c: number) => map.map(([ci, h, s]) => (c >= ci && c < ci + s ? h + c - ci : undefined)).find((x) => x !== undefined);
    for (const c of [1, 2, 999, 1000, 1002, 5000, 65536]) expect(host(m, c), String(c)).toBe(host(subuid.uidMap, c));
    expect(host(m, 0)).toBe(host(subuid.uidMap, 1001));
    expect(host(m, 1001)).toBe(1001);
    // The same host ids, each once: nothing outside the user's own id and range.
    const hosts = m.flatMap(([, h, s]) => Array.from({ length: Math.min(s, 70000) }, (_, i) => h + i));
    expect(new Set(hosts).size).toBe(65537);
  });

  it('keep-id for an id above the range, and edge ids', () => {
    expect(keepIdMap(subuid.uidMap, 500000)).toEqual([[0, 265535, 1], [1, 200000, 65535], [500000, 500000, 1]]);
    expect(keepIdMap(subuid.uidMap, 1)).toEqual([[0, 200000, 1], [1, 1, 1], [2, 200001, 65535]]);
    expect(keepIdMap(subuid.uidMap, 65536)).toEqual([[0, 265535, 1], [1, 200000, 65535], [65536, 65536, 1]]);
  });

  it('modes per store, and what they refuse', () => {
    expect(identityFor('keep-id', subuid, 1001, 1001)).toMatchObject({ userNamespace: true, user: { uid: 1001, gid: 1001 } });
    expect(identityFor('single', subuid, 1001, 1001)).toEqual({ userNamespace: true, uidMap: [[0, 1001, 1]], gidMap: [[0, 1001, 1]] });
    expect(identityFor('subuid', subuid, 1001, 1001)).toEqual({ userNamespace: true, uidMap: subuid.uidMap, gidMap: subuid.gidMap });
    expect(() => identityFor('host', subuid, 1001, 1001)).toThrow(/only root can do/);
    const single: StorageSettings = { ...subuid, idMode: 'single', uidMap: [[0, 1001, 1]], gidMap: [[0, 1001, 1]] };
    expect(() => identityFor('keep-id', single, 1001, 1001)).toThrow(/needs a subordinate id range/);
    expect(() => identityFor('subuid', single, 1001, 1001)).toThrow(/single-id mode/);
    const root: StorageSettings = { ...subuid, idMode: 'root', uidMap: [[0, 0, 4294967295]], gidMap: [[0, 0, 4294967295]] };
    expect(identityFor('host', root, 0, 0)).toEqual({ userNamespace: false, uidMap: [], gidMap: [] });
    expect(identityFor('keep-id', root, 0, 0).uidMap).toEqual(root.uidMap);
  });
});

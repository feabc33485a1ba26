import { describe, expect, it } from 'vitest';
import { BurrowError } from '../../ts/errors';
import { codeOf } from './thrown';
import { isDigest, parseDigest, parseReference, parseRepository, registryApiHost } from '../../ts/image/reference';

const D = `sha256:${'f'.repeat(64)}`;
const D2 = 'sha256:e6d5cbd6a7a7d6fbf6e3f2e0a0c5b8e55ab1b1e0e0f8d8c1d2e8fa3b5f3a1c9e';

describe('parseReference: normalisation like docker pull', () => {
  // [input, registry, repository, tag, digest, familiar, canonical]
  const cases: [string, string, string, string | undefined, string | undefined, string, string][] = [
    ['alpine', 'docker.io', 'library/alpine', 'latest', undefined, 'alpine:latest', 'docker.io/library/alpine:latest'],
    ['alpine:3.20', 'docker.io', 'library/alpine', '3.20', undefined, 'alpine:3.20', 'docker.io/library/alpine:3.20'],
    ['library/alpine', 'docker.io', 'library/alpine', 'latest', undefined, 'alpine:latest', 'docker.io/library/alpine:latest'],
    ['docker.io/alpine', 'docker.io', 'library/alpine', 'latest', undefined, 'alpine:latest', 'docker.io/library/alpine:latest'],
    ['docker.io/library/alpine', 'docker.io', 'library/alpine', 'latest', undefined, 'alpine:latest', 'docker.io/library/alpine:latest'],
    ['index.docker.io/library/alpine', 'docker.io', 'library/alpine', 'latest', undefined, 'alpine:latest', 'docker.io/library/alpine:latest'],
    ['index.docker.io/alpine', 'docker.io', 'library/alpine', 'latest', undefined, 'alpine:latest', 'docker.io/library/alpine:latest'],
    ['user/repo', 'docker.io', 'user/repo', 'latest', undefined, 'user/repo:latest', 'docker.io/user/repo:latest'],
    ['user/repo:v1', 'docker.io', 'user/repo', 'v1', undefined, 'user/repo:v1', 'docker.io/user/repo:v1'],
    ['docker.io/library/foo/bar', 'docker.io', 'library/foo/bar', 'latest', undefined, 'library/foo/bar:latest', 'docker.io/library/foo/bar:latest'],
    ['a/b/c/d', 'docker.io', 'a/b/c/d', 'latest', undefined, 'a/b/c/d:latest', 'docker.io/a/b/c/d:latest'],
    ['localhost/x', 'localhost', 'x', 'latest', undefined, 'localhost/x:latest', 'localhost/x:latest'],
    ['localhost:5000/x/y:t', 'localhost:5000', 'x/y', 't', undefined, 'localhost:5000/x/y:t', 'localhost:5000/x/y:t'],
    ['127.0.0.1:5000/private/moonbase', '127.0.0.1:5000', 'private/moonbase', 'latest', undefined, '127.0.0.1:5000/private/moonbase:latest', '127.0.0.1:5000/private/moonbase:latest'],
    ['example.com/privatebase', 'example.com', 'privatebase', 'latest', undefined, 'example.com/privatebase:latest', 'example.com/privatebase:latest'],
    ['example.com:8000/private/moonbase', 'example.com:8000', 'private/moonbase', 'latest', undefined, 'example.com:8000/private/moonbase:latest', 'example.com:8000/private/moonbase:latest'],
    ['quay.io/org/repo:1.0', 'quay.io', 'org/repo', '1.0', undefined, 'quay.io/org/repo:1.0', 'quay.io/org/repo:1.0'],
    ['ghcr.io/owner/name', 'ghcr.io', 'owner/name', 'latest', undefined, 'ghcr.io/owner/name:latest', 'ghcr.io/owner/name:latest'],
    // An uppercase first component is a registry host (newer distribution/reference).
    ['Uppercase/lowercase', 'Uppercase', 'lowercase', 'latest', undefined, 'Uppercase/lowercase:latest', 'Uppercase/lowercase:latest'],
    ['[::1]:5000/foo', '[::1]:5000', 'foo', 'latest', undefined, '[::1]:5000/foo:latest', '[::1]:5000/foo:latest'],
    ['[2001:db8::1]/repo:tag', '[2001:db8::1]', 'repo', 'tag', undefined, '[2001:db8::1]/repo:tag', '[2001:db8::1]/repo:tag'],
    // Docker's own oddities: these are names, not hosts (no / after them).
    ['192.168.0.1', 'docker.io', 'library/192.168.0.1', 'latest', undefined, '192.168.0.1:latest', 'docker.io/library/192.168.0.1:latest'],
    ['192.168.0.1:80', 'docker.io', 'library/192.168.0.1', '80', undefined, '192.168.0.1:80', 'docker.io/library/192.168.0.1:80'],
    ['foo_bar.com:8080', 'docker.io', 'library/foo_bar.com', '8080', undefined, 'foo_bar.com:8080', 'docker.io/library/foo_bar.com:8080'],
    ['foo/foo_bar.com:8080', 'docker.io', 'foo/foo_bar.com', '8080', undefined, 'foo/foo_bar.com:8080', 'docker.io/foo/foo_bar.com:8080'],
    ['192.168.0.1:8/debian', '192.168.0.1:8', 'debian', 'latest', undefined, '192.168.0.1:8/debian:latest', '192.168.0.1:8/debian:latest'],
    ['a__b/c-----d/e.f_g', 'docker.io', 'a__b/c-----d/e.f_g', 'latest', undefined, 'a__b/c-----d/e.f_g:latest', 'docker.io/a__b/c-----d/e.f_g:latest'],
    [`alpine@${D}`, 'docker.io', 'library/alpine', undefined, D, `alpine@${D}`, `docker.io/library/alpine@${D}`],
    [`alpine:3@${D}`, 'docker.io', 'library/alpine', '3', D, `alpine:3@${D}`, `docker.io/library/alpine:3@${D}`],
    [`localhost:5000/x@${D2}`, 'localhost:5000', 'x', undefined, D2, `localhost:5000/x@${D2}`, `localhost:5000/x@${D2}`],
    [`test_com:tag@${D}`, 'docker.io', 'library/test_com', 'tag', D, `test_com:tag@${D}`, `docker.io/library/test_com:tag@${D}`],
    [`docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a`, 'docker.io', 'library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a', 'latest', undefined, '1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a:latest', 'docker.io/library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a:latest'],
    ['thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev', 'docker.io', 'library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev', 'latest', undefined, 'thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest', 'docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest'],
    [`x:${'a'.repeat(128)}`, 'docker.io', 'library/x', 'a'.repeat(128), undefined, `x:${'a'.repeat(128)}`, `docker.io/library/x:${'a'.repeat(128)}`],
    ['x:_under.Score-1', 'docker.io', 'library/x', '_under.Score-1', undefined, 'x:_under.Score-1', 'docker.io/library/x:_under.Score-1'],
  ];
  for (const [input, registry, repository, tag, digest, familiar, canonical] of cases) {
    it(input.length > 60 ? `${input.slice(0, 57)}...` : input, () => {
      const r = parseReference(input);
      expect({ registry: r.registry, repository: r.repository, tag: r.tag, digest: r.digest }).toEqual({ registry, repository, tag, digest });
      expect(r.familiar()).toBe(familiar);
      expect(r.canonical()).toBe(canonical);
      expect(String(r)).toBe(canonical);
      // Normalisation is idempotent: the canonical and familiar forms parse to the same thing.
      expect(parseReference(canonical).canonical()).toBe(canonical);
      expect(parseReference(familiar).canonical()).toBe(canonical);
    });
  }
});

describe('parseReference: invalid references (EREF_INVALID)', () => {
  const invalid = [
    '',
    'https://github.com/docker/docker',
    'docker/Docker',
    '-docker',
    '-docker/docker',
    '-docker.io/docker/docker',
    'docker///docker',
    'docker.io/docker/Docker',
    'docker.io/docker///docker',
    '1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a',
    'UPPERCASE',
    'Uppercase:tag',
    'aa/asdf$$^/aa',
    'a/a..b',
    'a/.a',
    'a/a-',
    'a/_a',
    'foo:',
    'foo:-tag',
    `foo:${'a'.repeat(129)}`,
    ':justtag',
    '@sha256:' + 'f'.repeat(64),
    'repo@sha256:' + 'f'.repeat(63),
    'repo@sha256:' + 'F'.repeat(64),
    'repo@md5:' + 'f'.repeat(32),
    'validname@invaliddigest:' + 'f'.repeat(64),
    'repo@sha256:xyz',
    '[2001:db8::1]',
    '[2001:db8::1]:5000',
    '[fe80::1%eth0]:5000/repo',
    'localhost:5000:5000/x',
    'a/' + 'b'.repeat(256),
    'foo bar',
    'foo/',
    '/foo',
  ];
  for (const s of invalid) {
    it(JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s), () => {
      expect(codeOf(() => parseReference(s))).toBe('EREF_INVALID');
    });
  }

  it('says why: lowercase, 64-hex, digest algorithm and length', () => {
    expect(() => parseReference('docker/Docker')).toThrow(/must be lowercase/);
    expect(() => parseReference('a'.repeat(64).replace(/a/g, 'b'))).toThrow(/64-byte hexadecimal/);
    expect(() => parseReference(`x@sha256:${'a'.repeat(63)}`)).toThrow(/length/);
    expect(() => parseReference(`x@crc32:${'a'.repeat(64)}`)).toThrow(/unsupported digest algorithm/);
    expect(() => parseReference(`x/${'y'.repeat(260)}`)).toThrow(/more than 255/);
    try {
      parseReference('Bad Ref');
    } catch (err) {
      expect((err as BurrowError).fix).toMatch(/NAME\[:TAG\]\[@DIGEST\]/);
    }
  });
});

describe('ImageRef helpers', () => {
  it('apiHost: docker.io is served by registry-1.docker.io', () => {
    expect(parseReference('alpine').apiHost).toBe('registry-1.docker.io');
    expect(registryApiHost('docker.io')).toBe('registry-1.docker.io');
    expect(parseReference('quay.io/a/b').apiHost).toBe('quay.io');
    expect(parseReference('localhost:5000/a').apiHost).toBe('localhost:5000');
  });

  it('reference: the digest wins over the tag, as in docker pull', () => {
    expect(parseReference('alpine').reference).toBe('latest');
    expect(parseReference(`alpine:3@${D}`).reference).toBe(D);
    expect(parseReference(`alpine@${D}`).reference).toBe(D);
  });

  it('withDigest, withTag, inRegistry, name', () => {
    const r = parseReference('alpine:3');
    expect(r.withDigest(D).canonical()).toBe(`docker.io/library/alpine:3@${D}`);
    expect(r.withTag('edge').canonical()).toBe('docker.io/library/alpine:edge');
    expect(r.inRegistry('mirror.local:5000').canonical()).toBe('mirror.local:5000/library/alpine:3');
    expect(r.name).toBe('docker.io/library/alpine');
    expect(r.familiarName()).toBe('alpine');
    expect(() => r.withTag('bad tag')).toThrow(BurrowError);
    expect(() => r.withDigest('sha256:nope')).toThrow(BurrowError);
  });

  it('parseRepository refuses tags and digests', () => {
    expect(parseRepository('localhost:5000/a/b').repository).toBe('a/b');
    expect(parseRepository('localhost:5000/a/b').tag).toBeUndefined();
    expect(parseRepository('busybox').repository).toBe('library/busybox');
    expect(codeOf(() => parseRepository('busybox:1'))).toBe('EREF_INVALID');
    expect(codeOf(() => parseRepository(`busybox@${D}`))).toBe('EREF_INVALID');
  });
});

describe('digests', () => {
  it('accepts sha256, sha384, sha512 with the right lengths in lowercase hex', () => {
    expect(parseDigest(D)).toEqual({ algorithm: 'sha256', hex: 'f'.repeat(64) });
    expect(isDigest(`sha384:${'a'.repeat(96)}`)).toBe(true);
    expect(isDigest(`sha512:${'0'.repeat(128)}`)).toBe(true);
    expect(isDigest(`sha512:${'0'.repeat(64)}`)).toBe(false);
    expect(isDigest(`sha256:${'A'.repeat(64)}`)).toBe(false);
    expect(isDigest('sha256:')).toBe(false);
    expect(isDigest(`${'f'.repeat(64)}`)).toBe(false);
    expect(isDigest(42)).toBe(false);
  });
});

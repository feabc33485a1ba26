import { describe, expect, it } from 'vitest';
import { BurrowError } from '../../ts/errors';
import { codeOf } from './thrown';
import {
  MEDIA_TYPES,
  checkLayersMatchConfig,
  formatPlatform,
  hostPlatform,
  isIndex,
  layerCompression,
  normalizePlatform,
  parseDescriptor,
  parseImageConfig,
  parseManifest,
  parsePlatform,
  selectPlatform,
  type ImageIndex,
  type Platform,
} from '../../ts/image/manifest';

const d = (c: string): string => `sha256:${c.repeat(64)}`;

// A Docker schema 2 manifest as `docker manifest inspect` prints it.
const dockerManifest = {
  schemaVersion: 2,
  mediaType: MEDIA_TYPES.dockerManifest,
  config: { mediaType: MEDIA_TYPES.dockerConfig, size: 1472, digest: d('a') },
  layers: [
    { mediaType: MEDIA_TYPES.dockerLayer, size: 3408729, digest: d('b') },
    { mediaType: MEDIA_TYPES.dockerForeignLayer, size: 1, digest: d('c'), urls: ['https://example.com/layer'] },
  ],
};

const ociManifest = {
  schemaVersion: 2,
  mediaType: MEDIA_TYPES.ociManifest,
  config: { mediaType: MEDIA_TYPES.ociConfig, size: 7023, digest: d('1') },
  layers: [
    { mediaType: MEDIA_TYPES.ociLayerGzip, size: 32654, digest: d('2') },
    { mediaType: MEDIA_TYPES.ociLayerZstd, size: 16724, digest: d('3'), annotations: { 'com.example.key': 'value' } },
  ],
  annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
};

function index(entries: { platform?: Platform; digest?: string; mediaType?: string }[], mediaType: string = MEDIA_TYPES.ociIndex): ImageIndex {
  const m = parseManifest(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: entries.map((e, i) => ({ mediaType: e.mediaType ?? MEDIA_TYPES.ociManifest, size: 100 + i, digest: e.digest ?? d(String(i % 10)), ...(e.platform ? { platform: e.platform } : {}) })),
    }),
  );
  if (!isIndex(m)) throw new Error('not an index');
  return m;
}

describe('parseManifest', () => {
  it('reads a Docker schema 2 manifest', () => {
    const m = parseManifest(JSON.stringify(dockerManifest), MEDIA_TYPES.dockerManifest);
    expect(m.kind).toBe('manifest');
    if (m.kind !== 'manifest') return;
    expect(m.mediaType).toBe(MEDIA_TYPES.dockerManifest);
    expect(m.config.digest).toBe(d('a'));
    expect(m.layers).toHaveLength(2);
    expect(m.layers[1]?.urls).toEqual(['https://example.com/layer']);
  });

  it('reads an OCI manifest, with or without its mediaType field', () => {
    const m = parseManifest(Buffer.from(JSON.stringify(ociManifest)));
    expect(m.mediaType).toBe(MEDIA_TYPES.ociManifest);
    expect(m.annotations).toEqual(ociManifest.annotations);
    const { mediaType: _, ...noType } = ociManifest;
    expect(parseManifest(JSON.stringify(noType)).mediaType).toBe(MEDIA_TYPES.ociManifest);
    expect(parseManifest(JSON.stringify(noType), `${MEDIA_TYPES.ociManifest}; charset=utf-8`).mediaType).toBe(MEDIA_TYPES.ociManifest);
  });

  it('reads a Docker manifest list and an OCI index', () => {
    const list = parseManifest(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.dockerManifestList,
        manifests: [
          { mediaType: MEDIA_TYPES.dockerManifest, size: 528, digest: d('4'), platform: { architecture: 'amd64', os: 'linux' } },
          { mediaType: MEDIA_TYPES.dockerManifest, size: 528, digest: d('5'), platform: { architecture: 'arm', os: 'linux', variant: 'v7' } },
          { mediaType: MEDIA_TYPES.dockerManifest, size: 528, digest: d('6'), platform: { architecture: 'amd64', os: 'windows', 'os.version': '10.0.17763.1040', 'os.features': ['win32k'] } },
        ],
      }),
    );
    expect(isIndex(list)).toBe(true);
    if (!isIndex(list)) return;
    expect(list.manifests).toHaveLength(3);
    expect(list.manifests[1]?.platform).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(list.manifests[2]?.platform?.['os.version']).toBe('10.0.17763.1040');
    const oci = parseManifest(JSON.stringify({ schemaVersion: 2, manifests: [] }));
    expect(oci.mediaType).toBe(MEDIA_TYPES.ociIndex);
  });

  it('refuses schema 1 with a clear message (EMANIFEST_UNSUPPORTED)', () => {
    const s1 = JSON.stringify({ schemaVersion: 1, name: 'x', tag: 'y', architecture: 'amd64', fsLayers: [], history: [], signatures: [] });
    for (const ct of [undefined, MEDIA_TYPES.dockerSchema1Signed, 'application/json']) {
      try {
        parseManifest(s1, ct);
        expect.unreachable();
      } catch (err) {
        expect((err as BurrowError).code).toBe('EMANIFEST_UNSUPPORTED');
        expect((err as BurrowError).message).toMatch(/schema 1/);
        expect((err as BurrowError).fix).toMatch(/skopeo copy --format v2s2/);
      }
    }
    expect(codeOf(() => parseManifest('{}', MEDIA_TYPES.dockerSchema1))).toBe('EMANIFEST_UNSUPPORTED');
  });

  it('refuses unknown media types as unsupported', () => {
    expect(codeOf(() => parseManifest(JSON.stringify({ ...ociManifest, mediaType: 'application/vnd.example+json' })))).toBe('EMANIFEST_UNSUPPORTED');
  });

  const malformed: [string, string | Buffer, string?][] = [
    ['not JSON', '{"schemaVersion": 2,'],
    ['not an object', '[1,2]'],
    ['null', 'null'],
    ['no schemaVersion', JSON.stringify({ mediaType: MEDIA_TYPES.ociManifest, config: ociManifest.config, layers: [] })],
    ['schemaVersion 3', JSON.stringify({ ...ociManifest, schemaVersion: 3 })],
    ['neither shape', JSON.stringify({ schemaVersion: 2 })],
    ['layers not a list', JSON.stringify({ ...ociManifest, layers: {} })],
    ['config missing', JSON.stringify({ ...ociManifest, config: undefined })],
    ['bad digest', JSON.stringify({ ...ociManifest, config: { ...ociManifest.config, digest: 'sha256:abc' } })],
    ['uppercase digest', JSON.stringify({ ...ociManifest, config: { ...ociManifest.config, digest: `sha256:${'A'.repeat(64)}` } })],
    ['negative size', JSON.stringify({ ...ociManifest, layers: [{ ...ociManifest.layers[0], size: -1 }] })],
    ['fractional size', JSON.stringify({ ...ociManifest, layers: [{ ...ociManifest.layers[0], size: 1.5 }] })],
    ['string size', JSON.stringify({ ...ociManifest, layers: [{ ...ociManifest.layers[0], size: '12' }] })],
    ['missing mediaType in descriptor', JSON.stringify({ ...ociManifest, layers: [{ digest: d('2'), size: 1 }] })],
    ['annotations not strings', JSON.stringify({ ...ociManifest, annotations: { a: 1 } })],
    ['urls not strings', JSON.stringify({ ...ociManifest, layers: [{ ...ociManifest.layers[0], urls: [1] }] })],
    ['index without manifests', JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex })],
    ['platform without os', JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MEDIA_TYPES.ociManifest, digest: d('1'), size: 1, platform: { architecture: 'amd64' } }] })],
    ['served as an index, says manifest', JSON.stringify(ociManifest), MEDIA_TYPES.ociIndex],
    ['served as OCI, says Docker', JSON.stringify(dockerManifest), MEDIA_TYPES.ociManifest],
    ['too large', Buffer.alloc(4 * 1024 * 1024 + 1, 0x20)],
  ];
  for (const [name, body, ct] of malformed) {
    it(`malformed: ${name} → EMANIFEST_INVALID`, () => {
      expect(codeOf(() => parseManifest(body, ct))).toBe('EMANIFEST_INVALID');
    });
  }
});

describe('parseDescriptor', () => {
  it('keeps known fields and drops empty variants', () => {
    expect(parseDescriptor({ mediaType: 'x', digest: d('a'), size: 0, platform: { os: 'linux', architecture: 'amd64', variant: '' }, artifactType: 't', extra: 1 })).toEqual({
      mediaType: 'x',
      digest: d('a'),
      size: 0,
      platform: { os: 'linux', architecture: 'amd64' },
      artifactType: 't',
    });
  });
});

describe('parseImageConfig', () => {
  const config = {
    architecture: 'arm64',
    variant: 'v8',
    os: 'linux',
    created: '2024-05-01T00:00:00Z',
    author: 'someone',
    config: {
      User: '1000:1000',
      Env: ['PATH=/usr/bin:/bin', 'A=b=c'],
      Entrypoint: ['/entry'],
      Cmd: ['serve', '--port', '80'],
      WorkingDir: '/srv',
      ExposedPorts: { '80/tcp': {}, '53/udp': {} },
      Volumes: { '/data': {} },
      Labels: { 'org.opencontainers.image.title': 't' },
      StopSignal: 'SIGQUIT',
      ArgsEscaped: true,
      Healthcheck: { Test: ['CMD', 'true'], Interval: 30000000000, Retries: 3 },
    },
    rootfs: { type: 'layers', diff_ids: [d('1'), d('2')] },
    history: [{ created: '2024-05-01T00:00:00Z', created_by: 'ADD file' }, { created_by: 'ENV x', empty_layer: true }, { created_by: 'RUN y' }],
    container_config: { ignored: true },
  };

  it('reads the fields burrow uses', () => {
    const c = parseImageConfig(JSON.stringify(config));
    expect(c.architecture).toBe('arm64');
    expect(c.variant).toBe('v8');
    expect(c.config.Env).toEqual(['PATH=/usr/bin:/bin', 'A=b=c']);
    expect(c.config.Entrypoint).toEqual(['/entry']);
    expect(c.config.Cmd).toEqual(['serve', '--port', '80']);
    expect(c.config.WorkingDir).toBe('/srv');
    expect(c.config.User).toBe('1000:1000');
    expect(Object.keys(c.config.ExposedPorts ?? {})).toEqual(['80/tcp', '53/udp']);
    expect(c.config.Labels).toEqual({ 'org.opencontainers.image.title': 't' });
    expect(c.config.StopSignal).toBe('SIGQUIT');
    expect(c.config.Healthcheck?.Test).toEqual(['CMD', 'true']);
    expect(c.rootfs.diff_ids).toEqual([d('1'), d('2')]);
    expect(c.history).toHaveLength(3);
    expect(c.history[1]?.empty_layer).toBe(true);
    expect(c).not.toHaveProperty('container_config');
  });

  it("accepts Docker's nulls (Cmd, Entrypoint, Labels, history) as absent", () => {
    const c = parseImageConfig(
      JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: null, Entrypoint: null, Labels: null, Env: null, WorkingDir: '' }, rootfs: { type: 'layers', diff_ids: [] }, history: null }),
    );
    expect(c.config).toEqual({});
    expect(c.history).toEqual([]);
    const bare = parseImageConfig(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    expect(bare.config).toEqual({});
  });

  const bad: [string, unknown][] = [
    ['no architecture', { os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }],
    ['no rootfs', { os: 'linux', architecture: 'amd64' }],
    ['rootfs type', { os: 'linux', architecture: 'amd64', rootfs: { type: 'zfs', diff_ids: [] } }],
    ['bad diff_id', { os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: ['nope'] } }],
    ['Cmd a string', { os: 'linux', architecture: 'amd64', config: { Cmd: 'sh' }, rootfs: { type: 'layers', diff_ids: [] } }],
    ['Env numbers', { os: 'linux', architecture: 'amd64', config: { Env: [1] }, rootfs: { type: 'layers', diff_ids: [] } }],
    ['Labels numbers', { os: 'linux', architecture: 'amd64', config: { Labels: { a: 1 } }, rootfs: { type: 'layers', diff_ids: [] } }],
    ['history not a list', { os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [] }, history: {} }],
    ['empty_layer a string', { os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [] }, history: [{ empty_layer: 'yes' }] }],
  ];
  for (const [name, v] of bad) {
    it(`invalid: ${name} → EMANIFEST_INVALID`, () => {
      expect(codeOf(() => parseImageConfig(JSON.stringify(v)))).toBe('EMANIFEST_INVALID');
    });
  }
  it('invalid: not JSON', () => expect(codeOf(() => parseImageConfig('{'))).toBe('EMANIFEST_INVALID'));

  it('checks that layers and diff_ids agree', () => {
    const m = parseManifest(JSON.stringify(ociManifest));
    if (m.kind !== 'manifest') throw new Error('x');
    const c = parseImageConfig(JSON.stringify(config));
    expect(() => checkLayersMatchConfig(m, c)).not.toThrow();
    const one = parseImageConfig(JSON.stringify({ ...config, rootfs: { type: 'layers', diff_ids: [d('1')] } }));
    expect(codeOf(() => checkLayersMatchConfig(m, one))).toBe('EMANIFEST_INVALID');
  });
});

describe('layerCompression', () => {
  it('knows gzip, zstd, uncompressed and refuses others', () => {
    expect(layerCompression(MEDIA_TYPES.dockerLayer)).toBe('gzip');
    expect(layerCompression(MEDIA_TYPES.ociLayerGzip)).toBe('gzip');
    expect(layerCompression(MEDIA_TYPES.ociLayerZstd)).toBe('zstd');
    expect(layerCompression(MEDIA_TYPES.ociLayer)).toBe('none');
    expect(layerCompression(MEDIA_TYPES.ociLayerNondistributableGzip)).toBe('gzip');
    expect(layerCompression('application/vnd.in-toto+json')).toBeUndefined();
  });
});

describe('platforms', () => {
  it('maps process.arch to GOARCH names', () => {
    const h = hostPlatform();
    expect(h.os).toBe('linux');
    const want: Record<string, Platform> = { x64: { os: 'linux', architecture: 'amd64' }, arm64: { os: 'linux', architecture: 'arm64', variant: 'v8' } };
    if (want[process.arch]) expect(h).toEqual(want[process.arch]);
  });

  it('normalises common spellings', () => {
    expect(normalizePlatform({ os: 'Linux', architecture: 'x86_64' })).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(normalizePlatform({ os: 'linux', architecture: 'aarch64' })).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(normalizePlatform({ os: 'linux', architecture: 'arm64', variant: '8' })).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(normalizePlatform({ os: 'linux', architecture: 'armhf' })).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(normalizePlatform({ os: 'linux', architecture: 'arm' })).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(normalizePlatform({ os: 'linux', architecture: 'i386' })).toEqual({ os: 'linux', architecture: '386' });
    expect(normalizePlatform({ os: 'linux', architecture: 'amd64', variant: 'v1' })).toEqual({ os: 'linux', architecture: 'amd64' });
  });

  it('parses and formats --platform strings', () => {
    expect(parsePlatform('linux/arm64')).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(parsePlatform('linux/arm/v6')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v6' });
    expect(formatPlatform({ os: 'linux', architecture: 'arm64', variant: 'v8' })).toBe('linux/arm64/v8');
    expect(codeOf(() => parsePlatform('linux'))).toBe('EUSAGE');
    expect(codeOf(() => parsePlatform('linux//x'))).toBe('EUSAGE');
  });

  const typical = index([
    { platform: { os: 'linux', architecture: 'amd64' }, digest: d('1') },
    { platform: { os: 'linux', architecture: 'arm', variant: 'v6' }, digest: d('2') },
    { platform: { os: 'linux', architecture: 'arm', variant: 'v7' }, digest: d('3') },
    { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, digest: d('4') },
    { platform: { os: 'linux', architecture: '386' }, digest: d('5') },
    { platform: { os: 'linux', architecture: 'ppc64le' }, digest: d('6') },
    { platform: { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1040' }, digest: d('7') },
    { platform: { os: 'unknown', architecture: 'unknown' }, digest: d('8') },
  ]);

  it('selects the exact platform', () => {
    expect(selectPlatform(typical, { os: 'linux', architecture: 'amd64' }).digest).toBe(d('1'));
    expect(selectPlatform(typical, { os: 'linux', architecture: 'arm64' }).digest).toBe(d('4'));
    expect(selectPlatform(typical, { os: 'linux', architecture: 'arm64', variant: 'v8' }).digest).toBe(d('4'));
    expect(selectPlatform(typical, { os: 'linux', architecture: 'arm', variant: 'v7' }).digest).toBe(d('3'));
    expect(selectPlatform(typical, { os: 'linux', architecture: 'arm', variant: 'v6' }).digest).toBe(d('2'));
    expect(selectPlatform(typical, { os: 'windows', architecture: 'amd64' }).digest).toBe(d('7'));
    expect(selectPlatform(typical, { os: 'linux', architecture: 'x86_64' }).digest).toBe(d('1'));
  });

  it('defaults to this host', () => {
    const h = hostPlatform();
    if (h.architecture === 'amd64') expect(selectPlatform(typical).digest).toBe(d('1'));
    if (h.architecture === 'arm64') expect(selectPlatform(typical).digest).toBe(d('4'));
  });

  it('falls back to an older compatible variant, closest first', () => {
    const onlyV5V6 = index([
      { platform: { os: 'linux', architecture: 'arm', variant: 'v5' }, digest: d('a') },
      { platform: { os: 'linux', architecture: 'arm', variant: 'v6' }, digest: d('b') },
    ]);
    expect(selectPlatform(onlyV5V6, { os: 'linux', architecture: 'arm', variant: 'v7' }).digest).toBe(d('b'));
    expect(codeOf(() => selectPlatform(index([{ platform: { os: 'linux', architecture: 'arm', variant: 'v7' } }]), { os: 'linux', architecture: 'arm', variant: 'v6' }))).toBe(
      'EPLATFORM_NOT_FOUND',
    );
    // arm64 without a variant is v8.
    expect(selectPlatform(index([{ platform: { os: 'linux', architecture: 'arm64' }, digest: d('c') }]), { os: 'linux', architecture: 'arm64', variant: 'v8' }).digest).toBe(d('c'));
    // amd64 microarchitecture levels: a v3 host runs a v2 image; no variant is the baseline.
    const levels = index([
      { platform: { os: 'linux', architecture: 'amd64', variant: 'v3' }, digest: d('d') },
      { platform: { os: 'linux', architecture: 'amd64', variant: 'v2' }, digest: d('e') },
    ]);
    expect(selectPlatform(levels, { os: 'linux', architecture: 'amd64', variant: 'v2' }).digest).toBe(d('e'));
    expect(selectPlatform(levels, { os: 'linux', architecture: 'amd64', variant: 'v3' }).digest).toBe(d('d'));
  });

  it('prefers the first of equal matches and never picks attestations or nested indexes', () => {
    const twice = index([
      { platform: { os: 'linux', architecture: 'amd64' }, digest: d('1') },
      { platform: { os: 'linux', architecture: 'amd64' }, digest: d('2') },
    ]);
    expect(selectPlatform(twice, { os: 'linux', architecture: 'amd64' }).digest).toBe(d('1'));
    const nested = index([{ platform: { os: 'linux', architecture: 'amd64' }, mediaType: MEDIA_TYPES.ociIndex }]);
    expect(codeOf(() => selectPlatform(nested, { os: 'linux', architecture: 'amd64' }))).toBe('EPLATFORM_NOT_FOUND');
    expect(codeOf(() => selectPlatform(typical, { os: 'unknown', architecture: 'unknown' }))).toBe('EPLATFORM_NOT_FOUND');
  });

  it("says which platforms exist when none matches (Docker's wording)", () => {
    try {
      selectPlatform(typical, { os: 'linux', architecture: 's390x' });
      expect.unreachable();
    } catch (err) {
      const e = err as BurrowError;
      expect(e.code).toBe('EPLATFORM_NOT_FOUND');
      expect(e.message).toMatch(/no matching manifest for linux\/s390x in the manifest list entries/);
      expect(e.message).toMatch(/linux\/arm64\/v8/);
      expect(e.message).not.toMatch(/unknown/);
      expect(e.fix).toMatch(/--platform linux\/amd64/);
    }
  });
});

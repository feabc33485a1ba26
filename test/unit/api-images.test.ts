/**
 * The translation of the engine's pull and push events into Docker's JSON progress stream
 * (ts/api/progress-json.ts), and the request helpers of the image routes: X-Registry-Auth and
 * fromImage + tag.
 */
import { describe, expect, it } from 'vitest';
import { DockerProgress, errorMessage, humanSizeGo, progressBar } from '../../ts/api/progress-json';
import { pullReference, registryAuth } from '../../ts/api/routes/images';
import type { TransferEvent } from '../../ts/image/progress';

const L1 = `sha256:${'a1'.repeat(32)}`;
const L2 = `sha256:${'b2'.repeat(32)}`;

describe("Docker's JSON progress stream", () => {
  it("sizes and the bar as dockerd's jsonmessage writes them", () => {
    expect(humanSizeGo(528)).toBe('528B');
    expect(humanSizeGo(772_800)).toBe('772.8kB');
    expect(humanSizeGo(1_234_567)).toBe('1.235MB');
    expect(humanSizeGo(2_000_000)).toBe('2MB');
    // Go's "%8v/%v": the current size right-aligned in 8 columns.
    expect(progressBar(0, 1000)).toBe(`[>${' '.repeat(50)}]       0B/1kB`);
    expect(progressBar(500_000, 1_000_000)).toBe(`[${'='.repeat(25)}>${' '.repeat(25)}]    500kB/1MB`);
    expect(progressBar(1_000_000, 1_000_000)).toBe(`[${'='.repeat(50)}>]      1MB/1MB`);
    expect(progressBar(1234, 0)).toBe(' 1.234kB');
  });

  it('turns a pull into the lines dockerd sends, in its order', () => {
    const p = new DockerProgress('127.0.0.1:5000/team/app:1');
    const events: TransferEvent[] = [
      { type: 'start', op: 'pull', ref: '127.0.0.1:5000/team/app:1' },
      { type: 'resolved', repository: 'team/app', tag: '1', layers: [{ digest: L1, size: 2000 }, { digest: L2, size: 10 }] },
      { type: 'layer', digest: L2, status: 'Already exists' },
      { type: 'layer', digest: L1, status: 'Waiting' },
      { type: 'layer', digest: L1, status: 'Downloading', current: 0, total: 2000 },
      { type: 'layer', digest: L1, status: 'Downloading', current: 10, total: 2000 },
      { type: 'layer', digest: L1, status: 'Downloading', current: 2000, total: 2000 },
      { type: 'layer', digest: L1, status: 'Download complete' },
      { type: 'layer', digest: L1, status: 'Extracting', current: 2000, total: 2000 },
      { type: 'layer', digest: L1, status: 'Pull complete' },
      { type: 'digest', digest: `sha256:${'cc'.repeat(32)}` },
    ];
    const out = events.flatMap((e) => p.translate(e));
    const id = 'a1'.repeat(6);
    expect(out).toEqual([
      { status: 'Pulling from team/app', id: '1' },
      { status: 'Already exists', progressDetail: {}, id: 'b2'.repeat(6) },
      { status: 'Pulling fs layer', progressDetail: {}, id },
      { status: 'Waiting', progressDetail: {}, id },
      { status: 'Downloading', progressDetail: { current: 0, total: 2000 }, progress: progressBar(0, 2000), id },
      // 10 of 2000 bytes is less than a percent: thinned out.
      { status: 'Downloading', progressDetail: { current: 2000, total: 2000 }, progress: progressBar(2000, 2000), id },
      { status: 'Verifying Checksum', progressDetail: {}, id },
      { status: 'Download complete', progressDetail: {}, id },
      { status: 'Extracting', progressDetail: { current: 2000, total: 2000 }, progress: progressBar(2000, 2000), id },
      { status: 'Pull complete', progressDetail: {}, id },
      { status: `Digest: sha256:${'cc'.repeat(32)}` },
    ]);
    expect(p.final(false)).toEqual({ status: 'Status: Downloaded newer image for 127.0.0.1:5000/team/app:1' });
    expect(p.final(true)).toEqual({ status: 'Status: Image is up to date for 127.0.0.1:5000/team/app:1' });
    expect(JSON.stringify(errorMessage('boom'))).toBe('{"errorDetail":{"message":"boom"},"error":"boom"}');
  });

  it('turns a push into the lines dockerd sends, with the aux record last', () => {
    const p = new DockerProgress('x');
    const out = (
      [
        { type: 'start', op: 'push', ref: '127.0.0.1:5000/team/app:1' },
        { type: 'layer', digest: L1, status: 'Preparing' },
        { type: 'layer', digest: L2, status: 'Preparing' },
        { type: 'layer', digest: L1, status: 'Layer already exists' },
        { type: 'layer', digest: L2, status: 'Mounted', from: 'team/base' },
        { type: 'pushed', tag: '1', digest: `sha256:${'dd'.repeat(32)}`, size: 528 },
      ] as TransferEvent[]
    ).flatMap((e) => p.translate(e));
    expect(out).toEqual([
      { status: 'The push refers to repository [127.0.0.1:5000/team/app]' },
      { status: 'Preparing', progressDetail: {}, id: 'a1'.repeat(6) },
      { status: 'Preparing', progressDetail: {}, id: 'b2'.repeat(6) },
      { status: 'Layer already exists', progressDetail: {}, id: 'a1'.repeat(6) },
      { status: 'Mounted from team/base', progressDetail: {}, id: 'b2'.repeat(6) },
      { status: `1: digest: sha256:${'dd'.repeat(32)} size: 528` },
      { progressDetail: {}, aux: { Tag: '1', Digest: `sha256:${'dd'.repeat(32)}`, Size: 528 } },
    ]);
  });
});

describe('image route helpers', () => {
  it('reads X-Registry-Auth as the docker CLI and the SDKs send it', () => {
    const b64 = (o: object, url = true) => Buffer.from(JSON.stringify(o)).toString(url ? 'base64url' : 'base64');
    expect(registryAuth(undefined)).toBeUndefined();
    expect(registryAuth(b64({}))).toBeUndefined();
    expect(registryAuth(b64({ username: 'u', password: 'p?>>', serveraddress: 'h:5000' }))).toEqual({ username: 'u', password: 'p?>>', serverAddress: 'h:5000' });
    expect(registryAuth(b64({ username: 'u', password: 'p?>>' }, false))).toEqual({ username: 'u', password: 'p?>>' });
    expect(registryAuth(b64({ auth: Buffer.from('u:p:q').toString('base64') }))).toEqual({ username: 'u', password: 'p:q' });
    expect(registryAuth(b64({ identitytoken: 'tok' }))).toEqual({ identityToken: 'tok' });
    expect(() => registryAuth('not json')).toThrow(/X-Registry-Auth/);
  });

  it('joins fromImage and tag into one reference', () => {
    expect(pullReference('busybox', 'latest')).toBe('busybox:latest');
    expect(pullReference('127.0.0.1:5000/team/app', '1')).toBe('127.0.0.1:5000/team/app:1');
    expect(pullReference('127.0.0.1:5000/team/app', null)).toBe('127.0.0.1:5000/team/app');
    expect(pullReference('team/app', `sha256:${'e'.repeat(64)}`)).toBe(`team/app@sha256:${'e'.repeat(64)}`);
    expect(pullReference('team/app:2', 'latest')).toBe('team/app:2');
  });
});

describe('--change (import, commit)', () => {
  it('parses CMD, ENV, WORKDIR, EXPOSE and LABEL, and refuses the rest', async () => {
    const { parseChanges } = await import('../../ts/engine/images');
    expect(parseChanges(['CMD ["/bin/echo", "hi"]', 'ENV A=b', 'WORKDIR /w', 'EXPOSE 80 53/udp', 'LABEL a=1 b="two words" c= "d.e"=f', 'LABEL old style'])).toEqual({
      cmd: ['/bin/echo', 'hi'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=b'],
      workingDir: '/w',
      exposedPorts: ['80', '53/udp'],
      labels: { a: '1', b: 'two words', c: '', 'd.e': 'f', old: 'style' },
    });
    expect(parseChanges(['CMD echo hi']).cmd).toEqual(['/bin/sh', '-c', 'echo hi']);
    // ENV as a Dockerfile's: several pairs, quotes, the old `K V W` form, a name set again.
    expect(parseChanges(['ENV A=1 B="two words"', 'ENV C 3 4', 'ENV A=again']).env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=again', 'B=two words', 'C=3 4']);
    expect(() => parseChanges(['ENV A=1 junk'])).toThrow(/ENV KEY=VALUE/);
    expect(() => parseChanges(['USER nobody'])).toThrow(/not supported/);
    expect(() => parseChanges(['CMD ["unterminated'])).toThrow(/JSON list/);
    expect(() => parseChanges(['EXPOSE eighty'])).toThrow(/EXPOSE/);
  });
});

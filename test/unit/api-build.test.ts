/**
 * `POST /build`'s query as the engine's BuildRequest, and the build events as the classic
 * builder's `stream` lines (ts/api/routes/build.ts).
 */
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../ts/api/http';
import { buildRequestOf, jsonMapParam, streamText } from '../../ts/api/routes/build';

const q = (s: string) => new URLSearchParams(s);

describe('POST /build query', () => {
  it('takes what the docker CLI and docker-py send', () => {
    const r = buildRequestOf(q('t=a:1&t=b&dockerfile=sub%2FDockerfile.dev&buildargs=%7B%22V%22%3A%222%22%2C%22N%22%3Anull%7D&labels=%7B%22x%22%3A%22y%22%7D&nocache=1&pull=True&target=final&networkmode=bridge'));
    expect(r.tags).toEqual(['a:1', 'b']);
    expect(r.dockerfile).toEqual({ path: 'sub/Dockerfile.dev' });
    // docker-py's null (an argument without a value) is left unset, as Docker leaves it.
    expect(r.buildArgs).toEqual({ V: '2' });
    expect(r.labels).toEqual({ x: 'y' });
    expect(r.noCache).toBe(true);
    expect(r.pull).toBe('always');
    expect(r.target).toBe('final');
    expect(r.network).toBe('default');
    expect(r.outputs).toEqual([{ type: 'image' }]);
  });

  it('defaults: no tags, cache on, pull only what is missing', () => {
    const r = buildRequestOf(q(''));
    expect(r).toMatchObject({ tags: [], buildArgs: {}, labels: {}, noCache: false, pull: 'missing', network: 'default' });
    expect(r.dockerfile).toBeUndefined();
    expect(buildRequestOf(q('pull=0')).pull).toBe('missing');
    expect(buildRequestOf(q('networkmode=none')).network).toBe('none');
  });

  it('refuses what it cannot do with a 400 naming the parameter', () => {
    expect(() => jsonMapParam(q('buildargs=[1]'), 'buildargs')).toThrow(/buildargs: want a JSON object/);
    expect(() => jsonMapParam(q('labels={"a":1}'), 'labels')).toThrow(/labels: the value of a must be a string/);
    expect(() => buildRequestOf(q('networkmode=mynet'))).toThrow(/networkmode mynet/);
    expect(() => buildRequestOf(q('remote=https://example.invalid/x.tar'))).toThrow(ApiError);
  });
});

describe('build events as stream lines', () => {
  it("writes the classic builder's step lines and the RUN output as it is", () => {
    expect(streamText({ type: 'step', stage: '0', index: 2, total: 5, instruction: 'RUN make' })).toBe('Step 2/5 : RUN make\n');
    expect(streamText({ type: 'cached', stage: '0', index: 2 })).toBe(' ---> Using cache\n');
    expect(streamText({ type: 'output', stage: '0', index: 2, stream: 'stdout', data: Buffer.from('hi\n') })).toBe('hi\n');
    expect(streamText({ type: 'done', stage: '0', index: 2, seconds: 1 })).toBeUndefined();
  });
});

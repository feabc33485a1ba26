import { describe, expect, it } from 'vitest';
import { parseChallenge } from '../../ts/image/registry';

describe('parseChallenge (WWW-Authenticate)', () => {
  it("reads Docker Hub's Bearer challenge", () => {
    expect(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"')).toEqual({
      scheme: 'bearer',
      realm: 'https://auth.docker.io/token',
      service: 'registry.docker.io',
      scope: ['repository:library/alpine:pull'],
    });
  });

  it('splits several scopes and keeps error parameters out', () => {
    expect(parseChallenge('Bearer realm="http://127.0.0.1:1/token",service="s",scope="repository:a:pull,push repository:b:pull",error="insufficient_scope"')).toEqual({
      scheme: 'bearer',
      realm: 'http://127.0.0.1:1/token',
      service: 's',
      scope: ['repository:a:pull,push', 'repository:b:pull'],
    });
  });

  it('accepts any case, spaces, unquoted values and escapes', () => {
    expect(parseChallenge('bearer  Realm = "https://x/t\\"q" , Service=reg')).toEqual({ scheme: 'bearer', realm: 'https://x/t"q', service: 'reg', scope: [] });
  });

  it('reads Basic, and prefers Bearer when both are offered', () => {
    expect(parseChallenge('Basic realm="Registry Realm"')).toEqual({ scheme: 'basic', realm: 'Registry Realm' });
    expect(parseChallenge('Basic')).toEqual({ scheme: 'basic' });
    expect(parseChallenge('Basic realm="r", Bearer realm="https://t/token",service="s"')).toMatchObject({ scheme: 'bearer', realm: 'https://t/token' });
  });

  it('ignores what it cannot use', () => {
    expect(parseChallenge(undefined)).toBeUndefined();
    expect(parseChallenge('')).toBeUndefined();
    expect(parseChallenge('Negotiate abc==')).toBeUndefined();
    expect(parseChallenge('Bearer service="no realm"')).toBeUndefined();
  });
});

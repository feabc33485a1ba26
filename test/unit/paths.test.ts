import { describe, expect, it } from 'vitest';
import { runtimeText } from '../../ts/errors';
import { defaultRunRoot, defaultStoreRoot, outerUid } from '../../ts/host/paths';
import { native } from '../../ts/native';

describe('default paths', () => {
  it('TypeScript and the Rust core agree', () => {
    const n = native().defaultPaths();
    expect(defaultStoreRoot()).toBe(n.storeRoot);
    expect(defaultRunRoot()).toBe(n.runtimeRoot);
  });

  it("the fallback run root's uid is the one outside the user namespace (burrow-core's outer_uid)", () => {
    const podman = '         0       1000          1\n         1     100000      65536\n';
    expect(outerUid(0, podman)).toBe(1000);
    expect(outerUid(65536, podman)).toBe(165535);
    expect(outerUid(70000, podman)).toBe(70000);
    expect(outerUid(1000, '         0          0 4294967295\n')).toBe(1000);
    expect(outerUid(5, '')).toBe(5);
  });
});

describe('runtimeText', () => {
  it('takes the message out of the runtime\'s logrus error lines and its own prefixed lines', () => {
    expect(runtimeText('time="2026-12-06T17:34:35.1Z" level=error msg="container not running: x is stopped"\n')).toBe('container not running: x is stopped');
    expect(runtimeText('time="t" level=error msg="a \\"b\\" c\\\\d"\n')).toBe('a "b" c\\d');
    expect(runtimeText('burrow-runtime: warning: w\ntime="t" level=error msg="e"\n')).toBe('warning: w\ne');
    expect(runtimeText('plain text\n')).toBe('plain text');
  });
});

import { describe, expect, it } from 'vitest';
import { defaultRunRoot, defaultStoreRoot } from '../../ts/host/paths';
import { native } from '../../ts/native';

describe('default paths', () => {
  it('TypeScript and the Rust core agree', () => {
    const n = native().defaultPaths();
    expect(defaultStoreRoot()).toBe(n.storeRoot);
    expect(defaultRunRoot()).toBe(n.runtimeRoot);
  });
});

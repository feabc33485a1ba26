import { describe, expect, it } from 'vitest';
import { renderInfo } from '../../ts/cli/format/info';
import { sampleReport } from './fixtures';

describe('renderInfo', () => {
  it('groups findings by section, prints fixes and a summary', () => {
    const text = renderInfo(sampleReport(), false);
    expect(text).toMatch(/^Host probe for alice \(uid 1000\), rootless$/m);
    expect(text).toMatch(/^Kernel\n {2}\[ ok \] Kernel/m);
    expect(text).toMatch(/^User namespaces$/m);
    expect(text).toMatch(/\[WARN\] Enforceable limits\s+enforced: none\n\s+fix: delegate/);
    expect(text).toMatch(/Containers can run here \(id-map single, storage overlay, network none, limits none enforceable\)\./);
    expect(text).not.toMatch(/\x1b\[/);
  });

  it('says when containers cannot run, and colours only when asked', () => {
    const r = { ...sampleReport(), canRunContainers: false };
    expect(renderInfo(r, false)).toMatch(/Containers cannot run here/);
    expect(renderInfo(r, true)).toMatch(/\x1b\[32m ok \x1b\[0m/);
  });
});

import { describe, expect, it } from 'vitest';
import { parseHostReport } from '../../ts/host/report';
import { BurrowError } from '../../ts/errors';
import { sampleReport } from './fixtures';

describe('parseHostReport', () => {
  it('accepts the documented shape', () => {
    const r = sampleReport();
    expect(parseHostReport(JSON.stringify(r))).toEqual(r);
  });

  it.each([
    ['not JSON', '{', /invalid JSON/],
    ['an array', '[]', /not an object/],
    ['another schema version', JSON.stringify({ ...sampleReport(), schemaVersion: 2 }), /schemaVersion 2/],
    ['a missing section', JSON.stringify({ ...sampleReport(), cgroups: undefined }), /missing section cgroups/],
    ['a bad verdict', JSON.stringify({ ...sampleReport(), checks: [{ id: 'x', title: 'x', verdict: 'great', evidence: '' }] }), /malformed checks/],
  ])('rejects %s with EPROBE_INVALID', (_name, json, why) => {
    let err: unknown;
    try {
      parseHostReport(json);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BurrowError);
    expect((err as BurrowError).code).toBe('EPROBE_INVALID');
    expect((err as BurrowError).message).toMatch(why);
  });
});

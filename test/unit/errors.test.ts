import { describe, expect, it } from 'vitest';
import { BurrowError, exitCodeFor, toBurrowError } from '../../ts/errors';

describe('errors', () => {
  it('maps codes to Docker exit statuses', () => {
    expect(exitCodeFor('EUSAGE')).toBe(125);
    expect(exitCodeFor('ECMD_CANNOT_INVOKE')).toBe(126);
    expect(exitCodeFor('ECMD_NOT_FOUND')).toBe(127);
    expect(new BurrowError('ENATIVE_MISSING', 'x').exitCode).toBe(125);
  });

  it('wraps foreign errors as EINTERNAL and keeps the cause', () => {
    const cause = new TypeError('boom');
    const e = toBurrowError(cause);
    expect(e.code).toBe('EINTERNAL');
    expect(e.message).toBe('boom');
    expect(e.cause).toBe(cause);
    const b = new BurrowError('EUSAGE', 'y', 'do z');
    expect(toBurrowError(b)).toBe(b);
    expect(b.fix).toBe('do z');
  });
});

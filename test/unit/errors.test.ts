import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BurrowError, ERROR_CODES, exitCodeFor, httpStatusFor, isErrorCode, toBurrowError } from '../../ts/errors';
import { native } from '../../ts/native';

const ROOT = path.join(__dirname, '..', '..');

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

describe('the error-code table (crates/burrow-core/errors.json)', () => {
  it('ts/errors-codes.ts is what scripts/gen-error-codes.mjs makes of it (not stale)', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'gen-error-codes.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('says what the Rust side says (burrow_core::codes through the napi addon)', () => {
    const rust = JSON.parse(native().errorCodes()) as Record<string, { exit: number; http: number }>;
    expect(rust).toEqual(Object.fromEntries(Object.entries(ERROR_CODES).map(([k, v]) => [k, { exit: v.exit, http: v.http }])));
  });

  it('keeps every code that existed before the table, with the statuses the hand-written switches gave', () => {
    const http: Record<string, number> = { EUSAGE: 400, EREF_INVALID: 400, ECONFIG: 400, EIMAGE_NOT_FOUND: 404, ECONTAINER_NOT_FOUND: 404, EREGISTRY_NOT_FOUND: 404, EPLATFORM_NOT_FOUND: 404, EIMAGE_IN_USE: 409, ECONTAINER_EXISTS: 409, ECONTAINER_STATE: 409, EREGISTRY_AUTH: 401 };
    const before = ['EUSAGE', 'ENATIVE_MISSING', 'ERUNTIME_MISSING', 'EPROBE_INVALID', 'EINTERNAL', 'EIMAGE_NOT_FOUND', 'EIMAGE_IN_USE', 'ELAYER_UNPACK', 'ELAYER_UNSAFE', 'ELAYER_CORRUPT', 'ESTORE_MISMATCH', 'ESTORAGE_DRIVER', 'ESTORE_NETWORK', 'EUSER_UNMAPPED', 'ECONTAINER_NOT_FOUND', 'ECONTAINER_EXISTS', 'ECONTAINER_STATE', 'ERUNTIME', 'ELIMIT_UNENFORCEABLE', 'EREF_INVALID', 'EMANIFEST_INVALID', 'EMANIFEST_UNSUPPORTED', 'EPLATFORM_NOT_FOUND', 'EDIGEST_MISMATCH', 'ESIZE_MISMATCH', 'EAUTH_FILE', 'ECREDENTIAL_HELPER', 'EREGISTRY_AUTH', 'EREGISTRY_NOT_FOUND', 'EREGISTRY_UNREACHABLE', 'EREGISTRY_TLS', 'EREGISTRY', 'ECANCELED', 'ECONFIG'];
    for (const c of before) {
      expect(isErrorCode(c)).toBe(true);
      if (!isErrorCode(c)) continue;
      expect(exitCodeFor(c)).toBe(125);
      // EUSER_UNMAPPED was 500 by default: a user that is not in the id map is bad input (400)
      expect(httpStatusFor(c)).toBe(http[c] ?? (c === 'EUSER_UNMAPPED' ? 400 : 500));
    }
    expect(exitCodeFor('ECMD_NOT_FOUND')).toBe(127);
    expect(exitCodeFor('ECMD_CANNOT_INVOKE')).toBe(126);
    expect(isErrorCode('toString')).toBe(false);
    expect(isErrorCode(3)).toBe(false);
  });

  it('a coded error from the napi addon becomes a BurrowError with that code', () => {
    let thrown: unknown;
    try {
      native().checkErrorCode('ECGROUP_CREATE', 'cannot create the cgroup');
    } catch (e) {
      thrown = e;
    }
    expect((thrown as { code?: string }).code).toBe('ECGROUP_CREATE');
    const b = toBurrowError(thrown);
    expect(b.code).toBe('ECGROUP_CREATE');
    expect(b.message).toBe('cannot create the cgroup');
    expect(() => native().checkErrorCode('ENOT_A_CODE', 'x')).not.toThrow();
    // anything else thrown stays EINTERNAL
    expect(toBurrowError(Object.assign(new Error('x'), { code: 'ENOENT' })).code).toBe('EINTERNAL');
  });
});

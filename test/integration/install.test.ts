/**
 * `scripts/install.sh` (the README's way onto PATH) as the user running the tests: a symlink in
 * PREFIX/bin through which `burrow` runs from any directory, and `--uninstall` removes it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import pkg from '../../package.json';
import { ROOT, sh } from './helpers';

const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-install-'));
afterAll(() => fs.rmSync(prefix, { recursive: true, force: true }));

describe('scripts/install.sh', () => {
  it('puts burrow on PATH through a symlink, and takes it off again', () => {
    const env = { PREFIX: prefix, PATH: `${path.join(prefix, 'bin')}:${process.env.PATH}` };
    const r = sh('bash', [path.join(ROOT, 'scripts', 'install.sh')], { env });
    expect(r.code, r.stderr).toBe(0);
    const link = path.join(prefix, 'bin', 'burrow');
    // The native launcher when it is built (it hands what it does not serve to bin/burrow.js).
    const launcher = path.join(ROOT, 'target', 'release', 'burrow');
    expect(fs.readlinkSync(link)).toBe(fs.existsSync(launcher) ? launcher : path.join(ROOT, 'bin', 'burrow.js'));
    // From another directory, by name only, as a user would type it.
    const v = sh('sh', ['-c', 'cd / && burrow --version'], { env });
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toBe(`burrow version ${pkg.version}\n`);
    // Installing twice is fine; a file that is not our link is never replaced.
    expect(sh('bash', [path.join(ROOT, 'scripts', 'install.sh')], { env }).code).toBe(0);
    const u = sh('bash', [path.join(ROOT, 'scripts', 'install.sh'), '--uninstall'], { env });
    expect(u.code, u.stderr).toBe(0);
    expect(fs.existsSync(link)).toBe(false);
    fs.writeFileSync(link, 'mine\n');
    const refused = sh('bash', [path.join(ROOT, 'scripts', 'install.sh')], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('is not a symlink');
    expect(fs.readFileSync(link, 'utf8')).toBe('mine\n');
  });

  it('--docker-shim adds a docker that runs burrow, and --uninstall takes it away too', () => {
    const env = { PREFIX: prefix, PATH: `${path.join(prefix, 'bin')}:${process.env.PATH}` };
    fs.rmSync(path.join(prefix, 'bin', 'burrow'), { force: true }); // the test above leaves a file of its own there
    const r = sh('bash', [path.join(ROOT, 'scripts', 'install.sh'), '--docker-shim'], { env });
    expect(r.code, r.stderr).toBe(0);
    const shim = path.join(prefix, 'bin', 'docker');
    expect(fs.readlinkSync(shim)).toBe(path.join(ROOT, 'contrib', 'docker'));
    const v = sh('sh', ['-c', 'cd / && docker --version'], { env });
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toBe(`burrow version ${pkg.version}\n`);
    const u = sh('bash', [path.join(ROOT, 'scripts', 'install.sh'), '--uninstall'], { env });
    expect(u.code, u.stderr).toBe(0);
    expect(fs.existsSync(shim)).toBe(false);
    // A docker that is not the shim is never replaced.
    fs.writeFileSync(shim, 'real docker\n');
    const refused = sh('bash', [path.join(ROOT, 'scripts', 'install.sh'), '--docker-shim'], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("is not burrow's docker shim");
    expect(fs.readFileSync(shim, 'utf8')).toBe('real docker\n');
    fs.rmSync(shim);
    sh('bash', [path.join(ROOT, 'scripts', 'install.sh'), '--uninstall'], { env });
  });
});

/**
 * removeTree (ts/storage/fsutil.ts), which removes a --rm container's directory: everything
 * under it, symbolic links as links (never what they point to), a missing path is no error, a
 * file is removed as a file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { removeTree } from '../../ts/storage/fsutil';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-unit-rmtree-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('removeTree', () => {
  it('removes a tree of files, directories, empty directories and links; the links’ targets stay', () => {
    const outside = path.join(dir, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'keep'), 'k');
    const t = path.join(dir, 'tree');
    fs.mkdirSync(path.join(t, 'a', 'b', 'c'), { recursive: true });
    fs.mkdirSync(path.join(t, 'empty'));
    fs.writeFileSync(path.join(t, 'f'), 'x');
    fs.writeFileSync(path.join(t, 'a', 'b', 'c', 'deep'), 'y');
    fs.symlinkSync(outside, path.join(t, 'a', 'dirlink'));
    fs.symlinkSync(path.join(outside, 'keep'), path.join(t, 'filelink'));
    fs.symlinkSync('/nonexistent', path.join(t, 'dangling'));
    removeTree(t);
    expect(fs.existsSync(t)).toBe(false);
    expect(fs.readFileSync(path.join(outside, 'keep'), 'utf8')).toBe('k');
  });

  it('a missing path is no error; a file is removed', () => {
    expect(() => removeTree(path.join(dir, 'missing'))).not.toThrow();
    const f = path.join(dir, 'file');
    fs.writeFileSync(f, 'x');
    removeTree(f);
    expect(fs.existsSync(f)).toBe(false);
  });
});

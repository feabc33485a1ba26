import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanPath, findIgnoreFile, IgnoreMatcher, parseIgnoreFile, readIgnorePatterns } from '../../ts/build/ignore';

const m = (text: string) => new IgnoreMatcher(parseIgnoreFile(text));
const excluded = (text: string, paths: string[]) => paths.filter((p) => m(text).excluded(p));

describe('parseIgnoreFile (moby ignorefile.ReadAll)', () => {
  it('drops comments and blank lines, cleans paths, strips a leading / or ./', () => {
    expect(parseIgnoreFile('# comment\n\n  \n/abs\n./rel/\na//b/../c\n !  not/./this \n  #not a comment\r\nx/\n/\n')).toEqual(['abs', 'rel', 'a/c', '!not/this', '#not a comment', 'x', '/']);
    expect(parseIgnoreFile('\uFEFFnode_modules\n')).toEqual(['node_modules']);
  });

  it('cleanPath is Go path.Clean', () => {
    expect(['', '.', './a', 'a/./b/', 'a/../..', '/../a', '//a//b', 'a/b/../../c'].map(cleanPath)).toEqual(['.', '.', 'a', 'a/b', '..', '/a', '/a/b', 'c']);
  });
});

describe('IgnoreMatcher', () => {
  const tree = ['a.md', 'docs/x.md', 'docs/sub/y.md', 'src/main.c', 'src/lib/util.c', 'build/out.o', 'node_modules/p/index.js', '.git/HEAD', 'Dockerfile'];

  it('* and ? stay in one element; a pattern matching a directory excludes its contents', () => {
    expect(excluded('*.md', tree)).toEqual(['a.md']);
    expect(excluded('*/*.md', tree)).toEqual(['docs/x.md']);
    expect(excluded('docs', tree)).toEqual(['docs/x.md', 'docs/sub/y.md']);
    expect(excluded('src/*', tree)).toEqual(['src/main.c', 'src/lib/util.c']);
    expect(excluded('?.md', tree)).toEqual(['a.md']);
    expect(excluded('.git\nbuild/', tree)).toEqual(['build/out.o', '.git/HEAD']);
  });

  it('** spans directories, at the start, middle and end', () => {
    expect(excluded('**/*.md', tree)).toEqual(['a.md', 'docs/x.md', 'docs/sub/y.md']);
    expect(excluded('docs/**/y.md', tree)).toEqual(['docs/sub/y.md']);
    expect(excluded('**/util.c', tree)).toEqual(['src/lib/util.c']);
    expect(excluded('src/**', tree)).toEqual(['src/main.c', 'src/lib/util.c']);
    expect(excluded('**', tree)).toEqual(tree);
    expect(m('src/**').excluded('src')).toBe(false);
    // a leading ** with nothing special after it matches by suffix (patternmatcher's suffixMatch)
    expect(excluded('**.md', tree)).toEqual(['a.md', 'docs/x.md', 'docs/sub/y.md']);
    expect(m('**o').excluded('demo')).toBe(true);
    expect(m('**/o').excluded('demo')).toBe(false);
    expect(m('**/demo').excluded('demo')).toBe(true);
  });

  it('character classes, negated classes and escapes', () => {
    expect(excluded('[ab].md', tree)).toEqual(['a.md']);
    // patternmatcher hands [...] to Go's regexp: [^m] negates, [!m] is the class of ! and m
    expect(excluded('src/[^m]*', tree)).toEqual(['src/lib/util.c']);
    expect(excluded('src/[!m]*', tree)).toEqual(['src/main.c']);
    expect(m('a\\*b').excluded('a*b')).toBe(true);
    expect(m('a\\*b').excluded('axb')).toBe(false);
    expect(m('file.txt').excluded('fileXtxt')).toBe(false);
    expect(m('a+b(c)').excluded('a+b(c)')).toBe(true);
  });

  it('! re-includes, and the last matching pattern wins', () => {
    expect(excluded('*.md\n!a.md', tree)).toEqual([]);
    expect(excluded('docs\n!docs/x.md', tree)).toEqual(['docs/sub/y.md']);
    expect(excluded('!docs/x.md\ndocs', tree)).toEqual(['docs/x.md', 'docs/sub/y.md']);
    expect(excluded('**/*.md\n!docs/**\ndocs/sub', tree)).toEqual(['a.md', 'docs/sub/y.md']);
    expect(excluded('*\n!src\nsrc/lib', tree)).toEqual(['a.md', 'docs/x.md', 'docs/sub/y.md', 'src/lib/util.c', 'build/out.o', 'node_modules/p/index.js', '.git/HEAD', 'Dockerfile']);
    expect(() => new IgnoreMatcher(['!'])).toThrow(/illegal exclusion pattern/);
  });

  it('rejects what Go filepath.Match rejects, as Docker does', () => {
    for (const bad of ['[', 'a[', '[^bc', '[]a]', '[-]', '[x-]', '[a-b-c]', 'a\\']) expect(() => new IgnoreMatcher([bad]), bad).toThrow(/syntax error in the ignore file's pattern/);
    expect(new IgnoreMatcher(['[\\]a]']).excluded(']')).toBe(true);
    expect(new IgnoreMatcher(['[x\\-]']).excluded('-')).toBe(true);
    expect(new IgnoreMatcher(['a?b']).excluded('a☺b')).toBe(true);
    expect(new IgnoreMatcher(['a*/b']).excluded('a/c/b')).toBe(false);
  });

  it('mayIncludeUnder: false only when no ! pattern can reach inside an excluded directory', () => {
    expect(m('node_modules').mayIncludeUnder('node_modules')).toBe(false);
    expect(m('docs').mayIncludeUnder('src')).toBe(true);
    expect(m('docs\n!docs/x.md').mayIncludeUnder('docs')).toBe(true);
    expect(m('docs\n!docs/x.md').mayIncludeUnder('docs/sub')).toBe(false);
    expect(m('docs\n!docs/sub/*.md').mayIncludeUnder('docs/sub')).toBe(true);
    expect(m('docs\n!other').mayIncludeUnder('docs')).toBe(false);
    expect(m('*\n!**/keep').mayIncludeUnder('deep')).toBe(true);
    expect(m('*\n!*/keep').mayIncludeUnder('a')).toBe(true);
    expect(m('*\n!*/keep').mayIncludeUnder('a/b')).toBe(false);
    expect(m('a/b\n!a').mayIncludeUnder('a/b')).toBe(true);
  });

  it('an empty file ignores nothing', () => {
    expect(m('').empty).toBe(true);
    expect(excluded('# only a comment\n', tree)).toEqual([]);
  });
});

describe('readIgnorePatterns: which file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-ignore-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const put = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  };

  it('<Dockerfile>.dockerignore beside the Dockerfile, then .dockerignore, then .containerignore', async () => {
    expect(await readIgnorePatterns(dir)).toEqual([]);
    put('.containerignore', 'c\n');
    expect(await readIgnorePatterns(dir)).toEqual(['c']);
    put('.dockerignore', 'd\n');
    expect(await readIgnorePatterns(dir, 'Dockerfile')).toEqual(['d']);
    put('build/app.Dockerfile.dockerignore', '/x\n!y\n');
    expect(await readIgnorePatterns(dir, 'build/app.Dockerfile')).toEqual(['x', '!y']);
    expect(await findIgnoreFile(dir, path.join(dir, 'build/app.Dockerfile'))).toEqual({ file: path.join(dir, 'build/app.Dockerfile.dockerignore'), patterns: ['x', '!y'] });
    expect(await readIgnorePatterns(dir, 'build/other.Dockerfile')).toEqual(['d']);
  });
});

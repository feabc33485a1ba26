import { describe, expect, it } from 'vitest';
import { DetachFilter, parseDetachKeys } from '../../ts/container/attach';
import { BurrowError } from '../../ts/errors';

describe("--detach-keys as Docker spells them", () => {
  it('parses ctrl-X and single characters; empty is the default', () => {
    expect([...parseDetachKeys(undefined)]).toEqual([16, 17]);
    expect([...parseDetachKeys('')]).toEqual([16, 17]);
    expect([...parseDetachKeys('ctrl-p,ctrl-q')]).toEqual([16, 17]);
    expect([...parseDetachKeys('ctrl-a,x')]).toEqual([1, 120]);
    expect([...parseDetachKeys('CTRL-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,ctrl-z')]).toEqual([0, 27, 28, 29, 30, 31, 26]);
    for (const bad of ['ctrl-1', 'ctrl-', 'ab', 'ctrl-p,,x', 'alt-x']) {
      expect(() => parseDetachKeys(bad)).toThrow(BurrowError);
      expect(() => parseDetachKeys(bad)).toThrow(/Invalid detach keys/);
    }
  });

  it('finds the sequence across chunks and passes held bytes on when it breaks', () => {
    const f = new DetachFilter(parseDetachKeys('ctrl-p,ctrl-q'));
    expect(f.feed(Buffer.from('ab\x10'))).toEqual({ out: Buffer.from('ab'), detach: false });
    // ^P then "x": not the sequence, both go on.
    expect(f.feed(Buffer.from('x'))).toEqual({ out: Buffer.from('\x10x'), detach: false });
    // ^P ^P ^Q: the second ^P may start it again.
    expect(f.feed(Buffer.from('\x10\x10'))).toEqual({ out: Buffer.from('\x10'), detach: false });
    expect(f.feed(Buffer.from('\x11after'))).toEqual({ out: Buffer.from(''), detach: true });
    const g = new DetachFilter(parseDetachKeys('ctrl-a,x'));
    expect(g.feed(Buffer.from('ls\r\x01x'))).toEqual({ out: Buffer.from('ls\r'), detach: true });
  });
});

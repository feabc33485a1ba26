import { describe, expect, it } from 'vitest';
import { EXPANDING_INSTRUCTIONS, ExpandError, expandHeredoc, expandIn, expandWord, expandWords } from '../../ts/build/dockerfile/expand';

const env: Record<string, string> = { A: 'a', B: 'two words', E: '', PATH: '/usr/bin:/bin', F: 'file.tar.gz', P: '/usr/local/lib/x.so' };
const lookup = (n: string) => (Object.prototype.hasOwnProperty.call(env, n) ? env[n] : undefined);
const x = (w: string, escape = '\\') => expandWord(w, lookup, escape);
const err = (w: string) => {
  try {
    x(w);
  } catch (e) {
    expect(e).toBeInstanceOf(ExpandError);
    expect((e as ExpandError).code).toBe('EBUILD_INPUT');
    return (e as Error).message;
  }
  throw new Error(`${w} expanded without an error`);
};

describe('expandWord (BuildKit shell lexer)', () => {
  it('substitutes $VAR and ${VAR}; unset is empty; names end at a non-name character', () => {
    expect(x('$A')).toBe('a');
    expect(x('${A}b')).toBe('ab');
    expect(x('$Ab')).toBe('');
    expect(x('$A-b')).toBe('a-b');
    expect(x('$NOPE.x')).toBe('.x');
    expect(x('pre$A/$B')).toBe('prea/two words');
    expect(x('$')).toBe('$');
    expect(x('a$ b')).toBe('a$ b');
    expect(x('$1x')).toBe('x');
  });

  it('removes quotes: single quotes are literal, double quotes expand', () => {
    expect(x(`'$A "x"'`)).toBe('$A "x"');
    expect(x('"$A \'x\'"')).toBe("a 'x'");
    expect(x('"a"\'b\'c')).toBe('abc');
    expect(x('""')).toBe('');
  });

  it('the escape character: outside quotes it quotes anything; inside double quotes only $ " and itself', () => {
    expect(x('\\$A')).toBe('$A');
    expect(x('a\\ b')).toBe('a b');
    expect(x('\\"')).toBe('"');
    expect(x('\\\\')).toBe('\\');
    expect(x('"\\$A \\" \\\\ \\n"')).toBe('$A " \\ \\n');
    expect(x("'\\'")).toBe('\\');
    expect(x('c:\\dir')).toBe('c:dir');
    expect(x('trailing\\')).toBe('trailing');
    // with # escape=` the backslash is an ordinary character
    expect(x('c:\\dir\\`$A', '`')).toBe('c:\\dir\\$A');
    expect(x('"`"x`""', '`')).toBe('"x"');
  });

  it('the modifiers :- - :+ + with unset and empty variables', () => {
    expect(x('${NOPE:-def}')).toBe('def');
    expect(x('${E:-def}')).toBe('def');
    expect(x('${E-def}')).toBe('');
    expect(x('${NOPE-def}')).toBe('def');
    expect(x('${A:-def}')).toBe('a');
    expect(x('${A:+alt}')).toBe('alt');
    expect(x('${E:+alt}')).toBe('');
    expect(x('${E+alt}')).toBe('alt');
    expect(x('${NOPE+alt}')).toBe('');
    expect(x('${NOPE:-"x y"}')).toBe('x y');
    expect(x('${NOPE:-$A}')).toBe('a');
    expect(x('${NOPE:-${B}}')).toBe('two words');
    expect(x('"${NOPE:-a b}"')).toBe('a b');
  });

  it('${VAR:?msg} and ${VAR?msg} fail with the message', () => {
    expect(x('${A:?must}')).toBe('a');
    expect(err('${NOPE:?must be set}')).toBe('NOPE: must be set');
    expect(err('${NOPE?}')).toBe('NOPE: is not allowed to be unset');
    expect(err('${E:?}')).toBe('E: is not allowed to be empty');
    expect(x('${E?}')).toBe('');
  });

  it('# ## % %% remove the shortest or longest matching prefix or suffix', () => {
    expect(x('${F#*.}')).toBe('tar.gz');
    expect(x('${F##*.}')).toBe('gz');
    expect(x('${F%.*}')).toBe('file.tar');
    expect(x('${F%%.*}')).toBe('file');
    expect(x('${P##*/}')).toBe('x.so');
    expect(x('${P%/*}')).toBe('/usr/local/lib');
    expect(x('${F#nomatch}')).toBe('file.tar.gz');
    expect(x('${F%.t?r.gz}')).toBe('file');
    // BuildKit's patterns have no bracket expressions: [ is an ordinary character
    expect(x('${F#[a-f]}')).toBe('file.tar.gz');
    expect(x('${F%\\*}')).toBe('file.tar.gz');
    expect(err('${F#\\x}')).toContain("invalid escape '\\x'");
    expect(x('${P#/usr\\/}')).toBe('local/lib/x.so');
    expect(x('${NOPE#x}')).toBe('');
    expect(err('${F:#x}')).toContain('unsupported modifier (:#)');
  });

  it('/ and // replace the first or every match', () => {
    expect(x('${PATH/bin/sbin}')).toBe('/usr/sbin:/bin');
    expect(x('${PATH//bin/sbin}')).toBe('/usr/sbin:/sbin');
    expect(x('${PATH//:/ }')).toBe('/usr/bin /bin');
    expect(x('${F/.*/}')).toBe('file');
    expect(x('${F/tar/}')).toBe('file..gz');
    expect(x('${F/#/-}')).toBe('file.tar.gz');
    expect(err('${F/tar}')).toBe("syntax error: missing '/' in ${}");
  });

  it('syntax errors', () => {
    expect(err('${A')).toContain("missing '}'");
    expect(err('${A:-x')).toContain("missing '}'");
    expect(err('${}')).toContain('bad substitution');
    expect(err('${:x}')).toContain('bad substitution');
    expect(err('${A!}')).toContain('unsupported modifier (!)');
    expect(err('"abc')).toContain('matching double-quote');
    expect(err("'abc")).toContain('matching single-quote');
  });
});

describe('expandWords', () => {
  it('keeps << and the blanks after it in one word, as BuildKit does for heredocs', () => {
    expect(expandWords('cat << EOF > x', lookup)).toEqual(['cat', '<< EOF', '>', 'x']);
    expect(expandWords('a < b', lookup)).toEqual(['a', '<', 'b']);
  });

  it('splits at unquoted whitespace, also inside unquoted variables, never inside quotes', () => {
    expect(expandWords('80 $B "$B" x\\ y', lookup)).toEqual(['80', 'two', 'words', 'two words', 'x y']);
    expect(expandWords('  a   b  ', lookup)).toEqual(['a', 'b']);
    expect(expandWords('$E', lookup)).toEqual([]);
    expect(expandWords('a""b', lookup)).toEqual(['ab']);
  });
});

describe('expandHeredoc (COPY <<EOF with an unquoted delimiter)', () => {
  it('expands variables and applies \\ escapes, but quotes are plain text', () => {
    expect(expandHeredoc('A=$A "$B" \'$A\'\nprice: \\$5\n', lookup)).toBe('A=a "two words" \'a\'\nprice: $5\n');
    expect(expandHeredoc('${NOPE:-"d"}\n', lookup)).toBe('"d"\n');
  });
});

describe('expandIn', () => {
  const pos = { file: 'Dockerfile', line: 7, column: 3 };
  it('expands a word of an instruction, or fails naming where the instruction is', () => {
    expect(expandIn({ pos, kind: 'WORKDIR' }, '/srv/$A', lookup)).toBe('/srv/a');
    expect(expandIn({ pos, kind: 'EXPOSE' }, '$B', lookup, '\\', true)).toEqual(['two', 'words']);
    try {
      expandIn({ pos, kind: 'COPY' }, '"my', lookup);
      throw new Error('no error');
    } catch (e) {
      expect(e).toBeInstanceOf(ExpandError);
      expect((e as ExpandError).message).toBe('Dockerfile:7:3: COPY "my: unexpected end of statement while looking for matching double-quote');
      expect((e as ExpandError).fix).toContain('JSON form');
    }
    expect(() => expandIn({ pos, kind: 'USER' }, '${U:?set U}', lookup)).toThrow('Dockerfile:7:3: USER ${U:?set U}: U: set U');
  });
});

describe('EXPANDING_INSTRUCTIONS', () => {
  it("is BuildKit's list: RUN, CMD and ENTRYPOINT are the shell's", () => {
    for (const k of ['ADD', 'COPY', 'ENV', 'EXPOSE', 'FROM', 'LABEL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR', 'ARG']) expect(EXPANDING_INSTRUCTIONS.has(k)).toBe(true);
    for (const k of ['RUN', 'CMD', 'ENTRYPOINT', 'SHELL', 'HEALTHCHECK', 'MAINTAINER']) expect(EXPANDING_INSTRUCTIONS.has(k)).toBe(false);
  });
});

/**
 * Shell-word expansion as BuildKit's Dockerfile frontend does it (frontend/dockerfile/shell/lex.go):
 * quotes are removed, `$VAR` / `${VAR}` and the modifiers `:-` `-` `:+` `+` `:?` `?` `#` `##` `%`
 * `%%` `/` `//` are substituted from a lookup, and the escape character (the `# escape=`
 * directive's, `\` by default) quotes the next character. This is not a POSIX shell: no command
 * substitution, no arithmetic, no field splitting except where `expandWords` asks for it, exactly
 * like BuildKit, so a Dockerfile builds the same here as with `docker build`.
 *
 * The executor calls this while it walks the stages, for the instructions in
 * EXPANDING_INSTRUCTIONS (RUN, CMD and ENTRYPOINT are left to the container's shell).
 */

import { BurrowError } from '../../errors';
import type { Position } from './ast';

/** A variable's value, or undefined when it is not set (which differs from set-but-empty). */
export type Lookup = (name: string) => string | undefined;

/**
 * The instructions whose words BuildKit expands (the Dockerfile reference's list: ADD COPY ENV
 * EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR, and ONBUILD's trigger when it is one of those,
 * once it runs in the child image), plus ARG (names and defaults). What exactly, as BuildKit's
 * instructions/commands.go and dockerfile2llb do it:
 *   ENV, LABEL   keys and values (expandWord each)
 *   ARG          names and defaults
 *   COPY, ADD    sources and destination; --chown, --chmod (ADD: --checksum); never --from
 *                (the parser rejects a variable there, as BuildKit does); inline files of
 *                heredocs with an unquoted delimiter through expandHeredoc
 *   EXPOSE       each word through expandWords (a variable may hold several ports)
 *   VOLUME, WORKDIR, USER, STOPSIGNAL   their words
 *   FROM         the image and --platform, with the global ARGs only
 *   RUN          only the --mount values and --network; the command is the shell's
 */
export const EXPANDING_INSTRUCTIONS: ReadonlySet<string> = new Set([
  'ADD',
  'ARG',
  'COPY',
  'ENV',
  'EXPOSE',
  'FROM',
  'LABEL',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
]);

/** The flags that are expanded, per instruction (the others are taken as written). */
export const EXPANDING_FLAGS: Readonly<Record<string, readonly string[]>> = {
  ADD: ['chown', 'chmod', 'checksum'],
  COPY: ['chown', 'chmod'],
  FROM: ['platform'],
  RUN: ['mount', 'network'],
};

/** A word that does not expand: a syntax error, or `${VAR:?message}` with VAR unset or empty. */
export class ExpandError extends BurrowError {
  constructor(message: string, fix?: string) {
    super('EBUILD_INPUT', message, fix);
    this.name = 'ExpandError';
  }
}

export interface LexOptions {
  /** Keep quote characters in the result (BuildKit's RawQuotes; the heredoc detection uses it). */
  rawQuotes?: boolean;
  /** Keep escape characters in the result (BuildKit's RawEscapes). */
  rawEscapes?: boolean;
  /** Leave `$VAR` of an unset variable as written (BuildKit's SkipUnsetEnv). */
  skipUnsetEnv?: boolean;
  /** Quotes are ordinary characters (BuildKit's SkipProcessQuotes, for heredoc bodies). */
  skipQuotes?: boolean;
}

/**
 * The body of `COPY <<EOF` (unquoted delimiter) as BuildKit writes the file: variables expanded
 * and `\` escapes applied, quotes left as they are (its ExpandRaw, with `\` whatever the
 * escape directive says).
 */
export function expandHeredoc(content: string, lookup: Lookup): string {
  return expandWord(content, lookup, '\\', { skipQuotes: true });
}

/**
 * Expands one word: the result is a single string (no splitting), quotes removed.
 * `expandWord('"$A"-${B:-x}', lookup)` → `1-x` when A=1 and B is unset.
 */
export function expandWord(word: string, lookup: Lookup, escape: string = '\\', options: LexOptions = {}): string {
  return new Lexer(word, lookup, escape, options).process().result;
}

/**
 * Expands and splits into words at unquoted whitespace, also inside the values of unquoted
 * variables (BuildKit's ProcessWords): `expandWords('80 $PORTS', ...)` with PORTS="443 53/udp"
 * gives ['80', '443', '53/udp'], while `"$PORTS"` stays one word.
 */
export function expandWords(word: string, lookup: Lookup, escape: string = '\\', options: LexOptions = {}): string[] {
  return new Lexer(word, lookup, escape, options).process().words;
}

/**
 * expandWord for a word of an instruction: an ExpandError then names where the instruction is
 * (`Dockerfile:12:1: COPY "my file": unexpected end of statement ...`), and for COPY/ADD an
 * unmatched quote points to the JSON form. BuildKit reports these when it expands, that is
 * only in the stages it builds; the executor does the same by calling this as it walks them.
 */
export function expandIn(ins: { pos: Position; kind: string }, word: string, lookup: Lookup, escape: string = '\\', split = false): string | string[] {
  try {
    return split ? expandWords(word, lookup, escape) : expandWord(word, lookup, escape);
  } catch (e) {
    if (!(e instanceof ExpandError)) throw e;
    const quote = /matching (single|double)-quote/.test(e.message) && (ins.kind === 'COPY' || ins.kind === 'ADD');
    throw new ExpandError(`${ins.pos.file}:${ins.pos.line}:${ins.pos.column}: ${ins.kind} ${word}: ${e.message}`, quote ? `names with spaces or quotes need the JSON form: ${ins.kind} ["my file", "/dest/"]` : undefined);
  }
}

const EOF = '';

function isSpace(ch: string): boolean {
  return ch !== EOF && /\s/u.test(ch);
}

/** BuildKit's wordsStruct: collects words; characters from quotes never split. */
class Words {
  private words: string[] = [];
  private word = '';
  private inWord = false;

  addChar(ch: string): void {
    if (isSpace(ch) && this.inWord) {
      if (this.word.length !== 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else if (!isSpace(ch)) {
      this.addRawChar(ch);
    }
  }

  addRawChar(ch: string): void {
    this.word += ch;
    this.inWord = true;
  }

  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }

  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }

  get(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

class Lexer {
  private readonly chars: string[];
  private i = 0;
  private rawEscapes: boolean;

  constructor(
    word: string,
    private readonly lookup: Lookup,
    private readonly escape: string,
    private readonly options: LexOptions,
  ) {
    this.chars = Array.from(word);
    this.rawEscapes = options.rawEscapes ?? false;
  }

  process(): { result: string; words: string[] } {
    const [result, words] = this.processStopOn(EOF, this.rawEscapes);
    return { result, words };
  }

  private peek(): string {
    return this.chars[this.i] ?? EOF;
  }

  private next(): string {
    const ch = this.chars[this.i] ?? EOF;
    if (ch !== EOF) this.i++;
    return ch;
  }

  private processStopOn(stop: string, rawEscapes: boolean): [string, string[]] {
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      return this.processStopOnInner(stop);
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processStopOnInner(stop: string): [string, string[]] {
    let result = '';
    const words = new Words();
    while (this.peek() !== EOF) {
      let ch = this.peek();
      if (stop !== EOF && ch === stop) {
        this.next();
        return [result, words.get()];
      }
      if (ch === '$') {
        const v = this.processDollar();
        result += v;
        words.addString(v);
      } else if (ch === "'" && !this.options.skipQuotes) {
        const v = this.processSingleQuote();
        result += v;
        words.addRawString(v);
      } else if (ch === '"' && !this.options.skipQuotes) {
        const v = this.processDoubleQuote();
        result += v;
        words.addRawString(v);
      } else if (ch === '<') {
        // BuildKit keeps `<< EOF` one word (a heredoc may have blanks after <<).
        const v = this.processPossibleHeredoc();
        result += v;
        words.addRawString(v);
      } else {
        ch = this.next();
        if (ch === this.escape) {
          if (this.rawEscapes) {
            words.addRawChar(ch);
            result += ch;
          }
          // The escape character quotes the next one; at the end of the word it is dropped.
          ch = this.next();
          if (ch === EOF) break;
          words.addRawChar(ch);
        } else {
          words.addChar(ch);
        }
        result += ch;
      }
    }
    if (stop !== EOF) {
      throw new ExpandError(`unexpected end of statement while looking for matching ${stop}`);
    }
    return [result, words.get()];
  }

  private processPossibleHeredoc(): string {
    this.next();
    if (this.peek() !== '<') return '<';
    this.next();
    let v = '<<';
    while (this.peek() === ' ' || this.peek() === '\t' || this.peek() === '\r') v += this.next();
    return v;
  }

  private processSingleQuote(): string {
    // Everything up to the next ' is literal; nothing escapes a ' inside single quotes (sh(1)).
    let result = '';
    let ch = this.next();
    if (this.options.rawQuotes) result += ch;
    for (;;) {
      ch = this.next();
      if (ch === EOF) throw new ExpandError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (this.options.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    // Up to the next unescaped ", with $ expanded; the escape character quotes only ", $ and
    // itself (BuildKit: "for now don't do {, }, or ` as escapable chars"), else it stays.
    let result = '';
    let ch = this.next();
    if (this.options.rawQuotes) result += ch;
    for (;;) {
      const p = this.peek();
      if (p === EOF) throw new ExpandError('unexpected end of statement while looking for matching double-quote');
      if (p === '"') {
        ch = this.next();
        if (this.options.rawQuotes) result += ch;
        return result;
      }
      if (p === '$') {
        result += this.processDollar();
        continue;
      }
      ch = this.next();
      if (ch === this.escape) {
        if (this.rawEscapes) result += ch;
        const n = this.peek();
        if (n === EOF) continue;
        if (n === '"' || n === '$' || n === this.escape) ch = this.next();
      }
      result += ch;
    }
  }

  private get(name: string): string | undefined {
    return this.lookup(name);
  }

  private processDollar(): string {
    this.next(); // the $
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.get(name);
      if (value === undefined && this.options.skipUnsetEnv) return '$' + name;
      return value ?? '';
    }
    this.next(); // the {
    const first = this.peek();
    if (first === EOF) throw new ExpandError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new ExpandError('syntax error: bad substitution');
    const name = this.processName();
    let ch = this.next();
    let chs = ch;
    let nullIsUnset = false;
    switch (ch) {
      case '}': {
        const value = this.get(name);
        if (value === undefined && this.options.skipUnsetEnv) return '${' + name + '}';
        return value ?? '';
      }
      case ':':
      case '+':
      case '-':
      case '?':
      case '#':
      case '%': {
        if (ch === ':') {
          nullIsUnset = true;
          ch = this.next();
          chs += ch;
        }
        const patternish = ch === '#' || ch === '%';
        if (nullIsUnset && patternish) throw new ExpandError(`unsupported modifier (${chs}) in substitution`);
        if (!['+', '-', '?', '#', '%'].includes(ch)) {
          if (ch === EOF) throw new ExpandError("syntax error: missing '}'");
          throw new ExpandError(`unsupported modifier (${chs}) in substitution`);
        }
        let word: string;
        try {
          [word] = this.processStopOn('}', patternish);
        } catch (e) {
          if (this.peek() === EOF) throw new ExpandError("syntax error: missing '}'");
          throw e;
        }
        const value = this.get(name);
        if (value === undefined && this.options.skipUnsetEnv) return '${' + name + chs + word + '}';
        const unset = value === undefined || (nullIsUnset && value === '');
        switch (ch) {
          case '-':
            return unset ? word : (value ?? '');
          case '+':
            return unset ? '' : word;
          case '?':
            if (value === undefined) throw new ExpandError(`${name}: ${word || 'is not allowed to be unset'}`);
            if (nullIsUnset && value === '') throw new ExpandError(`${name}: ${word || 'is not allowed to be empty'}`);
            return value;
          default: {
            // # and % remove the shortest matching prefix / suffix, ## and %% the longest.
            let greedy = false;
            if (word.startsWith(ch)) {
              greedy = true;
              word = word.slice(1);
            }
            return trimAffix(value ?? '', word, ch === '#' ? 'prefix' : 'suffix', greedy);
          }
        }
      }
      case '/': {
        const all = this.peek() === '/';
        if (all) this.next();
        let pattern: string;
        try {
          [pattern] = this.processStopOn('/', true);
        } catch (e) {
          if (this.peek() === EOF) throw new ExpandError("syntax error: missing '/' in ${}");
          throw e;
        }
        let replacement: string;
        try {
          [replacement] = this.processStopOn('}', true);
        } catch (e) {
          if (this.peek() === EOF) throw new ExpandError("syntax error: missing '}'");
          throw e;
        }
        const value = this.get(name);
        if (value === undefined && this.options.skipUnsetEnv) {
          return '${' + name + (all ? '//' : '/') + pattern + '/' + replacement + '}';
        }
        return replacePattern(value ?? '', pattern, replacement, all);
      }
      default:
        if (ch === EOF) throw new ExpandError("syntax error: missing '}'");
        throw new ExpandError(`unsupported modifier (${chs}) in substitution`);
    }
  }

  /** A name: letters, digits and _, or a run of digits, or one special parameter character. */
  private processName(): string {
    let name = '';
    while (this.peek() !== EOF) {
      const ch = this.peek();
      if (name === '' && /\p{Nd}/u.test(ch)) {
        while (this.peek() !== EOF && /\p{Nd}/u.test(this.peek())) name += this.next();
        return name;
      }
      if (name === '' && '@*#?-$!0'.includes(ch)) return this.next();
      if (!/[\p{L}\p{Nd}_]/u.test(ch)) break;
      name += this.next();
    }
    return name;
  }
}

/**
 * BuildKit's convertShellPatternToRegex: `*` any run of characters (lazy unless greedy), `?`
 * one character, `\` quoting `*`, `?` or itself (before `}` or `/` it is dropped: they had to
 * be escaped inside `${}`); every other character literal. No bracket expressions.
 */
function shellPatternRegex(pattern: string, greedy: boolean, anchored: boolean): RegExp {
  let re = anchored ? '^' : '';
  const chars = Array.from(pattern);
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i]!;
    if (ch === '*') re += greedy ? '[^\\n]*' : '[^\\n]*?';
    else if (ch === '?') re += '[^\\n]';
    else if (ch === '\\') {
      const n = chars[i + 1];
      if (n === '}' || n === '/') continue;
      if (n !== '*' && n !== '?' && n !== '\\') throw new ExpandError(`invalid pattern (${pattern}) in substitution: invalid escape '\\${n ?? ''}'`);
      re += '\\' + n;
      i++;
    } else re += escapeRegExp(ch);
  }
  return new RegExp(re, 'u');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = shellPatternRegex(pattern, greedy, true).exec(value);
  return m ? value.slice(m[0].length) : value;
}

/** Reverses a pattern keeping escapes before what they escape (a\*c → c\*a). */
function reversePattern(pattern: string): string {
  const chars = Array.from(pattern);
  const out: string[] = new Array<string>(chars.length);
  const last = chars.length - 1;
  for (let i = 0; i <= last; ) {
    const ch = chars[i]!;
    if (ch === '\\' && i !== last) {
      out[last - i - 1] = ch;
      out[last - i] = chars[i + 1]!;
      i += 2;
    } else {
      out[last - i] = ch;
      i++;
    }
  }
  return out.join('');
}

function reverse(s: string): string {
  return Array.from(s).reverse().join('');
}

function trimAffix(value: string, pattern: string, side: 'prefix' | 'suffix', greedy: boolean): string {
  if (side === 'prefix') return trimPrefix(pattern, value, greedy);
  // The shortest or longest match at the end: reverse both, trim at the start, reverse back.
  return reverse(trimPrefix(reversePattern(pattern), reverse(value), greedy));
}

function replacePattern(value: string, pattern: string, replacement: string, all: boolean): string {
  const re = shellPatternRegex(pattern, true, false);
  if (all) return value.replace(new RegExp(re.source, 'gu'), () => replacement);
  return value.replace(re, () => replacement);
}

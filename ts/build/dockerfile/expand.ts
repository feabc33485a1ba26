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

/** A variable's value, or undefined when it is not set (which differs from set-but-empty). */
export type Lookup = (name: string) => string | undefined;

/**
 * The instructions whose words BuildKit expands (the Dockerfile reference's list: ADD COPY ENV
 * EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR, and ONBUILD's trigger when it is one of those,
 * once it runs in the child image), plus ARG's defaults. For COPY/ADD, the `--from`, `--chown`
 * and `--chmod` flags are expanded too; for RUN only its `--mount` values and `--network`; for
 * FROM its `--platform`. Keys of ENV and LABEL pairs are expanded as well as their values.
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
  COPY: ['from', 'chown', 'chmod'],
  FROM: ['platform'],
  RUN: ['mount', 'network'],
};

/** A word that does not expand: a syntax error, or `${VAR:?message}` with VAR unset or empty. */
export class ExpandError extends BurrowError {
  constructor(message: string) {
    super('EBUILD_INPUT', message);
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
      } else if (ch === "'") {
        const v = this.processSingleQuote();
        result += v;
        words.addRawString(v);
      } else if (ch === '"') {
        const v = this.processDoubleQuote();
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
        const [pattern] = this.processStopOnOr('/', '}');
        const [replacement] = this.lastStop === '}' ? ['', []] : this.processStopOn('}', true);
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

  private lastStop = '';

  /** `${VAR/pattern}` without a replacement ends at `}`: stops at either character. */
  private processStopOnOr(a: string, b: string): [string, string[]] {
    let result = '';
    const saved = this.rawEscapes;
    this.rawEscapes = true;
    try {
      while (this.peek() !== EOF) {
        const ch = this.peek();
        if (ch === a || ch === b) {
          this.next();
          this.lastStop = ch;
          return [result, []];
        }
        if (ch === '$') result += this.processDollar();
        else if (ch === "'") result += this.processSingleQuote();
        else if (ch === '"') result += this.processDoubleQuote();
        else {
          let c = this.next();
          if (c === this.escape) {
            result += c;
            c = this.next();
            if (c === EOF) break;
          }
          result += c;
        }
      }
      throw new ExpandError("syntax error: missing '}'");
    } finally {
      this.rawEscapes = saved;
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
 * A shell pattern (`*`, `?`, `[...]`, the escape character quoting the next one) as the source of
 * a regular expression matching it, unanchored.
 */
function patternSource(pattern: string, escape = '\\'): string {
  let re = '';
  const chars = Array.from(pattern);
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i]!;
    if (ch === '*') re += '[\\s\\S]*';
    else if (ch === '?') re += '[\\s\\S]';
    else if (ch === '[') {
      const end = chars.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let body = chars.slice(i + 1, end);
      let negate = '';
      if (body[0] === '!' || body[0] === '^') {
        negate = '^';
        body = body.slice(1);
      }
      re += '[' + negate + body.map((c) => (c === '\\' || c === '[' ? '\\' + c : c)).join('') + ']';
      i = end;
    } else if (ch === escape && i + 1 < chars.length) {
      re += escapeRegExp(chars[++i]!);
    } else re += escapeRegExp(ch);
  }
  return re;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

function trimAffix(value: string, pattern: string, side: 'prefix' | 'suffix', greedy: boolean): string {
  const re = new RegExp('^(?:' + patternSource(pattern) + ')$', 'u');
  const n = value.length;
  if (side === 'prefix') {
    for (let k = 0; k <= n; k++) {
      const len = greedy ? n - k : k;
      if (re.test(value.slice(0, len))) return value.slice(len);
    }
  } else {
    for (let k = 0; k <= n; k++) {
      const len = greedy ? n - k : k;
      if (re.test(value.slice(n - len))) return value.slice(0, n - len);
    }
  }
  return value;
}

function replacePattern(value: string, pattern: string, replacement: string, all: boolean): string {
  if (pattern === '') return value;
  const re = new RegExp(patternSource(pattern), all ? 'gu' : 'u');
  return value.replace(re, () => replacement);
}

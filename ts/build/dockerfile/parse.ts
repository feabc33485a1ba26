/**
 * The Dockerfile parser: text → the AST of ast.ts, with the syntax BuildKit's frontend accepts
 * (moby/buildkit frontend/dockerfile/parser and instructions). Lines are joined at the escape
 * character as BuildKit joins them (comment lines and empty lines inside a continuation are
 * dropped), heredocs are read after their instruction's line, flags are split off as BuildKit's
 * extractBuilderFlags does, and each instruction is checked the way BuildKit's instructions
 * package checks it, so that a Dockerfile docker accepts parses here and one it rejects fails
 * here, before any work, with the file, line and column of the problem.
 *
 * Words stay unexpanded (expand.ts substitutes variables while the executor walks the stages,
 * and expandIn gives its errors the instruction's position). One deliberate difference: values
 * written literally that can never be valid (EXPOSE http, --chmod=rwx, a --mount field's value)
 * fail here for every stage, where BuildKit reports them only for the stages the target needs.
 */

import { BurrowError } from '../../errors';
import type {
  ArgInstruction,
  CommandForm,
  CopyInstruction,
  Dockerfile,
  FromInstruction,
  Heredoc,
  Instruction,
  Position,
  RunInstruction,
  RunMount,
  Stage,
} from './ast';
import { expandWord, expandWords } from './expand';

/** The instructions BuildKit knows, upper case (for errors and "did you mean"). */
export const INSTRUCTIONS = [
  'ADD',
  'ARG',
  'CMD',
  'COPY',
  'ENTRYPOINT',
  'ENV',
  'EXPOSE',
  'FROM',
  'HEALTHCHECK',
  'LABEL',
  'MAINTAINER',
  'ONBUILD',
  'RUN',
  'SHELL',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
] as const;

type FlagKind = 'string' | 'bool' | 'list';

/** The flags each instruction takes (BuildKit's BFlags per instruction); others take none. */
const FLAGS: Record<string, Record<string, FlagKind>> = {
  FROM: { platform: 'string' },
  RUN: { mount: 'list', network: 'string', security: 'string' },
  COPY: { from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'list' },
  ADD: { chown: 'string', chmod: 'string', link: 'bool', checksum: 'string', 'keep-git-dir': 'bool', exclude: 'list' },
  HEALTHCHECK: { interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string' },
};

/** BuildKit's parser directive syntax; only these three names are directives. */
const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const DIRECTIVE_NAMES = new Set(['escape', 'syntax', 'check']);
const STAGE_NAME = /^[a-z][a-z0-9\-_.]*$/;
const HEREDOC_WORD = /^(\d*)<<(-?)\s*([^<]*)$/;

/** A piece of a joined (logical) line: where its text starts in the line and in the file. */
interface Segment {
  off: number;
  line: number;
  col: number;
}

interface Logical {
  text: string;
  segments: Segment[];
}

interface FlagWord {
  word: string;
  off: number;
}

/** The head of a heredoc as found in the instruction's line; the body is read afterwards. */
export interface HeredocHead {
  word: string;
  name: string;
  expand: boolean;
  chomp: boolean;
  fd?: number;
}

/** One instruction's line split into its parts, with offsets into the logical line. */
interface Line {
  logical: Logical;
  /** The instruction word as written and upper-cased. */
  word: string;
  cmd: string;
  cmdOff: number;
  flagWords: FlagWord[];
  /** What follows the flags, trimmed; restOff is where it starts in the logical line. */
  rest: string;
  restOff: number;
}

type HeredocReader = (heads: HeredocHead[], line: Line) => Heredoc[];

/**
 * Parses a Dockerfile. `file` names it in positions and errors (BurrowError EBUILD_PARSE,
 * message `FILE:LINE:COLUMN: what`, with a fix where there is an obvious one).
 */
export function parseDockerfile(text: string, file: string): Dockerfile {
  return new Parser(text, file).parse();
}

/** Whether an instruction word is one BuildKit knows (any case). */
export function isInstruction(word: string): boolean {
  return (INSTRUCTIONS as readonly string[]).includes(word.toUpperCase());
}

class Parser {
  private readonly lines: string[];
  /** The lines with their \r (a CRLF file), for heredoc bodies, which BuildKit keeps as read. */
  private readonly rawLines: string[];
  /** The bodies of the last heredocs read, before <<- stripped their tabs (ONBUILD's trigger). */
  private lastRawBodies: string[] = [];
  private i = 0;
  private escape: '\\' | '`' = '\\';
  private continuation: RegExp = /(^|[^\\])\\[ \t]*$/;

  constructor(
    text: string,
    private readonly file: string,
  ) {
    const lines = text.replace(/^\uFEFF/, '').split('\n');
    if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    this.rawLines = lines;
    this.lines = lines.map((l) => l.replace(/[\r\n]+$/, ''));
  }

  parse(): Dockerfile {
    const directives = this.directives();
    const instructions: Instruction[] = [];
    while (this.i < this.lines.length) {
      const logical = this.nextLogicalLine();
      if (!logical) break;
      instructions.push(this.instruction(logical, 0, (heads, line) => this.readHeredocs(heads, line)));
    }
    if (instructions.length === 0) {
      throw this.error({ file: this.file, line: 1, column: 1 }, 'the Dockerfile has no instructions', 'a Dockerfile starts with FROM (an image, or scratch)');
    }
    const globalArgs: ArgInstruction[] = [];
    const stages: Stage[] = [];
    for (const ins of instructions) {
      if (ins.kind === 'FROM') {
        // Duplicate and reserved (scratch, context) stage names are only lint warnings in
        // BuildKit; the executor resolves a name to its first stage, as BuildKit does.
        stages.push({ index: stages.length, name: ins.stageName, from: ins, instructions: [] });
      } else if (stages.length === 0) {
        if (ins.kind !== 'ARG') {
          throw this.error(ins.pos, `${ins.kind} before the first FROM: only ARG may come before FROM`, 'start the build stage with FROM IMAGE (or FROM scratch) above it');
        }
        globalArgs.push(ins);
      } else {
        stages[stages.length - 1]!.instructions.push(ins);
      }
    }
    if (stages.length === 0) {
      throw this.error(instructions[0]!.pos, 'the Dockerfile has no FROM: there is no build stage', 'add FROM IMAGE (or FROM scratch) after the global ARGs');
    }
    return { file: this.file, directives, globalArgs, stages };
  }

  // ---- lines --------------------------------------------------------------------------------

  /** Parser directives: comments of the form `# name=value` at the very top, before anything else. */
  private directives(): Dockerfile['directives'] {
    const out: Dockerfile['directives'] = { escape: '\\' };
    const seen = new Set<string>();
    for (let n = 0; n < this.lines.length; n++) {
      const line = trimLeft(this.lines[n]!);
      const m = DIRECTIVE.exec(line);
      if (!m) break;
      const name = m[1]!.toLowerCase();
      const value = m[2]!;
      if (!DIRECTIVE_NAMES.has(name)) break;
      const pos = { file: this.file, line: n + 1, column: this.lines[n]!.length - line.length + 1 };
      if (seen.has(name)) throw this.error(pos, `only one ${name} parser directive can be used`);
      seen.add(name);
      if (name === 'escape') {
        if (value !== '\\' && value !== '`') {
          throw this.error(pos, `invalid escape token '${value}' does not match \` or \\`, 'write # escape=\\ or # escape=`');
        }
        out.escape = value;
      } else if (name === 'syntax') out.syntax = value;
      else out.check = value;
    }
    this.escape = out.escape;
    // BuildKit's lineContinuationRegex: the escape character last on the line (spaces after it
    // allowed) continues it, unless it is escaped itself (`\\` at the end is a backslash).
    this.continuation = this.escape === '`' ? /(^|[^`])`[ \t]*$/ : /(^|[^\\])\\[ \t]*$/;
    return out;
  }

  /** The next instruction's line, continuations joined; undefined at the end of the file. */
  private nextLogicalLine(): Logical | undefined {
    while (this.i < this.lines.length) {
      const raw = this.lines[this.i]!;
      const lineNo = ++this.i;
      const first = trimLeft(raw);
      if (isComment(first)) continue;
      let [text, eol] = this.trimContinuation(first);
      if (eol && text.trim() === '') continue;
      const segments: Segment[] = [{ off: 0, line: lineNo, col: raw.length - first.length + 1 }];
      while (!eol && this.i < this.lines.length) {
        const next = this.lines[this.i]!;
        const no = ++this.i;
        // BuildKit drops comment lines and empty lines inside a continuation (it warns about
        // the empty ones: a future version may end the instruction there).
        if (isComment(next) || trimLeft(next) === '') continue;
        const [piece, end] = this.trimContinuation(next);
        segments.push({ off: text.length, line: no, col: 1 });
        text += piece;
        eol = end;
      }
      return { text: text.trimEnd(), segments };
    }
    return undefined;
  }

  private trimContinuation(line: string): [string, boolean] {
    const m = this.continuation.exec(line);
    if (m) return [line.slice(0, m.index) + m[1]!, false];
    return [line, true];
  }

  /** Reads each heredoc's body from the lines after the instruction, in order. */
  private readHeredocs(heads: HeredocHead[], line: Line): Heredoc[] {
    const out: Heredoc[] = [];
    this.lastRawBodies = [];
    for (const h of heads) {
      let content = '';
      let terminated = false;
      while (this.i < this.lines.length) {
        const text = this.lines[this.i]!;
        const raw = this.rawLines[this.i++]!;
        const candidate = h.chomp ? text.replace(/^\t+/, '') : text;
        if (candidate === h.name) {
          terminated = true;
          break;
        }
        content += raw + '\n';
      }
      this.lastRawBodies.push(content);
      if (!terminated) {
        const at = line.logical.text.indexOf(h.word);
        throw this.errorAt(line.logical, at >= 0 ? at : line.cmdOff, `unterminated heredoc ${h.word}: no line "${h.name}" ends it before the end of the file`, `end the heredoc with a line that is exactly ${h.name}`);
      }
      if (h.chomp) content = content.replace(/^\t+/gm, '');
      const doc: Heredoc = { name: h.name, content, expand: h.expand };
      if (h.fd !== undefined) doc.fd = h.fd;
      out.push(doc);
    }
    return out;
  }

  // ---- instructions -------------------------------------------------------------------------

  /**
   * Parses the instruction that starts at `start` in a logical line (0 for a line, after the
   * word ONBUILD for a trigger). `heredocs` reads bodies; undefined where heredocs are not read.
   */
  private instruction(logical: Logical, start: number, heredocs: HeredocReader | undefined): Instruction {
    const line = this.split(logical, start);
    const pos = this.position(logical, line.cmdOff);
    const original = logical.text.slice(line.cmdOff).trim();
    if (!isInstruction(line.word)) {
      const near = suggest(line.word, INSTRUCTIONS);
      throw this.errorAt(logical, line.cmdOff, `unknown instruction: ${line.word}${near ? ` (did you mean ${near}?)` : ''}`);
    }
    const flags = this.flags(line);
    const base = { pos, original, flags };
    return this.body(line, base, heredocs);
  }

  private body(line: Line, base: Base, heredocs: HeredocReader | undefined): Instruction {
    const { logical, cmd, rest } = line;
    switch (cmd) {
      case 'FROM':
        return this.from(line, base);
      case 'RUN':
        return this.run(line, base, heredocs);
      case 'COPY':
      case 'ADD':
        return this.copy(line, base, heredocs);
      case 'ENV':
      case 'LABEL':
        return { kind: cmd, ...base, pairs: this.nameValues(line) };
      case 'ARG':
        return { kind: 'ARG', ...base, args: this.args(line) };
      case 'WORKDIR':
      case 'USER':
      case 'STOPSIGNAL':
      case 'MAINTAINER':
        if (rest === '') throw this.missing(line, `${cmd} requires exactly one argument`);
        return { kind: cmd, ...base, value: rest };
      case 'EXPOSE': {
        const values = this.words(line);
        if (values.length === 0) throw this.missing(line, 'EXPOSE requires at least one argument');
        for (const v of values) {
          if (!v.word.includes('$') && !/^\d+(-\d+)?(\/[a-zA-Z]+)?$/.test(v.word)) {
            throw this.errorAt(logical, v.off, `invalid port in EXPOSE: ${v.word}`, 'EXPOSE takes PORT, PORT/PROTOCOL or FIRST-LAST[/PROTOCOL], e.g. EXPOSE 80 53/udp');
          }
          const proto = v.word.split('/')[1];
          if (!v.word.includes('$') && proto !== undefined && !['tcp', 'udp', 'sctp'].includes(proto.toLowerCase())) {
            throw this.errorAt(logical, v.off, `invalid protocol in EXPOSE: ${v.word} (tcp, udp or sctp)`);
          }
        }
        return { kind: 'EXPOSE', ...base, values: values.map((v) => v.word) };
      }
      case 'VOLUME': {
        const list = this.jsonOrWords(line);
        const values = list.json ?? list.words.map((w) => w.word);
        if (values.length === 0) throw this.missing(line, 'VOLUME requires at least one argument');
        if (values.some((v) => v.trim() === '')) throw this.errorAt(logical, line.restOff, 'VOLUME specified can not be an empty string');
        return { kind: 'VOLUME', ...base, values };
      }
      case 'CMD':
      case 'ENTRYPOINT': {
        if (rest === '') throw this.missing(line, `${cmd} requires at least one argument`, `${cmd} ["executable", "arg"] or ${cmd} command line`);
        return { kind: cmd, ...base, command: this.command(line) };
      }
      case 'SHELL': {
        if (rest === '') throw this.missing(line, 'SHELL requires at least one argument');
        const argv = this.json(line);
        if (argv === undefined) {
          throw this.errorAt(logical, line.restOff, 'SHELL requires the arguments to be in JSON form', 'SHELL ["/bin/bash", "-c"]');
        }
        if (argv.length === 0) throw this.errorAt(logical, line.restOff, 'SHELL requires at least one argument');
        return { kind: 'SHELL', ...base, argv };
      }
      case 'HEALTHCHECK':
        return this.healthcheck(line, base);
      case 'ONBUILD': {
        if (rest === '') throw this.missing(line, 'ONBUILD requires at least one argument');
        this.lastRawBodies = [];
        const trigger = this.instruction(logical, line.restOff, heredocs);
        if (trigger.kind === 'ONBUILD') {
          throw this.errorAt(logical, line.restOff, 'Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
        }
        if (trigger.kind === 'FROM' || trigger.kind === 'MAINTAINER') {
          throw this.errorAt(logical, line.restOff, `${trigger.kind} isn't allowed as an ONBUILD trigger`);
        }
        // As BuildKit's OnbuildCommand.Expression: a trigger's heredocs follow it, each body
        // (as written) and its delimiter on lines of their own.
        const heads = trigger.kind === 'RUN' && trigger.command.form === 'shell' ? trigger.command.heredocs : trigger.kind === 'COPY' || trigger.kind === 'ADD' ? trigger.heredocs : [];
        const expression = rest + heads.map((h, k) => `\n${this.lastRawBodies[k] ?? h.content}${h.name}`).join('');
        return { kind: 'ONBUILD', ...base, trigger: expression, instruction: trigger };
      }
      default:
        throw this.errorAt(logical, line.cmdOff, `unknown instruction: ${line.word}`);
    }
  }

  /** Splits `CMD [--flag...] rest` (BuildKit's splitCommand and extractBuilderFlags). */
  private split(logical: Logical, start: number): Line {
    const text = logical.text;
    let p = start;
    while (p < text.length && isWs(text[p]!)) p++;
    const cmdOff = p;
    while (p < text.length && !isWs(text[p]!)) p++;
    const word = text.slice(cmdOff, p);
    while (p < text.length && isWs(text[p]!)) p++;
    const { flagWords, restOff } = extractFlags(text, p, this.escape);
    return { logical, word, cmd: word.toUpperCase(), cmdOff, flagWords, rest: text.slice(restOff).trim(), restOff };
  }

  private flags(line: Line): Record<string, string[]> {
    const spec = FLAGS[line.cmd] ?? {};
    const out: Record<string, string[]> = {};
    for (const f of line.flagWords) {
      const body = f.word.slice(2);
      const eq = body.indexOf('=');
      const name = eq < 0 ? body : body.slice(0, eq);
      const value = eq < 0 ? undefined : body.slice(eq + 1);
      const kind = spec[name];
      if (kind === undefined) {
        const names = Object.keys(spec);
        const near = suggest(name, names, true);
        const takes = names.length ? `it takes ${names.map((n) => '--' + n).join(', ')}` : 'it takes no flags';
        throw this.errorAt(line.logical, f.off, `${line.cmd} does not take the flag --${name}${near ? ` (did you mean --${near}?)` : ''}: ${takes}`);
      }
      if (kind !== 'list' && out[name]) throw this.errorAt(line.logical, f.off, `duplicate flag specified: --${name}`);
      if (kind === 'bool') {
        if (value === '') throw this.errorAt(line.logical, f.off, `missing a value on flag --${name}`, `write --${name}, --${name}=true or --${name}=false`);
        if (value !== undefined && !['true', 'false'].includes(value.toLowerCase())) {
          throw this.errorAt(line.logical, f.off, `expecting boolean value for flag --${name}, not: ${value}`);
        }
      } else if (value === undefined) {
        throw this.errorAt(line.logical, f.off, `missing a value on flag --${name}`, `write --${name}=VALUE`);
      }
      (out[name] ??= []).push(value ?? '');
    }
    return out;
  }

  private flagBool(flags: Record<string, string[]>, name: string): boolean {
    const v = flags[name]?.[0];
    if (v === undefined) return false;
    return v.toLowerCase() !== 'false';
  }

  private from(line: Line, base: Base): FromInstruction {
    const args = this.words(line);
    if (args.length !== 1 && !(args.length === 3 && args[1]!.word.toLowerCase() === 'as')) {
      const at = args.length === 0 ? line.cmdOff : args.length === 3 ? args[1]!.off : line.restOff;
      throw this.errorAt(line.logical, at, args.length === 0 ? 'FROM requires either one or three arguments: FROM IMAGE [AS NAME]' : `FROM requires either one or three arguments: FROM IMAGE [AS NAME], not "${line.rest}"`);
    }
    const ins: FromInstruction = { kind: 'FROM', ...base, image: args[0]!.word };
    if (args.length === 3) {
      const name = args[2]!.word.toLowerCase();
      if (!STAGE_NAME.test(name)) {
        throw this.errorAt(line.logical, args[2]!.off, `invalid name for build stage: "${args[2]!.word}", name can't start with a number or contain symbols`);
      }
      ins.stageName = name;
    }
    const platform = base.flags.platform?.[0];
    if (platform !== undefined) ins.platform = platform;
    return ins;
  }

  private run(line: Line, base: Base, heredocs: HeredocReader | undefined): RunInstruction {
    if (line.rest === '') throw this.missing(line, 'RUN requires at least one argument', 'RUN command line, or RUN ["executable", "arg"]');
    const command = this.command(line, heredocs);
    if (command.form === 'exec' && command.argv.length === 0) throw this.errorAt(line.logical, line.restOff, 'RUN requires at least one argument');
    const mountOffs = line.flagWords.filter((f) => /^--mount(=|$)/.test(f.word)).map((f) => f.off);
    const mounts = (base.flags.mount ?? []).map((v, k) => this.mount(v, line, mountOffs[k] ?? line.cmdOff));
    const ins: RunInstruction = { kind: 'RUN', ...base, command, mounts };
    const network = base.flags.network?.[0];
    if (network !== undefined) {
      if (network !== 'default' && network !== 'none' && network !== 'host') {
        throw this.flagError(line, 'network', `invalid network mode "${network}"`, 'use --network=default, none or host');
      }
      ins.network = network;
    }
    const security = base.flags.security?.[0];
    if (security !== undefined) {
      if (security !== 'sandbox' && security !== 'insecure') {
        throw this.flagError(line, 'security', `security "${security}" is not valid`, 'use --security=sandbox or insecure');
      }
      ins.security = security;
    }
    return ins;
  }

  /**
   * One `--mount=` value: CSV fields, in order, as BuildKit's parseMount reads them (the type
   * decides which later keys are allowed). Values stay unexpanded; checks that need a value
   * (numbers, booleans) are made here only when the value has no variable in it.
   */
  private mount(value: string, line: Line, off: number): RunMount {
    const fail = (msg: string, fix?: string) => this.errorAt(line.logical, off, `--mount=${value}: ${msg}`, fix);
    const m: RunMount = { type: 'bind' };
    let roAuto = true;
    let fields: string[];
    try {
      fields = csvFields(value);
    } catch (e) {
      throw fail(`failed to parse csv mounts: ${(e as Error).message}`);
    }
    const types = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
    const bool = (key: string, val: string): boolean | undefined => {
      const b = parseGoBool(val);
      if (b === undefined && !val.includes('$')) throw fail(`invalid value for ${key}: ${val}`);
      return b;
    };
    for (const field of fields) {
      const eq = field.indexOf('=');
      const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
      if (eq < 0) {
        switch (key) {
          case 'readonly':
          case 'ro':
            m.readonly = true;
            roAuto = false;
            continue;
          case 'readwrite':
          case 'rw':
            m.readonly = false;
            roAuto = false;
            continue;
          case 'required':
            if (m.type !== 'secret' && m.type !== 'ssh') throw fail(`unexpected key '${key}' for mount type '${m.type}'`);
            m.required = true;
            continue;
          default:
            throw fail(`invalid field '${field}' must be a key=value pair`);
        }
      }
      const val = field.slice(eq + 1);
      const literal = !val.includes('$');
      switch (key) {
        case 'type': {
          const t = val.toLowerCase();
          if (!types.includes(t)) {
            const near = suggest(val, types, true);
            throw fail(`unsupported mount type "${val}"${near ? ` (did you mean ${near}?)` : ''}`, 'type is bind, cache, tmpfs, secret or ssh');
          }
          m.type = t as RunMount['type'];
          break;
        }
        case 'from': {
          const d = val.indexOf('$');
          if (d !== -1 && d !== val.length - 1) throw fail("'from' doesn't support variable expansion, define alias stage instead");
          m.from = val;
          break;
        }
        case 'source':
        case 'src':
          m.source = val;
          break;
        case 'target':
        case 'dst':
        case 'destination':
          m.target = val;
          break;
        case 'readonly':
        case 'ro': {
          const b = bool(key, val);
          if (b !== undefined) m.readonly = b;
          roAuto = false;
          break;
        }
        case 'readwrite':
        case 'rw': {
          const b = bool(key, val);
          if (b !== undefined) m.readonly = !b;
          roAuto = false;
          break;
        }
        case 'required':
          if (m.type !== 'secret' && m.type !== 'ssh') throw fail(`unexpected key '${key}' for mount type '${m.type}'`);
          m.required = bool(key, val) ?? true;
          break;
        case 'size':
          if (m.type !== 'tmpfs') throw fail(`unexpected key '${key}' for mount type '${m.type}'`);
          if (literal && !/^\d+(\.\d+)?\s*([kKmMgGtTpP]([iI]?[bB])?|[bB])?$/.test(val)) throw fail(`invalid value for size: ${val}`);
          m.size = val;
          break;
        case 'id':
          m.id = val;
          break;
        case 'sharing': {
          const sh = val.toLowerCase();
          if (sh !== 'shared' && sh !== 'private' && sh !== 'locked') {
            const near = suggest(val, ['shared', 'private', 'locked'], true);
            throw fail(`unsupported sharing value "${val}"${near ? ` (did you mean ${near}?)` : ''}`, 'sharing is shared, private or locked');
          }
          m.sharing = sh;
          break;
        }
        case 'mode':
          if (literal && !/^[0-7]+$/.test(val)) throw fail(`invalid value ${val} for mode`, 'mode is octal, e.g. mode=0700');
          m.mode = val;
          break;
        case 'uid':
        case 'gid':
          if (literal && !/^\d+$/.test(val)) throw fail(`invalid value ${val} for ${key}`);
          m[key] = val;
          break;
        case 'env':
          m.env = val;
          break;
        default: {
          const keys = ['type', 'from', 'source', 'target', 'readonly', 'id', 'sharing', 'required', 'size', 'mode', 'uid', 'gid', 'src', 'dst', 'destination', 'ro', 'rw', 'readwrite', 'env'];
          const near = suggest(key, keys, true);
          throw fail(`unexpected key '${key}' in '${field}'${near ? ` (did you mean ${near}?)` : ''}`);
        }
      }
    }
    if (!(m.type === 'secret' || m.type === 'ssh' || m.type === 'cache')) {
      for (const k of ['mode', 'uid', 'gid'] as const) if (m[k] !== undefined) throw fail(`${k} not allowed for "${m.type}" type mounts`);
    }
    // BuildKit's defaults: bind, secret and ssh mounts are read-only unless rw is given.
    if (roAuto) m.readonly = !(m.type === 'cache' || m.type === 'tmpfs');
    if (m.type === 'secret') {
      if (m.from !== undefined) throw fail('secret mount should not have a from');
      if (m.sharing !== undefined) throw fail('secret mount should not define sharing');
      if (!m.source && !m.target && !m.id) throw fail('invalid secret mount. one of source, target required', 'give the secret an id: --mount=type=secret,id=NAME');
      if (m.source && m.id) throw fail("both source and id can't be set");
    }
    if (m.sharing !== undefined && m.type !== 'cache') throw fail(`invalid cache sharing set for ${m.type} mount`);
    return m;
  }

  private copy(line: Line, base: Base, heredocs: HeredocReader | undefined): CopyInstruction {
    const cmd = line.cmd as 'COPY' | 'ADD';
    const list = this.jsonOrWords(line);
    const words = list.json ?? list.words.map((w) => w.word);
    if (words.length < 2) {
      throw this.missing(line, `${cmd} requires at least two arguments, but only ${words.length === 0 ? 'none were' : 'one was'} provided. Destination could not be determined.`, `${cmd} SOURCE... DEST`);
    }
    const dest = words[words.length - 1]!;
    const sources = words.slice(0, -1);
    let docs: Heredoc[] = [];
    const srcs: string[] = [];
    if (list.json === undefined) {
      const destHead = heredocHead(dest);
      if (destHead) {
        throw this.errorAt(line.logical, list.words[list.words.length - 1]!.off, `${cmd} cannot accept a heredoc as a destination`);
      }
      const heads = heredocs ? this.heredocHeads(line) : [];
      const bodies = heads.length && heredocs ? heredocs(heads, line) : [];
      const byName = new Map(bodies.map((b) => [b.name, b]));
      for (const s of sources) {
        const h = heredocHead(s);
        const body = h ? byName.get(h.name) : undefined;
        if (h && body) docs.push(body);
        else srcs.push(s);
      }
    } else {
      srcs.push(...sources);
      docs = [];
    }
    const f = base.flags;
    const ins: CopyInstruction = { kind: cmd, ...base, sources: srcs, heredocs: docs, dest, link: this.flagBool(f, 'link'), exclude: f.exclude ?? [] };
    if (f.from) {
      const from = f.from[0]!;
      // BuildKit resolves --from before any stage runs: a variable there is an error.
      let same: boolean;
      try {
        same = expandWord(from, () => undefined, this.escape) === from;
      } catch {
        same = false;
      }
      if (!same) {
        throw this.flagError(line, 'from', `variable expansion is not supported for --from (${from})`, 'define a new stage with FROM using an ARG from the global scope (ARG SRC=build, FROM ${SRC} AS src) and COPY --from=src');
      }
      ins.from = from;
    }
    if (f.chown) ins.chown = f.chown[0]!;
    if (f.chmod) {
      const mode = f.chmod[0]!;
      if (!mode.includes('$') && !/^[0-7]+$/.test(mode) && !/^([ugoa]*[-+=][rwxXst]*)(,[ugoa]*[-+=][rwxXst]*)*$/.test(mode)) {
        throw this.flagError(line, 'chmod', `invalid --chmod=${mode}: an octal mode (0755) or a symbolic one (u+x,go-w)`);
      }
      ins.chmod = mode;
    }
    if (f.checksum) ins.checksum = f.checksum[0]!;
    if (f['keep-git-dir']) ins.keepGitDir = this.flagBool(f, 'keep-git-dir');
    if (f.parents) ins.parents = this.flagBool(f, 'parents');
    return ins;
  }

  private healthcheck(line: Line, base: Base): Instruction {
    if (line.rest === '') throw this.missing(line, 'HEALTHCHECK requires at least one argument', 'HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE');
    const m = /^(\S+)\s*([\s\S]*)$/.exec(line.rest)!;
    const typ = m[1]!.toUpperCase();
    const after = m[2]!;
    const afterOff = line.restOff + line.logical.text.slice(line.restOff).indexOf(after, m[1]!.length);
    if (typ === 'NONE') {
      if (after !== '') throw this.errorAt(line.logical, afterOff, 'HEALTHCHECK NONE takes no arguments');
      return { kind: 'HEALTHCHECK', ...base, test: ['NONE'] };
    }
    if (typ !== 'CMD') {
      throw this.errorAt(line.logical, line.restOff, `Unknown type "${m[1]!}" in HEALTHCHECK (try CMD)`, 'HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE');
    }
    if (after === '') throw this.errorAt(line.logical, line.restOff, 'Missing command after HEALTHCHECK CMD');
    const sub: Line = { ...line, rest: after, restOff: afterOff };
    const command = this.command(sub);
    const test = command.form === 'exec' ? ['CMD', ...command.argv] : ['CMD-SHELL', command.command];
    if (command.form === 'exec' && command.argv.length === 0) throw this.errorAt(line.logical, afterOff, 'Missing command after HEALTHCHECK CMD');
    const ins: Extract<Instruction, { kind: 'HEALTHCHECK' }> = { kind: 'HEALTHCHECK', ...base, test };
    const durations: Array<['interval' | 'timeout' | 'startPeriod' | 'startInterval', string]> = [
      ['interval', 'interval'],
      ['timeout', 'timeout'],
      ['startPeriod', 'start-period'],
      ['startInterval', 'start-interval'],
    ];
    for (const [field, flag] of durations) {
      const v = base.flags[flag]?.[0];
      if (v === undefined || v === '') continue;
      const ns = goDuration(v);
      if (ns === undefined) throw this.flagError(line, flag, `invalid duration --${flag}=${v}`, 'durations are written as Go does: 30s, 1m30s, 500ms');
      if (ns !== 0 && ns < 1_000_000) throw this.flagError(line, flag, `--${flag}=${v} cannot be less than 1ms`);
      ins[field] = v;
    }
    const retries = base.flags.retries?.[0];
    if (retries !== undefined && retries !== '') {
      if (!/^[-+]?\d+$/.test(retries)) throw this.flagError(line, 'retries', `invalid --retries=${retries}: not a number`);
      const n = Number(retries);
      if (n < 0) throw this.flagError(line, 'retries', `--retries cannot be negative (${n})`);
      ins.retries = n;
    }
    return ins;
  }

  /** Shell or exec form (BuildKit's parseMaybeJSON): valid JSON string array → exec, else shell. */
  private command(line: Line, heredocs?: HeredocReader): CommandForm {
    const argv = this.json(line);
    if (argv !== undefined) return { form: 'exec', argv };
    const docs = heredocs ? heredocs(this.heredocHeads(line), line) : [];
    return { form: 'shell', command: line.rest, heredocs: docs };
  }

  /**
   * The rest as a JSON array of strings; undefined when it is not JSON (shell form). An array
   * with something other than strings is an error, as in BuildKit.
   */
  private json(line: Line): string[] | undefined {
    if (!line.rest.startsWith('[')) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line.rest);
    } catch {
      return undefined;
    }
    if (!Array.isArray(parsed)) return undefined;
    if (!parsed.every((x): x is string => typeof x === 'string')) {
      throw this.errorAt(line.logical, line.restOff, 'when using JSON array syntax, arrays must be comprised of strings only');
    }
    return parsed;
  }

  private jsonOrWords(line: Line): { json?: string[]; words: Array<{ word: string; off: number }> } {
    const json = this.json(line);
    if (json !== undefined) return { json, words: [] };
    return { words: this.words(line) };
  }

  /** The rest split at whitespace (no quoting), with offsets. */
  private words(line: Line): Array<{ word: string; off: number }> {
    const out: Array<{ word: string; off: number }> = [];
    const re = /[^\t\v\f\r ]+/g;
    for (let m = re.exec(line.rest); m; m = re.exec(line.rest)) out.push({ word: m[0], off: line.restOff + m.index });
    return out;
  }

  /** Heredoc heads in the line: separate words `<<EOF`, `<<-EOF`, `<<'EOF'`, `3<<EOF`. */
  private heredocHeads(line: Line): HeredocHead[] {
    const text = line.logical.text.slice(line.cmdOff);
    if (!text.includes('<<')) return [];
    let words: string[];
    try {
      words = expandWords(text, () => undefined, '\\', { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true });
    } catch {
      return [];
    }
    const heads: HeredocHead[] = [];
    for (const w of words) {
      let h: HeredocHead | undefined;
      try {
        h = heredocHead(w);
      } catch (e) {
        throw this.errorAt(line.logical, Math.max(0, line.logical.text.indexOf(w)), `bad heredoc ${w}: ${(e as Error).message}`);
      }
      if (h) heads.push(h);
    }
    return heads;
  }

  /** ENV and LABEL: `name value` (legacy, one pair) or `name=value ...` (BuildKit's parseNameVal). */
  private nameValues(line: Line): Array<[string, string]> {
    const cmd = line.cmd;
    const words = parseWords(line.rest, this.escape);
    if (words.length === 0) throw this.missing(line, `${cmd} requires at least one argument`, `${cmd} name=value ...`);
    if (!words[0]!.word.includes('=')) {
      const m = /^(\S+?)[\t\v\f\r ]+([\s\S]*)$/.exec(line.rest);
      if (!m || m[2] === '') throw this.errorAt(line.logical, line.restOff, `${cmd} must have two arguments`, `${cmd} name=value, or ${cmd} name value`);
      return [[m[1]!, m[2]!]];
    }
    return words.map((w) => {
      const eq = w.word.indexOf('=');
      if (eq < 0) {
        throw this.errorAt(line.logical, line.restOff + w.off, `Syntax error - can't find = in "${w.word}". Must be of the form: name=value`);
      }
      if (eq === 0) throw this.errorAt(line.logical, line.restOff + w.off, `${cmd} names can not be blank`);
      return [w.word.slice(0, eq), w.word.slice(eq + 1)];
    });
  }

  private args(line: Line): ArgInstruction['args'] {
    const words = parseWords(line.rest, this.escape);
    if (words.length === 0) throw this.missing(line, 'ARG requires at least one argument', 'ARG name[=default] ...');
    return words.map((w) => {
      const eq = w.word.indexOf('=');
      if (eq === 0) throw this.errorAt(line.logical, line.restOff + w.off, 'ARG names can not be blank');
      if (eq < 0) return { name: w.word };
      return { name: w.word.slice(0, eq), default: w.word.slice(eq + 1) };
    });
  }

  // ---- errors -------------------------------------------------------------------------------

  private position(logical: Logical, off: number): Position {
    let seg = logical.segments[0]!;
    for (const s of logical.segments) if (s.off <= off) seg = s;
    return { file: this.file, line: seg.line, column: seg.col + (off - seg.off) };
  }

  private error(pos: Position, message: string, fix?: string): BurrowError {
    return new BurrowError('EBUILD_PARSE', `${pos.file}:${pos.line}:${pos.column}: ${message}`, fix);
  }

  private errorAt(logical: Logical, off: number, message: string, fix?: string): BurrowError {
    return this.error(this.position(logical, off), message, fix);
  }

  /** A missing argument: reported just after the instruction word (where it should be). */
  private missing(line: Line, message: string, fix?: string): BurrowError {
    const off = line.rest === '' ? line.cmdOff : line.restOff;
    return this.errorAt(line.logical, off, message, fix);
  }

  private flagError(line: Line, name: string, message: string, fix?: string): BurrowError {
    const f = line.flagWords.find((w) => w.word === `--${name}` || w.word.startsWith(`--${name}=`));
    return this.errorAt(line.logical, f ? f.off : line.cmdOff, message, fix);
  }
}

type Base = { pos: Position; original: string; flags: Record<string, string[]> };

function isWs(ch: string): boolean {
  return /\s/.test(ch);
}

function trimLeft(s: string): string {
  return s.replace(/^\s+/, '');
}

function isComment(line: string): boolean {
  return trimLeft(line).startsWith('#');
}

/**
 * BuildKit's extractBuilderFlags: leading words that start with `--` (quotes removed, the
 * escape character quoting the next one), up to the first other word or a lone `--`.
 */
function extractFlags(text: string, from: number, escape: string): { flagWords: FlagWord[]; restOff: number } {
  const flagWords: FlagWord[] = [];
  let p = from;
  for (;;) {
    while (p < text.length && isWs(text[p]!)) p++;
    if (p >= text.length) return { flagWords, restOff: text.length };
    if (!(text[p] === '-' && text[p + 1] === '-')) return { flagWords, restOff: p };
    const start = p;
    let word = '';
    let quote = '';
    while (p < text.length) {
      const ch = text[p]!;
      if (quote) {
        if (ch === quote) quote = '';
        else if (ch === escape && p + 1 < text.length) word += text[++p]!;
        else if (ch !== escape) word += ch;
        p++;
        continue;
      }
      if (isWs(ch)) break;
      if (ch === '"' || ch === "'") quote = ch;
      else if (ch === escape) {
        if (p + 1 < text.length) word += text[++p]!;
      } else word += ch;
      p++;
    }
    if (word === '--') {
      while (p < text.length && isWs(text[p]!)) p++;
      return { flagWords, restOff: p };
    }
    flagWords.push({ word, off: start });
  }
}

/**
 * BuildKit's parseWords (ENV, LABEL, ARG): split at unquoted whitespace, quotes and escapes kept
 * for the expansion to remove later. Offsets are into `rest`.
 */
export function parseWords(rest: string, escape: string): Array<{ word: string; off: number }> {
  const words: Array<{ word: string; off: number }> = [];
  const chars = Array.from(rest);
  let word = '';
  let start = 0;
  let off = 0;
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let quote = '';
  let blankOK = false;
  for (let k = 0; k <= chars.length; k++) {
    const ch = chars[k] ?? '';
    const atEnd = k === chars.length;
    if (phase === 'spaces') {
      if (atEnd) break;
      if (/\s/.test(ch)) {
        off += ch.length;
        continue;
      }
      phase = 'word';
      start = off;
    }
    if (atEnd) {
      if (blankOK || word.length > 0) words.push({ word, off: start });
      break;
    }
    off += ch.length;
    if (phase === 'word') {
      if (/\s/.test(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push({ word, off: start });
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === escape) {
        if (k + 1 === chars.length) continue;
        word += ch;
        k++;
        const n = chars[k]!;
        off += n.length;
        word += n;
        continue;
      }
      word += ch;
      continue;
    }
    // in quotes
    if (ch === quote) phase = 'word';
    if (ch === escape && quote !== "'") {
      if (k + 1 === chars.length) {
        phase = 'word';
        continue;
      }
      word += ch;
      k++;
      const n = chars[k]!;
      off += n.length;
      word += n;
      continue;
    }
    word += ch;
  }
  return words;
}

/** BuildKit's ParseHeredoc: `[fd]<<[-]WORD`, quoted WORD (any part) = no expansion. */
export function heredocHead(word: string): HeredocHead | undefined {
  const m = HEREDOC_WORD.exec(word);
  if (!m) return undefined;
  const rest = m[3]!;
  if (rest === '') return undefined;
  const plain = expandWords(rest, () => undefined, '\\', { skipUnsetEnv: true });
  if (plain.length !== 1) return undefined;
  const raw = expandWords(rest, () => undefined, '\\', { skipUnsetEnv: true, rawQuotes: true });
  const head: HeredocHead = { word, name: plain[0]!, expand: plain[0] === raw[0], chomp: m[2] === '-' };
  if (m[1] !== '') head.fd = Number(m[1]);
  return head;
}

/** Go's encoding/csv for one record, as BuildKit reads --mount values. */
function csvFields(value: string): string[] {
  const out: string[] = [];
  let p = 0;
  for (;;) {
    let field = '';
    if (value[p] === '"') {
      p++;
      for (;;) {
        if (p >= value.length) throw new Error(`unterminated quote in "${value}"`);
        if (value[p] === '"') {
          if (value[p + 1] === '"') {
            field += '"';
            p += 2;
            continue;
          }
          p++;
          break;
        }
        field += value[p++];
      }
      if (p < value.length && value[p] !== ',') throw new Error(`extraneous text after a quoted field in "${value}"`);
    } else {
      const end = value.indexOf(',', p);
      field = end < 0 ? value.slice(p) : value.slice(p, end);
      p = end < 0 ? value.length : end;
    }
    out.push(field);
    if (p >= value.length) return out;
    p++; // the comma
  }
}

function parseGoBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

/** Go's time.ParseDuration, in nanoseconds; undefined when it does not parse. */
export function goDuration(s: string): number | undefined {
  if (s === '0') return 0;
  const m = /^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$/.exec(s);
  if (!m) return undefined;
  const unit: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, μs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  let total = 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g;
  for (let x = re.exec(s); x; x = re.exec(s)) total += Number(x[1]) * unit[x[2]!]!;
  return s.startsWith('-') ? -total : total;
}

/**
 * BuildKit's suggest.Search: the candidate nearest by Levenshtein distance, if closer than 3
 * (and not equal), in the case of the word as written (lower-case word, lower-case answer).
 */
export function suggest(word: string, candidates: readonly string[], caseSensitive = false): string | undefined {
  const w = caseSensitive ? word : word.toLowerCase();
  let match: string | undefined;
  let min = 3;
  for (const c0 of candidates) {
    const c = caseSensitive ? c0 : c0.toLowerCase();
    if (c === w) return undefined;
    const d = levenshtein(w, c);
    if (d < min) {
      min = d;
      match = c;
    }
  }
  if (match === undefined || caseSensitive) return match;
  if (word === word.toLowerCase()) return match.toLowerCase();
  if (word === word.toUpperCase()) return match.toUpperCase();
  return match;
}

function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, k) => k);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

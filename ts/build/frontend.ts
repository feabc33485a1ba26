/**
 * The executor's one door to the Dockerfile front end (ts/build/dockerfile, ts/build/ignore.ts):
 * parsing, variable expansion and .dockerignore, so that the executor depends on their
 * signatures in one place only.
 */
import type { Dockerfile, Instruction } from './dockerfile/ast';
import { parseDockerfile } from './dockerfile/parse';
import { expandHeredoc as expandBody, expandWord, expandWords } from './dockerfile/expand';
import { IgnoreMatcher, parseIgnoreFile } from './ignore';
import type { IgnoreFn } from './context';

export type Vars = Record<string, string>;

export function parse(text: string, file: string): Dockerfile {
  return parseDockerfile(text, file);
}

/** One word with `$VAR`, `${VAR:-default}`, `${VAR:+alt}` substituted from `vars`. */
export function expand(word: string, vars: Vars, escape: '\\' | '`' = '\\'): string {
  return expandWord(word, lookup(vars), escape);
}

/** Words split at unquoted whitespace (EXPOSE, VOLUME's list). */
export function expandList(word: string, vars: Vars, escape: '\\' | '`' = '\\'): string[] {
  return expandWords(word, lookup(vars), escape);
}

/** A heredoc body of `COPY <<EOF`: variables and escapes substituted, quotes kept (BuildKit's ExpandRaw). */
export function expandHeredoc(body: string, vars: Vars): string {
  return expandBody(body, lookup(vars));
}

function lookup(vars: Vars): (name: string) => string | undefined {
  return (name) => (Object.prototype.hasOwnProperty.call(vars, name) ? vars[name] : undefined);
}

/** ONBUILD triggers of a parent image, parsed as the instructions they are. */
export function parseTriggers(triggers: string[], file: string): Instruction[] {
  if (!triggers.length) return [];
  return parse(`FROM scratch\n${triggers.join('\n')}\n`, file).stages[0]!.instructions;
}

/** A .dockerignore file's text as a predicate on context paths. */
export function ignoreFn(text: string | undefined): IgnoreFn {
  if (text === undefined) return () => false;
  const m = new IgnoreMatcher(parseIgnoreFile(text));
  if (m.empty) return () => false;
  return (rel, isDir) => m.excluded(rel, isDir);
}

/**
 * Typed errors with stable codes. Every failure burrow reports is a BurrowError; its code is
 * mapped once to an exit status here (Docker's convention) and, later, to HTTP statuses in the
 * API server. Codes from the Rust core arrive as the napi error's `code` and keep their name.
 */

import { ERROR_CODES, type ErrorCode } from './errors-codes';

/** Docker's exit statuses for failures of the engine itself (not of the container). */
export const EXIT = {
  /** burrow itself failed (bad flag, missing image, host problem). */
  ENGINE: 125,
  /** the container's command exists but cannot be invoked. */
  CANNOT_INVOKE: 126,
  /** the container's command was not found. */
  NOT_FOUND: 127,
} as const;

/**
 * The codes, with their exit and HTTP statuses, are generated from the one table that the Rust
 * side is generated from too (crates/burrow-core/errors.json; scripts/gen-error-codes.mjs).
 */
export type { ErrorCode };
export { ERROR_CODES };

/** Whether a string (a napi error's `code`, the runtime's report) is one of burrow's codes. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}

export class BurrowError extends Error {
  readonly code: ErrorCode;
  /** What the user can do about it; printed on its own line. */
  readonly fix: string | undefined;

  constructor(code: ErrorCode, message: string, fix?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BurrowError';
    this.code = code;
    this.fix = fix;
  }

  get exitCode(): number {
    return exitCodeFor(this.code);
  }
}

export function exitCodeFor(code: ErrorCode): number {
  return ERROR_CODES[code]?.exit ?? EXIT.ENGINE;
}

/**
 * The HTTP status the Engine API answers for an error code (Docker's: 404 for what does not
 * exist, 409 for a conflict with the current state, 400 for bad input, 500 otherwise).
 */
export function httpStatusFor(code: ErrorCode): number {
  return ERROR_CODES[code]?.http ?? 500;
}

/**
 * The exit status of any failure, in one place: a BurrowError's code decides; anything else
 * (a bug, an unexpected system error) is burrow's own failure.
 */
export function exitStatus(err: unknown): number {
  return err instanceof BurrowError ? err.exitCode : EXIT.ENGINE;
}

/**
 * How the CLI prints an error, the same for every command: Docker's `Error: ` and the message,
 * then what to do about it on a line of its own.
 */
export function errorText(err: unknown): string {
  const e = toBurrowError(err);
  return `Error: ${e.message}\n${e.fix ? `fix: ${e.fix}\n` : ''}`;
}

/**
 * What burrow-runtime wrote on stderr, in the CLI's voice. Its errors are runc's logrus lines
 * (`time="..." level=error msg="..."`, what podman and containerd read): the message alone. Its
 * other lines lose the runtime's name and level (`burrow-runtime: `, `burrow-runtime unpack: `,
 * `burrow-runtime: error: `), which the CLI's own prefix replaces.
 */
export function runtimeText(stderr: string): string {
  return stderr
    .split('\n')
    .map((l) => {
      const m = /^time="[^"]*" level=\w+ msg="((?:[^"\\]|\\.)*)"/.exec(l);
      if (m) return m[1]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
      return l.replace(/^burrow-runtime(?: [a-z-]+)?: (?:error: )?/, '');
    })
    .join('\n')
    .trim();
}

/** A write to a pipe whose reader has gone (`burrow save IMG | head -c 10`). */
export function isBrokenPipe(err: unknown): boolean {
  for (let e = err, i = 0; e && typeof e === 'object' && i < 5; e = (e as { cause?: unknown }).cause, i++) {
    if ((e as NodeJS.ErrnoException).code === 'EPIPE' || (e as NodeJS.ErrnoException).code === 'ERR_STREAM_DESTROYED') return true;
  }
  return false;
}

/**
 * Normalises anything thrown into a BurrowError, keeping the original as `cause`. An error of
 * the napi addon carries burrow-core's code as its `code` (crates/burrow-node) and keeps it.
 */
export function toBurrowError(err: unknown): BurrowError {
  if (err instanceof BurrowError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return new BurrowError(isErrorCode(code) ? code : 'EINTERNAL', message, undefined, { cause: err });
}

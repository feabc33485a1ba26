/**
 * The parsed Dockerfile: what `parse.ts` produces and the build executor consumes. Words are kept
 * as written (before variable expansion): which variables are in scope depends on build
 * arguments and on the stage, so `expand.ts` substitutes them while the executor walks the
 * stages, exactly where BuildKit's frontend does (ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL,
 * USER, VOLUME, WORKDIR, ARG defaults, and the flags --from, --chown, --chmod, --platform,
 * --network, --mount). RUN, CMD and ENTRYPOINT are left to the container's shell.
 */

/** Where an instruction (or a parse error) is: 1-based line and column, as editors count. */
export interface Position {
  file: string;
  line: number;
  column: number;
}

/** `<<EOF` (expand: true) or `<<'EOF'` / `<<"EOF"` (expand: false); `<<-EOF` strips leading tabs. */
export interface Heredoc {
  /** The delimiter word, without quotes. */
  name: string;
  /** The body, each line ending in "\n", leading tabs already removed for `<<-`. */
  content: string;
  /** Whether variables in the body are expanded (unquoted delimiter). */
  expand: boolean;
  /** `3<<EOF`: the descriptor the body is given on (RUN), when not stdin. */
  fd?: number;
}

/** A command in shell form (a string for `SHELL` to run) or exec form (a JSON array). */
export type CommandForm = { form: 'shell'; command: string; heredocs: Heredoc[] } | { form: 'exec'; argv: string[] };

interface Base {
  pos: Position;
  /** The instruction's source text, continuations joined (history's `created_by`, error messages). */
  original: string;
  /** Flags as written (`--from=build` → { from: ['build'] }), repeated flags in order. */
  flags: Record<string, string[]>;
}

export interface FromInstruction extends Base {
  kind: 'FROM';
  /** The base: an image reference, `scratch`, or an earlier stage's name (still unexpanded). */
  image: string;
  /** `AS name`, lower-cased as Docker does. */
  stageName?: string;
  /** `--platform=...` (unexpanded). */
  platform?: string;
}

/** `RUN --mount=...`: one parsed `--mount` flag (values unexpanded). */
export interface RunMount {
  type: 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
  target?: string;
  source?: string;
  from?: string;
  id?: string;
  readonly?: boolean;
  required?: boolean;
  mode?: string;
  uid?: string;
  gid?: string;
  sharing?: 'shared' | 'private' | 'locked';
  size?: string;
  env?: string;
}

export interface RunInstruction extends Base {
  kind: 'RUN';
  command: CommandForm;
  mounts: RunMount[];
  network?: 'default' | 'none' | 'host';
  security?: 'sandbox' | 'insecure';
}

export interface CopyInstruction extends Base {
  kind: 'COPY' | 'ADD';
  /** Source words (paths, globs, URLs for ADD), unexpanded; empty when only heredocs. */
  sources: string[];
  /** `COPY <<EOF /file`: inline files, named by their delimiters. */
  heredocs: Heredoc[];
  dest: string;
  from?: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  /** ADD --checksum=sha256:... */
  checksum?: string;
  /** ADD --keep-git-dir */
  keepGitDir?: boolean;
  /** COPY --parents */
  parents?: boolean;
  /** COPY --exclude=PATTERN (repeatable) */
  exclude: string[];
}

export interface KeyValueInstruction extends Base {
  kind: 'ENV' | 'LABEL';
  /** In order; `ENV k v` (legacy form) is one pair. Values unexpanded, quotes kept for expand.ts. */
  pairs: Array<[string, string]>;
}

export interface ArgInstruction extends Base {
  kind: 'ARG';
  args: Array<{ name: string; default?: string }>;
}

export interface WordInstruction extends Base {
  kind: 'WORKDIR' | 'USER' | 'STOPSIGNAL' | 'MAINTAINER';
  /** The one argument (unexpanded). */
  value: string;
}

export interface ListInstruction extends Base {
  kind: 'EXPOSE' | 'VOLUME';
  /** Ports (`80`, `53/udp`, `8000-8010`) or paths; VOLUME's JSON form gives the same list. */
  values: string[];
}

export interface CmdInstruction extends Base {
  kind: 'CMD' | 'ENTRYPOINT';
  command: CommandForm;
}

export interface ShellInstruction extends Base {
  kind: 'SHELL';
  /** Always exec form (`SHELL ["/bin/bash", "-c"]`); anything else is a parse error. */
  argv: string[];
}

export interface HealthcheckInstruction extends Base {
  kind: 'HEALTHCHECK';
  /** `HEALTHCHECK NONE` → ['NONE']; otherwise ['CMD', ...argv] or ['CMD-SHELL', command], as Docker's config. */
  test: string[];
  /** Durations as written (`30s`, `1m30s`); the executor converts to nanoseconds. */
  interval?: string;
  timeout?: string;
  startPeriod?: string;
  startInterval?: string;
  retries?: number;
}

export interface OnbuildInstruction extends Base {
  kind: 'ONBUILD';
  /** The trigger as written after ONBUILD (what goes into the image config's OnBuild). */
  trigger: string;
  /** The trigger parsed (ONBUILD FROM / ONBUILD ONBUILD / MAINTAINER are parse errors). */
  instruction: Instruction;
}

export type Instruction =
  | FromInstruction
  | RunInstruction
  | CopyInstruction
  | KeyValueInstruction
  | ArgInstruction
  | WordInstruction
  | ListInstruction
  | CmdInstruction
  | ShellInstruction
  | HealthcheckInstruction
  | OnbuildInstruction;

export interface Stage {
  /** 0-based, in file order (`COPY --from=0`). */
  index: number;
  /** `AS name` (lower case), if any. */
  name?: string;
  from: FromInstruction;
  /** Everything after FROM up to the next FROM. */
  instructions: Instruction[];
}

export interface Dockerfile {
  file: string;
  /** Parser directives at the top: `# escape=` (default "\\"), `# syntax=` (kept, ignored), `# check=`. */
  directives: { escape: '\\' | '`'; syntax?: string; check?: string };
  /** ARG instructions before the first FROM: their values may be used in FROM lines. */
  globalArgs: ArgInstruction[];
  stages: Stage[];
}
